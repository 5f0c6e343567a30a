"""How the job scores a served classifier: accuracy through predict_batch, and the batch effect."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from streamproc.compress.scoring import score_classifier
from streamproc.model.base import Prediction

LABELS = ("a", "b")


class BatchSensitive:
    """Labels every text "a", except texts containing "flip", which are "b" only when alone:
    the kind of label that depends on batch-mates (as dynamic int8 scales can make it)."""

    runtime = "fake"

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for text in texts:
            label = "b" if "flip" in text and len(texts) == 1 else "a"
            out.append(Prediction(label=label, score=1.0, probabilities={label: 1.0}))
        return out


def test_batch_disagreement_counts_labels_that_change_alone() -> None:
    texts = [f"text {i}" for i in range(96)] + ["flip one", "flip two", "flip three"]
    gold = [0] * len(texts)
    result = score_classifier(BatchSensitive(), texts, gold, LABELS)
    assert result["accuracy"] == 1.0  # batches of 64: every label "a"
    assert result["batch_disagreement"] == pytest.approx(3 / 99, abs=1e-4)
    assert result["runtime"] == "fake" and result["rows"] == 99


def test_a_batch_independent_classifier_disagrees_nowhere() -> None:
    texts = ["one", "two", "three"]
    result = score_classifier(BatchSensitive(), texts, [0, 0, 1], LABELS)
    assert result["batch_disagreement"] == 0.0
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
