"""Which model serves, and hot reload from a watched directory.

Layout of ``STREAMPROC_MODEL_DIR``::

    models/
      CURRENT            one line: the version that should serve (replaced atomically)
      trec-20261122-1/   a versioned artifact (see streamproc/model/artifact.py), or, with
      trec-20261122-2/   STREAMPROC_MODEL=hf or a plugin, whatever directory its factory loads

``streamproc model publish ARTIFACT --model-dir models`` copies an artifact in and flips CURRENT.
Each worker polls CURRENT every ``STREAMPROC_MODEL_POLL_INTERVAL_S``; a new version is loaded
and checked in a background thread, then swapped in *between* batches, so no event is dropped
or run twice and every output names the version that produced it. Checked means: the files
verify (artifacts: sha256, labels vs outputs, window, finite weights), the model honours the
:class:`~streamproc.model.base.TextClassifier` contract, declares the version CURRENT names, and
answers a trial prediction sensibly (:func:`~streamproc.model.base.check_classifier`).

A version that fails is refused (logged, counted) and the old model keeps serving. It is tried
again once it is published again (CURRENT rewritten) or its files change, not on every poll.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamproc.errors import ArtifactError
from streamproc.model.base import TextClassifier, check_classifier

if TYPE_CHECKING:
    from streamproc.model.runtime import RuntimeChoice
    from streamproc.settings import Settings

__all__ = [
    "ArtifactWatcher",
    "ModelSlot",
    "ServedModel",
    "close_model",
    "load_in_this_process",
    "open_model",
]

log = logging.getLogger(__name__)

#: ``load(version_dir, version) -> model`` for the version CURRENT names.
VersionLoader = Callable[[Path, str], TextClassifier]


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
    """Loads the version named by ``<model_dir>/CURRENT`` and notices when it changes.

    ``load`` builds the model from a version's directory (default: a streamproc artifact with
    ``num_threads`` and ``runtime``); whatever it returns must pass :func:`check_classifier`.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        num_threads: int | None = None,
        runtime: RuntimeChoice = "auto",
        load: VersionLoader | None = None,
    ) -> None:
        self.model_dir = model_dir
        self._num_threads = num_threads
        self._runtime: RuntimeChoice = runtime
        self._load = load or self._load_artifact
        # The last refusal: (version, CURRENT's identity, the version's files). Not retried while
        # all three stay the same; publishing again or changing a file tries again.
        self._refused: tuple[str, tuple[int, int], tuple[tuple[str, int, int], ...]] | None = None

    def _load_artifact(self, path: Path, version: str) -> TextClassifier:
        from streamproc.model.runtime import load_classifier

        model = load_classifier(path, num_threads=self._num_threads, runtime=self._runtime)
        return check_classifier(model, source=str(path))

    def load_current(self) -> TextClassifier:
        """The model CURRENT names; :class:`ArtifactError` if it is missing or invalid."""
        current = self.model_dir / "CURRENT"
        read = _read_current(current)
        if read is None:
            raise ArtifactError(
                f"{current}: missing or unreadable (publish a model: `streamproc model publish "
                f"builtin:trec --model-dir {self.model_dir}` serves the shipped TREC classifier)"
            )
        return self._load_version(read[0])

    def wanted_version(self) -> str | None:
        read = _read_current(self.model_dir / "CURRENT")
        return read[0] if read else None

    def poll(self, serving_version: str) -> TextClassifier | None:
        """A newly published, checked model, or None. Blocking: run it off the event loop.

        Reads CURRENT once. Raises :class:`ArtifactError` once for a version that cannot serve;
        the same publication of the same files is then ignored.
        """
        read = _read_current(self.model_dir / "CURRENT")
        if read is None or read[0] == serving_version:
            return None
        wanted, stamp = read
        key = (wanted, stamp, _fingerprint(self.model_dir / wanted))
        if key == self._refused:
            return None
        try:
            model = self._load_version(wanted)
        except ArtifactError:
            self._refused = key
            raise
        self._refused = None
        return model

    def _load_version(self, wanted: str) -> TextClassifier:
        from streamproc.model.artifact import check_version_name

        check_version_name(wanted)
        path = self.model_dir / wanted
        if not path.is_dir():
            raise ArtifactError(f"CURRENT names {wanted!r}, but {path} holds no artifact")
        model = self._load(path, wanted)
        if model.version != wanted:
            raise ArtifactError(
                f"CURRENT names {wanted!r} but the model loaded from {path} declares "
                f"{model.version!r}"
            )
        return model


def _read_current(current: Path) -> tuple[str, tuple[int, int]] | None:
    """CURRENT's version and identity (inode, mtime: a new publication changes them), read in
    one open so both describe the same file; None if missing, unreadable or empty."""
    try:
        with current.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            version = handle.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return (version, (stat.st_ino, stat.st_mtime_ns)) if version else None


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each file of a version directory (empty if none)."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file())
    except OSError:
        return ()
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class ServedModel:
    """The model a worker starts with, where it came from, and its watcher (None: no reload)."""

    def __init__(self, model: TextClassifier, spec: str, watcher: ArtifactWatcher | None) -> None:
        self.model = model
        self.spec = spec
        self.watcher = watcher

    def describe(self) -> dict[str, Any]:
        """For ``/readyz``: the ``STREAMPROC_MODEL`` spec and the watched directory (or None)."""
        return {
            "spec": self.spec,
            "hot_reload": str(self.watcher.model_dir) if self.watcher is not None else None,
        }


def open_model(settings: Settings) -> ServedModel:
    """Load the model ``STREAMPROC_MODEL`` names (see :mod:`streamproc.model.loading`), in a
    child process unless ``STREAMPROC_MODEL_ISOLATION=thread``.

    Raises :class:`~streamproc.errors.ConfigError` for a bad spec and
    :class:`ArtifactError` for a model that cannot serve.
    """
    from streamproc.model.loading import parse_model_spec

    spec = parse_model_spec(settings.model)

    def load(path: Path | None, version: str | None) -> TextClassifier:
        if settings.model_isolation == "thread":
            return load_in_this_process(settings, path, version)
        from streamproc.model.process import ProcessClassifier

        return ProcessClassifier.start(
            functools.partial(load_in_this_process, settings, path, version)
        )

    versioned = spec.path is None and (spec.builtin or (settings.model_dir / "CURRENT").is_file())
    if not versioned:
        return ServedModel(load(spec.path, None), spec.text, None)
    watcher = ArtifactWatcher(
        settings.model_dir,
        num_threads=settings.model_threads or None,
        runtime=settings.model_runtime,
        load=load,
    )
    return ServedModel(watcher.load_current(), spec.text, watcher)


def load_in_this_process(settings: Settings, path: Path | None, version: str | None) -> Any:
    """The model ``settings.model`` names, from ``path`` (None: the spec's own directory), built
    and checked here: in the worker (thread isolation) or in its model process."""
    from streamproc.model.loading import ModelContext, load_model, parse_model_spec

    spec = parse_model_spec(settings.model)
    threads = settings.model_threads or None
    context = ModelContext(path=path, version=version, threads=threads, settings=settings)
    return load_model(spec, context)


def close_model(model: TextClassifier) -> None:
    """Release what a model holds, if it says how (a model process: stop the child)."""
    close = getattr(model, "close", None)
    if callable(close):
        close()
