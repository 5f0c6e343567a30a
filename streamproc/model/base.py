"""The narrow interface between the stream and any model: ``predict_batch(texts)``.

The stream path only ever sees a :class:`TextClassifier`. The real one is
:class:`streamproc.model.runtime.Classifier` (loaded from a versioned artifact); agent tests
use a fake that honours the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Prediction", "TextClassifier", "predictions_from_probabilities"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model output for one text."""

    label: str  # the winning label's name
    score: float  # its probability, in [0, 1]
    probabilities: dict[str, float]  # every label's probability; sums to ~1


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


@runtime_checkable
class TextClassifier(Protocol):
    """What the stream path needs from a model, and nothing more."""

    @property
    def version(self) -> str:
        """The artifact version that produced the predictions (goes into every output)."""
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
