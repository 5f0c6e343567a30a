"""The narrow interface between the stream and any model: ``predict_batch(texts)``.

The stream path only ever sees a :class:`TextClassifier`. The shipped one is
:class:`streamproc.model.runtime.Classifier` (loaded from a versioned artifact); a user brings
their own through ``STREAMPROC_MODEL`` (see :mod:`streamproc.model.loading`); agent tests use a
fake that honours the same protocol. :func:`check_classifier` is the contract, checked on every
model before it serves (at start and on each hot reload).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamproc.errors import ArtifactError

__all__ = [
    "MULTI_LABEL_THRESHOLD",
    "PROBE_TEXTS",
    "ClassifierIdentity",
    "Prediction",
    "TextClassifier",
    "check_classifier",
    "predictions_from_probabilities",
]

#: A multi-label model's ``Prediction.labels``: every label whose probability reaches this.
MULTI_LABEL_THRESHOLD = 0.5

#: What a model must answer sensibly before it serves: short and long (past any window) texts,
#: punctuation only, other scripts. Never empty: the stream dead-letters empty texts.
PROBE_TEXTS = (
    "What is the capital of France?",
    "the film was wonderful",
    "Why is the sky blue?",
    "?!",
    "Où est la gare ? 東京はどこですか",
    "the quick brown fox jumps over the lazy dog " * 120,  # ~1,100 tokens
)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model output for one text.

    Single-label (the default): ``probabilities`` sum to ~1 and ``labels`` is None. Multi-label
    (independent per-label probabilities, e.g. sigmoid outputs): ``labels`` lists every label at
    or above :data:`MULTI_LABEL_THRESHOLD` (possibly none), in the model's label order, and the
    probabilities need not sum to 1; ``label``/``score`` are still the most probable one.
    """

    label: str  # the winning label's name
    score: float  # its probability, in [0, 1]
    probabilities: dict[str, float]  # every label's probability; sums to ~1 unless multi-label
    labels: tuple[str, ...] | None = None  # multi-label models only: the labels that apply


def predictions_from_probabilities(
    labels: Sequence[str], rows: Sequence[Sequence[float]]
) -> list[Prediction]:
    """One :class:`Prediction` per row of label probabilities (rows in label order)."""
    out = []
    for row in rows:
        best = max(range(len(row)), key=row.__getitem__)
        probabilities = {name: float(p) for name, p in zip(labels, row, strict=True)}
        out.append(
            Prediction(label=labels[best], score=float(row[best]), probabilities=probabilities)
        )
    return out


class ClassifierIdentity:
    """The identity half of a :class:`TextClassifier`, fixed at construction: ``version``,
    ``labels`` (a tuple, in output order) and ``max_tokens``, as read-only properties. Our
    classifiers inherit it; a user's model may just as well use plain attributes."""

    def __init__(self, *, version: str, labels: Sequence[str], max_tokens: int) -> None:
        self._version = version
        self._labels = tuple(labels)
        self._max_tokens = max_tokens

    @property
    def version(self) -> str:
        return self._version

    @property
    def labels(self) -> Sequence[str]:
        return self._labels

    @property
    def max_tokens(self) -> int:
        return self._max_tokens


@runtime_checkable
class TextClassifier(Protocol):
    """What the stream path needs from a model, and nothing more.

    Implement it to serve your own model (``STREAMPROC_MODEL=package.module:factory``). Plain
    attributes satisfy the properties. ``predict_batch`` runs in one inference thread, never on
    the event loop, with batches of 1 to ``STREAMPROC_MAX_BATCH_SIZE`` non-empty texts of any
    length; it must return one :class:`Prediction` per text whose ``probabilities`` name every
    label (and, single-label, sum to ~1). An exception marks the batch failed: the pipeline
    bisects it and dead-letters only the texts that still fail (reason ``inference_error``).
    """

    @property
    def version(self) -> str:
        """The model version that produced the predictions (goes into every output)."""
        ...

    @property
    def labels(self) -> Sequence[str]:
        """Label names, in the model's output order."""
        ...

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens: longer texts are truncated (head kept), not rejected."""
        ...

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order. Pure CPU work: call it off the event loop."""
        ...


def check_classifier(model: object, *, source: str) -> TextClassifier:
    """``model`` if it honours the :class:`TextClassifier` contract, else :class:`ArtifactError`.

    Beyond the members' types, a trial prediction on :data:`PROBE_TEXTS` must give one
    prediction per text with finite probabilities in [0, 1] over exactly the model's labels,
    summing to ~1 unless multi-label: a model that loads but answers NaN, too few predictions
    or the wrong labels is refused before it serves instead of filling the output topic with
    garbage or the dead-letter topic with every event. ``source`` names the model in errors.
    """
    if not isinstance(model, TextClassifier):
        missing = [
            name
            for name in ("version", "labels", "max_tokens", "predict_batch")
            if not hasattr(model, name)
        ]
        raise ArtifactError(
            f"{source}: got {type(model).__name__}, not a TextClassifier "
            f"(missing {', '.join(missing)})"
        )
    version = model.version
    if not isinstance(version, str) or not version.strip():
        raise ArtifactError(f"{source}: version must be a non-empty string, got {version!r}")
    labels = model.labels
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ArtifactError(f"{source}: labels must be a non-empty sequence of names")
    if not all(isinstance(name, str) and name for name in labels):
        raise ArtifactError(f"{source}: every label must be a non-empty string")
    if len(set(labels)) != len(labels):
        raise ArtifactError(f"{source}: duplicate label names in {list(labels)}")
    max_tokens = model.max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ArtifactError(f"{source}: max_tokens must be a positive int, got {max_tokens!r}")
    try:
        predictions = model.predict_batch(list(PROBE_TEXTS))
    except Exception as exc:
        raise ArtifactError(
            f"{source}: trial prediction failed ({type(exc).__name__}: {exc})"
        ) from None
    problem = _prediction_problem(predictions, labels)
    if problem:
        raise ArtifactError(f"{source}: trial prediction on {len(PROBE_TEXTS)} texts: {problem}")
    return model


def _prediction_problem(predictions: object, labels: Sequence[str]) -> str | None:
    """What is wrong with a trial's predictions, or None."""
    if not isinstance(predictions, Sequence) or len(predictions) != len(PROBE_TEXTS):
        count = len(predictions) if isinstance(predictions, Sequence) else type(predictions)
        return f"expected {len(PROBE_TEXTS)} predictions, got {count}"
    names = set(labels)
    for i, p in enumerate(predictions):
        if not isinstance(p, Prediction):
            return f"prediction {i} is a {type(p).__name__}, not a Prediction"
        if not isinstance(p.probabilities, dict) or set(p.probabilities) != names:
            return f"prediction {i}'s probabilities do not name exactly the labels {list(labels)}"
        values = [p.score, *p.probabilities.values()]
        if not all(isinstance(v, float | int) and math.isfinite(v) and 0 <= v <= 1 for v in values):
            return f"prediction {i} has a score or probability that is not finite in [0, 1]"
        if p.label not in names:
            return f"prediction {i}'s label {p.label!r} is not one of the labels"
        if p.labels is None:
            if abs(sum(p.probabilities.values()) - 1.0) > 1e-3:
                return f"prediction {i}'s probabilities sum to {sum(p.probabilities.values()):g}"
        elif not set(p.labels) <= names:
            return f"prediction {i}'s multi-label labels {list(p.labels)} are not all labels"
    return None
