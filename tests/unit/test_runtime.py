"""The runtime classifier: big batches run as length-sorted chunks with the same answers."""

from __future__ import annotations

from pathlib import Path

import torch

from streamproc.compress.job import build_test_artifact
from streamproc.model.runtime import FORWARD_CHUNK, load_classifier


def test_chunked_batches_match_one_by_one(tmp_path: Path) -> None:
    classifier = load_classifier(build_test_artifact(tmp_path / "a", "chunk-v1"))
    texts = [
        ("the film was wonderful " * (i % 7 + 1)) + f"#{i}" for i in range(3 * FORWARD_CHUNK + 5)
    ]
    big = classifier.logits(texts)  # (B, L), chunked
    assert big.shape == (len(texts), len(classifier.labels))
    singles = torch.cat([classifier.logits([t]) for t in texts])
    assert torch.allclose(big, singles.float(), atol=0.1), (
        (big - singles).abs().max()
    )  # int8: per-call scales
    labels = [p.label for p in classifier.predict_batch(texts)]
    assert labels == [classifier.labels[int(i)] for i in singles.argmax(dim=-1)]
