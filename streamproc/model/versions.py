"""The model directory workers hot-reload from: publishing an artifact into it, the versions
published there, and rolling ``CURRENT`` back::

    <model_dir>/<version>/...   a copy of the artifact
    <model_dir>/CURRENT         text: the version name, replaced atomically (temp file + os.replace)
    <model_dir>/history.jsonl   one line per publish or rollback (``streamproc model rollback``)

``<model_dir>/history.jsonl`` gets one line per change of ``CURRENT`` made by streamproc::

    {"at": "2026-12-02T07:38:55Z", "action": "publish", "version": "trec-v3"}
    {"at": "2026-12-02T08:01:10Z", "action": "rollback", "version": "trec-v2", "from": "trec-v3"}

Replayed, it is a stack of what ``CURRENT`` named: a publish pushes, a rollback goes back down
to its version. ``rollback`` without a version is an undo: publish v1, v2, v3, then rollback
serves v2, rollback again v1; publish v4 and rollback returns to v1. Workers read only
``CURRENT``; the history is for people and this module. Past the history's beginning (a
directory published before it existed) rollback goes by the manifests' ``created`` times.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamproc.errors import ArtifactError
from streamproc.model.artifact import (
    MANIFEST,
    check_version_name,
    make_readable,
    read_manifest,
    verify_artifact,
)

__all__ = [
    "CURRENT_FILE",
    "HISTORY_FILE",
    "PublishedVersion",
    "append_history",
    "current_version",
    "list_versions",
    "previous_version",
    "publish_artifact",
    "read_history",
    "resolve_current",
    "rollback",
    "write_current",
]

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "history.jsonl"


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    version: str
    current: bool
    published_at: str | None  # last publish, from the history
    manifest: dict[str, Any] | None  # None: unreadable (problem says why)
    problem: str | None = None

    @property
    def created(self) -> str:
        return str((self.manifest or {}).get("created", "?"))

    @property
    def runtime(self) -> str:
        block = (self.manifest or {}).get("runtime") or {"engine": "torch"}
        precision = block.get("precision")
        return f"{block.get('engine', '?')}" + (f" {precision}" if precision else "")

    @property
    def accuracy(self) -> float | None:
        # This artifact's own evaluation only: an exported one's source scored on another runtime.
        evaluation = ((self.manifest or {}).get("metadata") or {}).get("evaluation") or {}
        value = evaluation.get("accuracy")
        return float(value) if isinstance(value, int | float) else None


def append_history(model_dir: Path, action: str, version: str, **extra: str) -> None:
    """Add one line to the history (one O_APPEND write: concurrent writers do not interleave)."""
    line = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": action}
    line.update(version=version, **extra)
    fd = os.open(Path(model_dir) / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def read_history(model_dir: Path) -> list[dict[str, str]]:
    """The history's entries, oldest first; lines that are not entries are skipped."""
    try:
        text = (Path(model_dir) / HISTORY_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ArtifactError(f"{Path(model_dir) / HISTORY_FILE}: unreadable ({exc})") from None
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line (a crash mid-write) must not block rollbacks
        if isinstance(entry, dict) and isinstance(entry.get("version"), str):
            entries.append(entry)
    return entries


def _served_stack(history: Iterable[Mapping[str, str]]) -> list[str]:
    stack: list[str] = []
    for entry in history:
        version = entry["version"]
        if entry.get("action") == "rollback":
            if version in stack:  # back down to its latest place
                del stack[len(stack) - stack[::-1].index(version) :]
            else:  # to one from before the history: what was above it is not below it
                stack = [version]
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack


def previous_version(
    history: Sequence[Mapping[str, str]],
    current: str | None,
    available: Mapping[str, str],
) -> str | None:
    """What ``rollback`` without a version serves: the version ``CURRENT`` named before
    ``current`` (skipping versions no longer in ``available``, version -> created time); when the
    history has none, the latest-created version created before ``current``. None: nothing older.
    """
    stack = [v for v in _served_stack(history) if v in available]
    while stack and stack[-1] == current:
        stack.pop()
    if stack:
        return stack[-1]
    if current is None or current not in available:
        return None
    created = available[current]
    older = [v for v, at in available.items() if at < created and v != current]
    return max(older, key=lambda v: available[v]) if older else None


def current_version(model_dir: Path) -> str | None:
    try:
        return (Path(model_dir) / CURRENT_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(f"{Path(model_dir) / CURRENT_FILE}: unreadable ({exc})") from None


def list_versions(model_dir: Path) -> list[PublishedVersion]:
    """Every version directory in ``model_dir`` (manifests read, digests not checked), oldest
    created first."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ArtifactError(f"{model_dir}: no such model directory")
    current = current_version(model_dir)
    published = {
        e["version"]: e.get("at") for e in read_history(model_dir) if e.get("action") == "publish"
    }
    found = []
    for path in sorted(model_dir.iterdir()):
        if not path.is_dir() or path.name.startswith("."):  # .<version>.* : a publish under way
            continue
        try:
            manifest, problem = read_manifest(path), None
        except ArtifactError as exc:
            manifest, problem = None, str(exc)
        found.append(
            PublishedVersion(
                path.name, path.name == current, published.get(path.name), manifest, problem
            )
        )
    return sorted(found, key=lambda v: (v.created, v.version))


def rollback(model_dir: Path, version: str | None = None) -> tuple[str | None, str]:
    """Point ``CURRENT`` at ``version`` (default: the one it named before, see module doc),
    atomically as ``publish`` does, after verifying that artifact. Returns (from, to)."""
    model_dir = Path(model_dir)
    current = current_version(model_dir)
    if version is None:
        available = {v.version: v.created for v in list_versions(model_dir) if v.manifest}
        version = previous_version(read_history(model_dir), current, available)
        if version is None:
            raise ArtifactError(
                f"{model_dir}: no earlier version to roll back to from {current!r} "
                "(name one: streamproc model rollback VERSION)"
            )
    check_version_name(version)
    manifest = verify_artifact(model_dir / version)
    if manifest["version"] != version:
        raise ArtifactError(
            f"{model_dir / version} declares version {manifest['version']!r}, not {version!r}"
        )
    write_current(model_dir, version)
    append_history(model_dir, "rollback", version, **({"from": current} if current else {}))
    return current, version


def publish_artifact(artifact_dir: Path, model_dir: Path) -> str:
    """Copy a verified artifact to ``model_dir/<version>/`` and point ``model_dir/CURRENT`` at it.

    CURRENT is replaced atomically (write a temp file, then ``os.replace``), so a worker polling
    it sees either the old or the new version, never a partial name. Publishing a version that is
    already there with identical files only moves CURRENT; different files under the same version
    name are refused. Returns the version. A model dir that cannot be written (not ours, full,
    read-only) is an :class:`ArtifactError` naming the path, not a traceback.
    """
    manifest = verify_artifact(Path(artifact_dir))
    try:
        return _publish_verified(Path(artifact_dir), manifest, model_dir)
    except OSError as exc:
        where = exc.filename or model_dir
        raise ArtifactError(
            f"cannot publish into {model_dir}: {exc.strerror or exc} ({where}); the model dir "
            "must be writable by this user (a directory Docker created may belong to root)"
        ) from None


def _publish_verified(artifact_dir: Path, manifest: dict[str, Any], model_dir: Path) -> str:
    version = check_version_name(str(manifest["version"]))
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / version
    if target.exists():
        existing = verify_artifact(target)
        if existing["files"] != manifest["files"]:
            raise ArtifactError(
                f"{target} already holds a different artifact with version {version!r}; "
                "pick a new version name"
            )
    else:
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
        try:
            for name in (MANIFEST, *manifest["files"]):
                shutil.copy2(Path(artifact_dir) / name, staging / name)
            verify_artifact(staging)
            make_readable(staging)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    write_current(model_dir, version)
    append_history(model_dir, "publish", version)
    return version


def write_current(model_dir: Path, version: str) -> None:
    """Point ``model_dir/CURRENT`` at ``version`` atomically (temp file, fsync, ``os.replace``):
    a worker polling it reads the old name or the new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=model_dir)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 kept a worker running as another user out
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(version + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, model_dir / CURRENT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_current(model_dir: Path) -> Path:
    """The artifact directory ``model_dir/CURRENT`` names; ArtifactError if missing or unknown."""
    current = Path(model_dir) / CURRENT_FILE
    try:
        version = current.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ArtifactError(
            f"{current}: missing (publish a model: `streamproc model publish builtin:trec "
            f"--model-dir {model_dir}` serves the shipped TREC classifier)"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"{current}: unreadable ({exc})") from None
    try:
        check_version_name(version)
    except ArtifactError:
        raise ArtifactError(
            f"{current}: does not hold a valid version name ({version!r})"
        ) from None
    target = Path(model_dir) / version
    if not (target / MANIFEST).is_file():
        raise ArtifactError(f"{current} names version {version!r}, but {target} holds no artifact")
    return target
