"""Which model artifact a tool serves (the bench and the soak): one order, one place.

1. the artifact named on the command line (a directory or ``builtin:NAME``);
2. with ``--quick``, a small test artifact built now (``streamproc.testing.build_test_artifact``);
3. the version ``<model dir>/CURRENT`` names;
4. the TREC classifier shipped in the package (``builtin:trec``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from streamproc.errors import ConfigError, StreamprocError

__all__ = ["choose_artifact"]


def choose_artifact(
    artifact: Path | None, *, quick: bool, scratch: Path, model_dir: Path | None = None
) -> tuple[Path, str]:
    """The artifact directory to serve, and how it was chosen (tools put it in their reports).
    ``model_dir``: where ``CURRENT`` is read (default: the settings' model directory)."""
    from streamproc.model.artifact import builtin_artifact, resolve_artifact_argument
    from streamproc.model.versions import resolve_current

    if artifact is not None:
        given = artifact
        artifact = resolve_artifact_argument(artifact)
        if not (artifact / "manifest.json").is_file():
            raise ConfigError(f"--artifact {given}: no manifest.json there")
        return artifact, f"--artifact {given}"
    if quick:
        from streamproc.testing import build_test_artifact

        return build_test_artifact(
            scratch / "test-artifact", "test-artifact"
        ), "build_test_artifact"
    if model_dir is None:
        from streamproc.settings import load_settings

        model_dir = load_settings().model_dir
    with contextlib.suppress(StreamprocError):
        return resolve_current(model_dir), "STREAMPROC_MODEL_DIR/CURRENT"
    return builtin_artifact("trec"), "builtin:trec (the artifact shipped in the package)"
