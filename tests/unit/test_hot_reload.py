"""Hot reload: a refused artifact is not retried every poll, but is once its files change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from streamproc.errors import ArtifactError
from streamproc.model.runtime import RuntimeChoice
from streamproc.model.versions import publish_artifact
from streamproc.stream.hot_reload import ArtifactWatcher


def _watching_v1(tmp_path: Path, model_artifacts: dict[str, Path]) -> tuple[Path, ArtifactWatcher]:
    """A model dir serving sentiment-v1 and a watcher on it."""
    model_dir = tmp_path / "models"
    publish_artifact(model_artifacts["sentiment-v1"], model_dir)
    return model_dir, ArtifactWatcher(model_dir, num_threads=1)


def test_a_refused_artifact_is_tried_again_once_it_is_fixed(
    tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir, watcher = _watching_v1(tmp_path, model_artifacts)
    serving = watcher.load_current().version
    assert serving == "sentiment-v1"
    publish_artifact(model_artifacts["sentiment-v2"], model_dir)  # CURRENT -> sentiment-v2
    weights = model_dir / "sentiment-v2" / "weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-8] + bytes(8))  # corrupted after publishing
    with pytest.raises(ArtifactError, match="corrupted or was tampered"):
        watcher.poll(serving)
    assert watcher.poll(serving) is None, "the same broken files are not reloaded every poll"
    weights.write_bytes(good)  # an operator repairs it in place
    later = time.time_ns() + 1_000_000_000
    os.utime(weights, ns=(later, later))
    model = watcher.poll(serving)
    assert model is not None and model.version == "sentiment-v2"


def test_poll_loads_the_version_it_read_and_ignores_the_serving_one(
    tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir, watcher = _watching_v1(tmp_path, model_artifacts)
    assert watcher.poll("sentiment-v1") is None
    (model_dir / "CURRENT").write_text("no-such-version\n")
    with pytest.raises(ArtifactError, match="holds no artifact"):
        watcher.poll("sentiment-v1")
    assert watcher.poll("sentiment-v1") is None


# --- artifacts that verify and load but would misbehave (issue 11) -----------------------------


def _publish_edited(
    source: Path,
    model_dir: Path,
    version: str,
    *,
    manifest_edit: Callable[[dict[str, Any]], None] | None = None,
    weights_edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> Path:
    """Copy ``source`` in as ``version``, edited *consistently* (digests rewritten), and point
    CURRENT at it: every sha256 matches, so only the new checks can tell it is wrong."""
    target = model_dir / version
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    if weights_edit is not None:
        weights = target / "weights.safetensors"
        tensors = load_file(str(weights))
        weights_edit(tensors)
        save_file(tensors, str(weights), metadata={"format_version": "2"})
        manifest["files"]["weights.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    if manifest_edit is not None:
        manifest_edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    (model_dir / "CURRENT").write_text(version + "\n")
    return target


def _more_labels(manifest: dict[str, Any]) -> None:
    manifest["labels"] = [*manifest["labels"], "neutral"]


def _config_and_labels_say_three(manifest: dict[str, Any]) -> None:
    _more_labels(manifest)
    manifest["config"]["num_labels"] = 3


def _wider_window(manifest: dict[str, Any]) -> None:
    manifest["max_tokens"] = manifest["config"]["max_tokens"] * 2


def _window_and_config_wider(manifest: dict[str, Any]) -> None:
    _wider_window(manifest)
    manifest["config"]["max_tokens"] *= 2


@pytest.mark.parametrize(
    ("runtime", "edit", "match"),
    [
        ("onnxruntime", _more_labels, "3 labels"),
        ("torch", _more_labels, "3 labels"),
        ("onnxruntime", _config_and_labels_say_three, "3 labels"),
        ("torch", _wider_window, "window"),
        ("torch", _window_and_config_wider, "window"),
    ],
)
def test_an_artifact_whose_manifest_disagrees_with_its_network_is_refused(
    tmp_path: Path,
    model_artifacts: dict[str, Path],
    runtime: RuntimeChoice,
    edit: Callable[[dict[str, Any]], None],
    match: str,
) -> None:
    model_dir, _ = _watching_v1(tmp_path, model_artifacts)
    watcher = ArtifactWatcher(model_dir, num_threads=1, runtime=runtime)
    _publish_edited(model_artifacts["sentiment-v2"], model_dir, "bad-1", manifest_edit=edit)
    with pytest.raises(ArtifactError, match=match):
        watcher.poll("sentiment-v1")


def _nan_in_one_embedding_row(tensors: dict[str, np.ndarray]) -> None:
    # A row of a token the probe texts never use: no trial prediction would notice.
    tensors["tok_emb.weight"][-1, 3] = np.nan


def _nan_in_the_final_norm(tensors: dict[str, np.ndarray]) -> None:
    tensors["ln_f.weight"][0] = np.nan


@pytest.mark.parametrize("edit", [_nan_in_one_embedding_row, _nan_in_the_final_norm])
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_an_artifact_with_non_finite_weights_is_refused(
    tmp_path: Path,
    model_artifacts: dict[str, Path],
    runtime: RuntimeChoice,
    edit: Callable[[dict[str, np.ndarray]], None],
) -> None:
    model_dir, _ = _watching_v1(tmp_path, model_artifacts)
    watcher = ArtifactWatcher(model_dir, num_threads=1, runtime=runtime)
    _publish_edited(model_artifacts["sentiment-v2"], model_dir, "nan-1", weights_edit=edit)
    with pytest.raises(ArtifactError, match="non-finite"):
        watcher.poll("sentiment-v1")


def test_a_graph_that_answers_nan_is_refused_by_the_trial_prediction(
    tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    """The ONNX graph is what serves: a NaN inside it (weights file intact, no recorded self-check,
    as for a graph forced onto a torch-default artifact) must not reach the output topic."""
    import onnx
    from onnx import numpy_helper

    model_dir, watcher = _watching_v1(tmp_path, model_artifacts)

    def drop_self_check(manifest: dict[str, Any]) -> None:
        del manifest["runtime"]["check"]

    target = _publish_edited(
        model_artifacts["sentiment-v2"], model_dir, "nan-graph-1", manifest_edit=drop_self_check
    )
    graph = onnx.load(str(target / "model.onnx"))
    floats = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    norm = next(i for i in floats if "ln_f" in i.name or "LayerNorm" in i.name or "ln" in i.name)
    values = numpy_helper.to_array(norm).copy()
    values.flat[:] = np.nan
    norm.CopyFrom(numpy_helper.from_array(values, norm.name))
    onnx.save(graph, str(target / "model.onnx"))
    manifest = json.loads((target / "manifest.json").read_text())
    digest = hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()
    manifest["files"]["model.onnx"] = digest
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="trial prediction"):
        watcher.poll("sentiment-v1")


def test_a_refused_version_published_again_is_tried_again(
    tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir, watcher = _watching_v1(tmp_path, model_artifacts)
    _publish_edited(model_artifacts["sentiment-v2"], model_dir, "bad-2", manifest_edit=_more_labels)
    with pytest.raises(ArtifactError):
        watcher.poll("sentiment-v1")
    assert watcher.poll("sentiment-v1") is None, "not retried on every poll"
    publish_artifact(model_artifacts["sentiment-v1"], model_dir)  # rolled back ...
    assert watcher.poll("sentiment-v1") is None
    (model_dir / "CURRENT").write_text("bad-2\n")  # ... then the same version published again
    with pytest.raises(ArtifactError, match="3 labels"):
        watcher.poll("sentiment-v1")
