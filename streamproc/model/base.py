"""The narrow interface between the stream and any model: ``predict_batch(texts)``.

The stream path only ever sees a :class:`TextClassifier`. The real one is
:class:`streamproc.model.runtime.Classifier` (loaded from a versioned artifact); agent tests
use a fake that honours the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Prediction", "TextClassifier"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model output for one text."""

    label: str  # the winning label's name
    score: float  # its probability, in [0, 1]
    probabilities: dict[str, float]  # every label's probability; sums to ~1


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
