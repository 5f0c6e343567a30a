"""The runtime classifier: ONNX Runtime and torch engines behind one ``predict_batch``.

Big batches run as length-sorted chunks with the same answers; an ONNX artifact serves without
importing torch, agrees with its torch weights, and is refused when it cannot reproduce its
recorded self-check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamproc.errors import ArtifactError
from streamproc.model.artifact import ONNX_GRAPH, read_manifest
from streamproc.model.runtime import FORWARD_CHUNK, load_classifier, plan_passes
from streamproc.testing import build_test_artifact

TEXTS = [("the film was wonderful " * (i % 7 + 1)) + f"#{i}" for i in range(3 * FORWARD_CHUNK + 5)]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_artifact(tmp_path_factory.mktemp("rt") / "a", "runtime-v1")


def test_the_job_writes_an_onnx_artifact_served_by_onnxruntime(artifact: Path) -> None:
    manifest = read_manifest(artifact)
    assert manifest["format_version"] == 2
    assert ONNX_GRAPH in manifest["files"]
    assert manifest["runtime"]["engine"] == "onnxruntime"
    assert manifest["runtime"]["precision"] == "int8-dynamic"
    assert load_classifier(artifact).runtime == "onnxruntime"
    assert load_classifier(artifact, runtime="torch").runtime == "torch"


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_chunked_batches_match_one_by_one(artifact: Path, runtime: str) -> None:
    classifier = load_classifier(artifact, runtime=runtime)  # type: ignore[arg-type]
    big = classifier.logits(TEXTS)  # (B, L), chunked
    assert big.shape == (len(TEXTS), len(classifier.labels))
    singles = np.concatenate([classifier.logits([t]) for t in TEXTS])  # (B, L)
    # int8 picks activation scales per call, so batch-mates move scores a little.
    assert np.abs(big - singles).max() < 0.1
    labels = [p.label for p in classifier.predict_batch(TEXTS)]
    top2 = np.sort(singles, axis=-1)[:, -2:]  # (B, 2)
    clear = top2[:, 1] - top2[:, 0] > 0.1  # a label the score movement above cannot flip
    alone = [classifier.labels[int(i)] for i in singles.argmax(axis=-1)]
    assert clear.sum() >= len(TEXTS) // 2
    assert [a for a, c in zip(labels, clear, strict=True) if c] == [
        a for a, c in zip(alone, clear, strict=True) if c
    ]
    probs = [sum(p.probabilities.values()) for p in classifier.predict_batch(TEXTS[:5])]
    assert probs == pytest.approx([1.0] * 5, abs=1e-9)


def test_onnxruntime_agrees_with_the_torch_weights(artifact: Path) -> None:
    ort = load_classifier(artifact, runtime="onnxruntime", num_threads=1)
    eager = load_classifier(artifact, runtime="torch", num_threads=1)
    a, b = ort.logits(TEXTS), eager.logits(TEXTS)  # (B, L) each
    # Both int8, quantized by different libraries from the same per-tensor weights.
    assert np.abs(a - b).max() < 0.25
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98


def test_serving_from_onnx_never_imports_torch(artifact: Path) -> None:
    code = (
        "import sys\n"
        "from streamproc.model.runtime import load_classifier\n"
        f"c = load_classifier({str(artifact)!r}, num_threads=1)\n"
        "print(c.runtime, c.predict_batch(['what a great film'])[0].label)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "onnxruntime"


def test_a_graph_that_misses_its_self_check_is_refused(artifact: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(artifact, tmp_path / "bad"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["runtime"]["check"]["logits"][0][0] += 1.0  # what another machine would compute
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="misses the recorded self-check logits by 1"):
        load_classifier(copy)
    assert load_classifier(copy, runtime="torch").runtime == "torch"  # weights still serve


def test_a_corrupted_onnx_graph_is_refused_by_its_digest(artifact: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(artifact, tmp_path / "bad"))
    graph = copy / ONNX_GRAPH
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match=r"model\.onnx is corrupted or was tampered with"):
        load_classifier(copy)


def test_a_torch_only_artifact_cannot_be_forced_onto_onnxruntime(tmp_path: Path) -> None:
    path = build_test_artifact(tmp_path / "t", "torch-v1", runtime="torch")
    assert read_manifest(path)["runtime"] == {"engine": "torch"}
    assert load_classifier(path).runtime == "torch"
    with pytest.raises(ArtifactError, match=r"has no model\.onnx"):
        load_classifier(path, runtime="onnxruntime")


def test_a_format_1_artifact_still_loads_in_torch(artifact: Path, tmp_path: Path) -> None:
    old = tmp_path / "v1"
    old.mkdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    for name in ("weights.safetensors", "tokenizer.json"):
        shutil.copy2(artifact / name, old / name)
    manifest["format_version"] = 1
    del manifest["runtime"]
    del manifest["files"][ONNX_GRAPH]
    (old / "manifest.json").write_text(json.dumps(manifest))
    classifier = load_classifier(old)
    assert classifier.runtime == "torch"
    assert len(classifier.predict_batch(["a fine film"])) == 1
    manifest["files"][ONNX_GRAPH] = "0" * 64  # format 1 never lists a graph
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'files' must list"):
        load_classifier(old)


def test_a_huge_text_is_cut_before_tokenizing_and_keeps_the_same_head(artifact: Path) -> None:
    from tokenizers import Tokenizer

    from streamproc.model.tokenizer import CHARS_PER_TOKEN_BOUND

    tokenizer = load_classifier(artifact).tokenizer
    huge = "the film was wonderful, and the cast? superb! " * 6000  # ~280 KB
    assert len(huge) > CHARS_PER_TOKEN_BOUND * tokenizer.max_tokens
    ids, _mask = tokenizer.encode_arrays([huge])
    assert ids.shape == (1, tokenizer.max_tokens)
    # The same head as tokenizing the whole text and keeping its first max_tokens tokens.
    whole = Tokenizer.from_str(tokenizer._tok.to_str())
    whole.no_truncation()
    whole.no_padding()
    assert ids[0].tolist() == whole.encode(huge).ids[: tokenizer.max_tokens]
    # ... and the tokenizer itself never saw the whole text (0.1-0.3 s per 256 KiB text).
    seen: list[int] = []

    class Spy:
        def __init__(self, inner: Tokenizer) -> None:
            self.inner = inner

        def encode_batch(self, texts: list[str]) -> object:
            seen.extend(len(t) for t in texts)
            return self.inner.encode_batch(texts)

    tokenizer._tok = Spy(tokenizer._tok)  # type: ignore[assignment]
    tokenizer.encode_arrays([huge, "a short one"])
    assert seen == [CHARS_PER_TOKEN_BOUND * tokenizer.max_tokens, len("a short one")]


def test_plan_passes_cuts_the_padding_and_covers_every_row_once() -> None:
    assert plan_passes([]) == []
    assert plan_passes([12] * 40) == [list(range(40))]  # alike: one pass
    # 63 short questions and one long one: the long one alone, not 63 rows padded to 40.
    lengths = [5] * 63 + [40]
    assert plan_passes(lengths) == [list(range(63)), [63]]
    # Larger than a pass allows: several, each within the limit, each sorted by length.
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=300).tolist()
    passes = plan_passes(lengths)
    assert sorted(i for rows in passes for i in rows) == list(range(300))
    assert all(len(rows) <= FORWARD_CHUNK for rows in passes)
    for rows in passes:
        assert [lengths[i] for i in rows] == sorted(lengths[i] for i in rows)
    padded = sum(len(rows) * max(lengths[i] for i in rows) for rows in passes)
    assert padded < 1.2 * sum(lengths), "length sorting keeps the padding small"
