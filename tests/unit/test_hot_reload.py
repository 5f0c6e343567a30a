"""Hot reload: a refused artifact is not retried every poll, but is once its files change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from streamproc.errors import ArtifactError
from streamproc.model.artifact import publish_artifact
from streamproc.stream.models import ArtifactWatcher


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
