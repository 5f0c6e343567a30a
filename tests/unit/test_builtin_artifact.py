"""The TREC classifier shipped in the package loads with today's code and scores what it claims."""

from __future__ import annotations

import pytest

from streamproc.compress.data import load_dataset
from streamproc.errors import ArtifactError
from streamproc.model.artifact import (
    builtin_artifact,
    resolve_artifact_argument,
    verify_artifact,
)
from streamproc.model.runtime import load_classifier
from streamproc.settings import default_cache_dir

pytestmark = pytest.mark.slow


def test_the_shipped_trec_artifact_scores_its_recorded_accuracy() -> None:
    path = builtin_artifact("trec")
    manifest = verify_artifact(path)  # every digest checked
    evaluation = manifest["metadata"]["evaluation"]
    data = load_dataset("trec", cache_dir=default_cache_dir())
    assert evaluation["rows"] == len(data.test_texts) == 500
    classifier = load_classifier(path, num_threads=1)
    assert list(classifier.labels) == list(data.labels)
    predicted = []
    texts = data.test_texts
    for start in range(0, len(texts), 64):  # as the worker runs it: predict_batch
        predicted += [p.label for p in classifier.predict_batch(texts[start : start + 64])]
    gold = [data.labels[i] for i in data.test_labels]
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    # ±0.2 pt = one question of 500: int8 kernels may round differently on another CPU.
    assert accuracy == pytest.approx(evaluation["accuracy"], abs=0.002)
    assert accuracy >= 0.90, "the model a fresh install serves is one worth showing"


def test_builtin_names_resolve_and_unknown_ones_are_refused() -> None:
    assert resolve_artifact_argument("builtin:trec") == builtin_artifact("trec")
    with pytest.raises(ArtifactError, match="no built-in artifact 'nope'"):
        resolve_artifact_argument("builtin:nope")


def test_the_shipped_graph_is_what_its_manifest_records() -> None:
    import onnx

    path = builtin_artifact("trec")
    manifest = verify_artifact(path)
    runtime = manifest["runtime"]
    assert runtime["engine"] == "onnxruntime"
    assert runtime["graph"] == "fused-attention"
    graph = onnx.load(str(path / runtime["file"])).graph
    fused = [
        n for n in graph.node if n.domain == "com.microsoft" and n.op_type.endswith("Attention")
    ]
    # One fused attention per layer; int8-dynamic turns each into QAttention (int8 QKV).
    assert len(fused) == len(manifest["config"]["layer_heads"])
    wanted = "QAttention" if runtime["precision"] == "int8-dynamic" else "Attention"
    assert {n.op_type for n in fused} == {wanted}
    heads = [next(a.i for a in n.attribute if a.name == "num_heads") for n in fused]
    assert sorted(heads) == sorted(manifest["config"]["layer_heads"])
