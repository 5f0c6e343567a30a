"""The fp32 teacher behind the :class:`~streamproc.model.base.TextClassifier` interface.

Why: the benchmark's "naive service" contender runs the uncompressed fine-tuned MiniLM teacher
one event at a time, through the very same worker as the student, so the only difference between
the two per-event rows is the model. The teacher is never trained here: the offline job caches it
under ``<cache>/teachers/<key>/``; :func:`find_cached_teacher` only looks there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from streamproc.errors import ModelError
from streamproc.model.base import ClassifierIdentity, Prediction, predictions_from_probabilities

__all__ = ["TeacherClassifier", "find_cached_teacher", "load_teacher_classifier"]


def find_cached_teacher(cache_dir: Path, *, num_labels: int | None = None) -> Path | None:
    """The folder of the best cached fine-tuned teacher, or None.

    Prefers a full-recipe teacher (no ``max_train_rows`` cap, most training rows) over a
    ``--quick`` one: both cost the same per call (same network), but the full one is the model a
    naive service would really run. ``num_labels`` filters by head size when given.
    """
    best: tuple[int, Path] | None = None
    for meta_file in sorted((cache_dir / "teachers").glob("*/meta.json")):
        folder = meta_file.parent
        if not (folder / "teacher.safetensors").is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if num_labels is not None and _head_size(folder) != num_labels:
            continue
        rows = int(meta.get("train_rows") or 0)
        if best is None or rows > best[0]:
            best = (rows, folder)
    return best[1] if best else None


def _head_size(folder: Path) -> int | None:
    from safetensors import safe_open

    with safe_open(str(folder / "teacher.safetensors"), framework="pt") as fh:
        if "head.weight" not in fh.keys():  # noqa: SIM118 - safe_open has no __contains__
            return None
        return int(fh.get_slice("head.weight").get_shape()[0])


class TeacherClassifier(ClassifierIdentity):
    """A cached fine-tuned :class:`~streamproc.compress.teacher.Teacher`, fp32, eval mode."""

    def __init__(self, folder: Path, labels: Sequence[str], *, max_tokens: int = 64) -> None:
        from safetensors.torch import load_file

        from streamproc.compress.teacher import Teacher

        state = load_file(str(folder / "teacher.safetensors"))
        num_labels = int(state["head.weight"].shape[0])
        if len(labels) != num_labels:
            # The labels only name the outputs; timing does not depend on them.
            labels = [f"label_{i}" for i in range(num_labels)]
        # pretrained=False: build the architecture only, the cached weights replace everything.
        self._net = Teacher(num_labels, pretrained=False)
        self._net.load_state_dict(state)
        self._net.eval()
        version = f"teacher-fp32-{folder.name[:8]}"
        super().__init__(version=version, labels=labels, max_tokens=max_tokens)

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        try:
            ids, mask = self._net.encode(texts, self._max_tokens)  # (B, T), (B, T)
            with torch.inference_mode():
                probs = torch.softmax(self._net(ids, mask).float(), dim=-1).tolist()  # (B, L)
        except RuntimeError as exc:
            raise ModelError(f"teacher failed on a batch of {len(texts)}: {exc}") from exc
        return predictions_from_probabilities(self._labels, probs)


def load_teacher_classifier(
    cache_dir: Path, labels: Sequence[str] = (), *, max_tokens: int = 64
) -> TeacherClassifier:
    """The cached teacher as a classifier; :class:`ModelError` when none is cached."""
    folder = find_cached_teacher(cache_dir, num_labels=len(labels) or None)
    if folder is None:
        folder = find_cached_teacher(cache_dir)
    if folder is None:
        raise ModelError(
            f"no fine-tuned teacher cached under {cache_dir / 'teachers'} "
            "(run `streamproc distill` first)"
        )
    return TeacherClassifier(folder, labels, max_tokens=max_tokens)
