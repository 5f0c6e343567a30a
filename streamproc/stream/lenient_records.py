"""Records whose header key is not UTF-8 reach the pipeline (and its dead-letter path).

Kafka header keys are bytes on the wire; aiokafka (0.14) decodes them as UTF-8 in its record
reader, inside the fetch. One record with a key that is not UTF-8 made every fetch of its
partition raise ``UnicodeDecodeError`` — before anything of that fetch reached us: the partition
stalled for good (tests/reliability/test_header_keys.py saw it).

:func:`install` wraps aiokafka's fetch-side parsing once per process: the fast (Cython) reader
still parses every batch; only when it raises ``UnicodeDecodeError`` are the rest of that fetch's
records parsed again by aiokafka's pure-Python reader, with header keys decoded
``surrogateescape`` (the original bytes survive as lone surrogates). The pipeline then
dead-letters such a record (reason ``invalid_header``; :func:`invalid_header_key`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["install", "invalid_header_key"]

log = logging.getLogger(__name__)

_installed = False


def invalid_header_key(headers: Any) -> str | None:
    """The first header key that is not valid UTF-8 (escaped, e.g. ``\\xff\\xfekey``), or None."""
    if not headers:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    for key, _ in items:
        if isinstance(key, str) and not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raw = key.encode("utf-8", "surrogateescape")
                return raw.decode("utf-8", "backslashreplace")
    return None


class _LenientBytes(bytearray):
    """A record buffer whose slices decode invalid UTF-8 with ``surrogateescape``."""

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return _LenientBytes(item) if isinstance(index, slice) else item

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self).decode(encoding, "surrogateescape")


def install() -> None:
    """Patch aiokafka's fetcher (idempotent; the worker calls it before its consumer starts)."""
    global _installed
    if _installed:
        return
    from aiokafka.consumer import fetcher
    from aiokafka.record import default_records, memory_records

    # Any: aiokafka's private classes, subclassed here (its typing does not cover them).
    python_batch: Any = default_records._DefaultRecordBatchPy
    python_records: Any = memory_records._MemoryRecordsPy
    partition_records: Any = fetcher.PartitionRecords
    MemoryRecords = memory_records.MemoryRecords

    class _KeptMemoryRecords:
        """aiokafka's (fast) MemoryRecords, keeping the raw bytes for a lenient second pass."""

        __slots__ = ("_records", "raw")

        def __init__(self, raw: bytes) -> None:
            self.raw = raw
            self._records = MemoryRecords(raw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._records, name)

    class _LenientBatch(python_batch):
        def _maybe_uncompress(self) -> None:
            super()._maybe_uncompress()
            buffer: Any = getattr(self, "_buffer")  # noqa: B009 - set by aiokafka's reader
            if not isinstance(buffer, _LenientBytes):
                self._buffer = _LenientBytes(buffer)

    class _LenientMemoryRecords(python_records):
        """The pure-Python reader with lenient batches, from ``resume`` on (the batches before
        it were delivered already)."""

        def __init__(self, raw: bytes, resume: int) -> None:
            super().__init__(raw)
            self._resume = resume

        def next_batch(self, *args: Any, **kwargs: Any) -> Any:
            while True:
                next_slice = self._next_slice
                if next_slice is None:
                    return None
                if next_slice[self.MAGIC_OFFSET] < 2:  # a legacy batch: it has no headers
                    return super().next_batch(*args, **kwargs)
                self._cache_next()
                batch = _LenientBatch(next_slice)
                if batch.next_offset > self._resume:
                    return batch

    class _LenientPartitionRecords(partition_records):
        def _unpack_records(self) -> Iterator[Any]:
            try:
                yield from super()._unpack_records()
            except UnicodeDecodeError as exc:
                records: Any = getattr(self, "_records")  # noqa: B009 - aiokafka's
                raw = getattr(records, "raw", None)
                if raw is None:
                    raise
                log.warning(
                    "%s: a record at or after offset %d has a header key that is not UTF-8 "
                    "(%s); reading the rest of this fetch with the lenient reader",
                    self._tp,
                    self.next_fetch_offset,
                    exc,
                )
                self._records = _LenientMemoryRecords(raw, self.next_fetch_offset)
                yield from super()._unpack_records()

    fetcher.MemoryRecords = _KeptMemoryRecords
    fetcher.PartitionRecords = _LenientPartitionRecords
    _installed = True
