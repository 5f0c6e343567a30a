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
load or verify is refused (logged, counted) and the old model keeps serving.
"""

from __future__ import annotations

import logging
from pathlib import Path

from streamproc.errors import ArtifactError
from streamproc.model.base import TextClassifier

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

    def __init__(self, model_dir: Path, *, num_threads: int | None = None) -> None:
        self.model_dir = model_dir
        self._num_threads = num_threads
        self._refused: set[str] = set()  # versions that failed: not retried every poll

    def load_current(self) -> TextClassifier:
        """The model CURRENT names; :class:`ArtifactError` if it is missing or invalid."""
        from streamproc.model.artifact import resolve_current
        from streamproc.model.runtime import load_classifier

        return load_classifier(resolve_current(self.model_dir), num_threads=self._num_threads)

    def wanted_version(self) -> str | None:
        try:
            return (self.model_dir / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def poll(self, serving_version: str) -> TextClassifier | None:
        """A newly published, verified model, or None. Blocking: run it off the event loop.

        Raises :class:`ArtifactError` once for a version that cannot be loaded (then ignores it).
        """
        wanted = self.wanted_version()
        if wanted is None or wanted == serving_version or wanted in self._refused:
            return None
        try:
            model = self.load_current()
        except ArtifactError:
            self._refused.add(wanted)
            raise
        if model.version != wanted:
            self._refused.add(wanted)
            raise ArtifactError(
                f"CURRENT names {wanted!r} but the artifact there declares {model.version!r}"
            )
        return model
