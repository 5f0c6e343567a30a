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


def test_a_huge_text_is_cut_before_tokenizing_and_keeps_the_same_head(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from streamproc.model.tokenizer import CHARS_PER_TOKEN_BOUND

    classifier = load_classifier(build_test_artifact(tmp_path / "a", "long-v1"))
    tokenizer = classifier.tokenizer
    huge = "the film was wonderful, and the cast? superb! " * 6000  # ~280 KB
    assert len(huge) > CHARS_PER_TOKEN_BOUND * tokenizer.max_tokens
    ids, _mask = tokenizer.encode_batch([huge])
    assert ids.shape == (1, tokenizer.max_tokens)
    # The same head as tokenizing the whole text and keeping its first max_tokens tokens.
    whole = Tokenizer.from_str(tokenizer._tok.to_str())
    whole.no_truncation()
    whole.no_padding()
    assert ids[0].tolist() == whole.encode(huge).ids[: tokenizer.max_tokens]
