"""Which model serves, and hot reload from a watched directory.

Layout of ``STREAMPROC_MODEL_DIR``::

    models/
      CURRENT            one line: the version that should serve (replaced atomically)
      trec-20261122-1/   a versioned artifact (see streamproc/model/artifact.py)
      trec-20261122-2/

``streamproc model publish ARTIFACT --model-dir models`` copies an artifact in and flips CURRENT.
Each worker polls CURRENT every ``STREAMPROC_MODEL_POLL_INTERVAL_S``; a new version is loaded
and verified in a background thread, then swapped in *between* batches, so no event is dropped
or run twice and every output names the version that produced it. An artifact that fails to
load or verify is refused (logged, counted) and the old model keeps serving; it is tried again
once its files change (fixed in place, or published again), not on every poll.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from streamproc.errors import ArtifactError
from streamproc.model.base import TextClassifier

if TYPE_CHECKING:
    from streamproc.model.runtime import RuntimeChoice

__all__ = ["ArtifactWatcher", "ModelSlot"]

log = logging.getLogger(__name__)


class ModelSlot:
    """The serving model. Read once per batch; replaced only on the event loop."""

    def __init__(self, model: TextClassifier) -> None:
        self._model = model

    def __call__(self) -> TextClassifier:
        return self._model

    def swap(self, model: TextClassifier) -> TextClassifier:
        old, self._model = self._model, model
        return old


class ArtifactWatcher:
    """Loads the version named by ``<model_dir>/CURRENT`` and notices when it changes."""

    def __init__(
        self,
        model_dir: Path,
        *,
        num_threads: int | None = None,
        runtime: RuntimeChoice = "auto",
    ) -> None:
        self.model_dir = model_dir
        self._num_threads = num_threads
        self._runtime: RuntimeChoice = runtime
        # Refused artifacts by (version, file fingerprint): not retried every poll, but tried
        # again once their files change.
        self._refused: set[tuple[str, tuple[tuple[str, int, int], ...]]] = set()

    def load_current(self) -> TextClassifier:
        """The model CURRENT names; :class:`ArtifactError` if it is missing or invalid."""
        from streamproc.model.artifact import resolve_current
        from streamproc.model.runtime import load_classifier

        return load_classifier(
            resolve_current(self.model_dir), num_threads=self._num_threads, runtime=self._runtime
        )

    def wanted_version(self) -> str | None:
        try:
            return (self.model_dir / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def poll(self, serving_version: str) -> TextClassifier | None:
        """A newly published, verified model, or None. Blocking: run it off the event loop.

        Raises :class:`ArtifactError` once for an artifact that cannot be loaded; the same files
        are then ignored until they change.
        """
        from streamproc.model.artifact import MANIFEST, check_version_name
        from streamproc.model.runtime import load_classifier

        wanted = self.wanted_version()
        if wanted is None or wanted == serving_version:
            return None
        path = self.model_dir / wanted
        key = (wanted, _fingerprint(path))
        if key in self._refused:
            return None
        try:
            # The version read above, not CURRENT again: it may have moved on meanwhile.
            check_version_name(wanted)
            if not (path / MANIFEST).is_file():
                raise ArtifactError(f"CURRENT names {wanted!r}, but {path} holds no artifact")
            model = load_classifier(path, num_threads=self._num_threads, runtime=self._runtime)
            if model.version != wanted:
                raise ArtifactError(
                    f"CURRENT names {wanted!r} but the artifact there declares {model.version!r}"
                )
        except ArtifactError:
            self._refused.add(key)
            raise
        return model


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each file of an artifact directory (empty if none)."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file())
    except OSError:
        return ()
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
