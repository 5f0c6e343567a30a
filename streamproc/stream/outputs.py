"""What the pipeline publishes, and how one record reaches the producer.

An :class:`Outgoing` is one output record (a prediction or a dead letter) with the source
records it settles. :class:`OutputSender` builds them and hands them to the
:class:`Publisher`, one at a time or in order, and decides — through
:func:`~streamproc.stream.publish_errors.classify_publish_error` — what a refused send means:

- a record that can never be sent as it is (too large) is replaced: a prediction by a dead
  letter of its input (reason ``publish_failed``), a dead letter by a truncated one;
- an error no retry can fix (not authorised, invalid topic, …) becomes one
  :class:`~streamproc.errors.PublishError` naming the record, the topic and why: the worker stops;
- anything else is returned as an already-failed acknowledgement, for the pipeline to retry in
  order with the records sent after it.

Ordering, retries and settling stay in :class:`~streamproc.stream.pipeline.BatchingPipeline`,
which owns the records in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from streamproc.errors import EventError, PublishError
from streamproc.events import (
    DEAD_LETTER_HEADER_PREFIX,
    TextEvent,
    dead_letter_headers,
    encode_prediction,
    source_headers,
)
from streamproc.model.base import Prediction
from streamproc.stream.metrics import StreamMetrics
from streamproc.stream.publish_errors import PublishErrorKind, classify_publish_error
from streamproc.tracing import trace_headers

__all__ = ["Outgoing", "OutputSender", "Publisher", "SourceRecord", "failed_future", "refused"]

log = logging.getLogger(__name__)


class SourceRecord(Protocol):
    """What the pipeline needs of a consumed record (a Faust ``Event`` adapts to it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_s: float  # the broker/producer timestamp, epoch seconds
    headers: Any

    def ack(self) -> None: ...


class Publisher(Protocol):
    """Sends records; each call returns an awaitable resolved once the broker acknowledged it."""

    async def send_prediction(
        self,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes | None]],
    ) -> Awaitable[Any]: ...

    async def send_dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes | None]],
    ) -> Awaitable[Any]: ...


@dataclass(slots=True)
class Outgoing:
    """A record to publish and the source records it settles."""

    kind: Literal["prediction", "dead_letter"]
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    settles: Sequence[SourceRecord] = ()
    latency_s: float | None = None  # predictions: produced → published (what metrics record)

    @property
    def where(self) -> str:
        """The source record(s) this output settles, as ``topic[partition]@offset``."""
        return ", ".join(f"{r.topic}[{r.partition}]@{r.offset}" for r in self.settles)


class OutputSender:
    """Builds output records and hands them to the producer (see the module docstring)."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        metrics: StreamMetrics,
        max_event_bytes: int,
        transactional: bool,
        publish_timeout_s: float | None,
        topics: Mapping[str, str] | None = None,
    ) -> None:
        self.publisher = publisher  # public: tests swap in a fake
        self._metrics = metrics
        self._max_event_bytes = max_event_bytes
        # exactly_once: the output of an input from partition p goes to partition p (the
        # transaction of p commits p's input offsets; topics are co-partitioned).
        self._transactional = transactional
        self.publish_timeout_s = publish_timeout_s  # None: retry retriable errors forever
        self._topics = dict(topics or {})  # output kind -> topic name, for error messages

    # -- building ----------------------------------------------------------------------------
    def dead_letter(self, record: SourceRecord, error: EventError) -> Outgoing:
        """The original bytes, with headers naming the reason and where they came from."""
        self._metrics.record_dead_letter(error.reason)
        headers = dead_letter_headers(
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            original=record.headers,
        )
        partition = record.partition if self._transactional else None
        return Outgoing("dead_letter", record.key, record.value, partition, headers, [record])

    def prediction(
        self,
        record: SourceRecord,
        event: TextEvent,
        prediction: Prediction,
        *,
        model_version: str,
        batch_size: int,
        origin_s: float,
        now_s: float,
    ) -> Outgoing:
        """The prediction record for ``event``; ``origin_s``: when it was produced (wall)."""
        value = encode_prediction(
            event,
            prediction,
            model_version=model_version,
            batch_size=batch_size,
            now_ms=now_s * 1000.0,
            record_timestamp_ms=record.timestamp_s * 1000.0 if record.timestamp_s else None,
        )
        # Keyed records follow the key (partition affinity); unkeyed ones keep their partition.
        partition = None if record.key and not self._transactional else record.partition
        return Outgoing(
            "prediction",
            record.key,
            value,
            partition=partition,
            headers=source_headers(record.topic, record.partition, record.offset)
            + trace_headers(record.headers),
            settles=[record],
            latency_s=max(0.0, now_s - origin_s),
        )

    # -- sending -----------------------------------------------------------------------------
    async def send(self, item: Outgoing) -> tuple[Outgoing, Awaitable[Any]]:
        """Hand ``item`` to the producer: what was sent (a replacement if ``item`` can never be
        sent as it is) and the future of the broker's acknowledgement. Raises
        :class:`PublishError` if no retry can help."""
        while True:
            try:
                if item.kind == "prediction":
                    assert item.value is not None
                    future = await self.publisher.send_prediction(
                        item.key, item.value, item.partition, item.headers
                    )
                else:
                    future = await self.publisher.send_dead_letter(
                        item.key, item.value, item.partition, item.headers
                    )
                return item, future
            except Exception as exc:  # the producer refused the send outright
                kind = classify_publish_error(exc)
                if kind is PublishErrorKind.FATAL:
                    raise self.failure(item, exc) from exc
                if kind is PublishErrorKind.RECORD:
                    item = self.replacement(item, exc)
                    continue
                return item, failed_future(exc)  # retried with the rest, in order

    async def send_in_order(self, items: list[Outgoing], start: int = 0) -> list[Awaitable[Any]]:
        """Send ``items[start:]`` in order (replacements written back into ``items``); the
        futures of their acknowledgements.

        Once the producer refuses one outright (a topic whose metadata never comes makes each
        send wait the whole request timeout), the rest are not tried: they fail with the same
        error and are retried after it, in order."""
        futures: list[Awaitable[Any]] = []
        refusal: BaseException | None = None
        for index in range(start, len(items)):
            if refusal is not None:
                futures.append(failed_future(refusal))
                continue
            items[index], future = await self.send(items[index])
            if isinstance(future, _Refusal):
                refusal = future.exception()
            futures.append(future)
        return futures

    def replacement(self, item: Outgoing, error: BaseException) -> Outgoing:
        """What to send instead of a record that can never be sent as it is: a prediction's
        input as a dead letter (reason ``publish_failed``), a dead letter truncated. Raises
        :class:`PublishError` when nothing smaller is left to try."""
        detail = f"{type(error).__name__}: {error}"[:500]
        if item.kind == "prediction":
            self._metrics.record_publish_failure("dead_lettered")
            log.error(
                "the prediction of %s cannot be published (%s): dead-lettered", item.where, detail
            )
            dead = self.dead_letter(item.settles[0], EventError("publish_failed", detail))
            return self._truncated(dead)
        if len(item.value or b"") > self._max_event_bytes:
            self._metrics.record_publish_failure("truncated")
            log.warning(
                "the dead letter of %s is too large to send (%s): truncated", item.where, detail
            )
            return self._truncated(item)
        raise self.failure(item, error)

    def failure(
        self, item: Outgoing, error: BaseException, *, timed_out: bool = False
    ) -> PublishError:
        """The error that stops the worker: one line naming the record, the topic and why."""
        what = "prediction" if item.kind == "prediction" else "dead letter"
        topic = self._topics.get(item.kind, f"of {what}s")
        if timed_out:
            why = (
                f"not acknowledged within {self.publish_timeout_s:g}s "
                f"(STREAMPROC_PUBLISH_TIMEOUT_S), last error {error!r}"
            )
        else:
            why = f"{error!r}, which no retry can fix"
        message = (
            f"cannot publish the {what} of {item.where} to topic {topic}: {why}; the worker "
            "stops, and nothing from that record on is committed"
        )
        self._metrics.record_publish_failure("stopped")
        log.critical("%s", message)
        return PublishError(message)

    def _truncated(self, item: Outgoing) -> Outgoing:
        """A dead letter whose value keeps its first ``max_event_bytes`` bytes; a header says how
        long the original was (none if it was not cut). It settles the same source records."""
        size = len(item.value or b"")
        if size <= self._max_event_bytes:
            return item
        headers = [
            *item.headers,
            (DEAD_LETTER_HEADER_PREFIX + "truncated-from", str(size).encode()),
        ]
        value = (item.value or b"")[: self._max_event_bytes]
        return Outgoing("dead_letter", item.key, value, item.partition, headers, item.settles)


class _Refusal(asyncio.Future[Any]):
    """The future of a send the producer refused outright (it never reached the broker)."""


def failed_future(error: BaseException) -> asyncio.Future[Any]:
    """An acknowledgement that already failed with ``error`` (the send was refused)."""
    failed = _Refusal(loop=asyncio.get_running_loop())
    failed.set_exception(error)
    return failed


def refused(future: Awaitable[Any]) -> bool:
    """Whether ``future`` is a refused send's (it never reached the broker)."""
    return isinstance(future, _Refusal)
