"""Input and output records: decoding, validation and the orjson codec.

Input value (JSON object, UTF-8)::

    {"id": "<non-empty string>", "text": "<non-empty string>", "ts": <epoch ms, optional>, ...}

Unknown fields are allowed and ignored. Anything else is an :class:`EventError` whose ``reason``
(one of :data:`DEAD_LETTER_REASONS`) goes to the dead-letter topic as a header, with the original
bytes untouched. The full schemas are in ``streamproc/resources/schemas/``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.errors import EventError
from streamproc.model.base import Prediction

__all__ = [
    "DEAD_LETTER_REASONS",
    "MAX_ID_CHARS",
    "TextEvent",
    "dead_letter_headers",
    "decode_event",
    "encode_prediction",
    "latency_origin",
    "source_headers",
]

MAX_ID_CHARS = 512

#: Every reason a record can be dead-lettered for (the ``streamproc-reason`` header).
DEAD_LETTER_REASONS = (
    "empty_payload",  # null or zero-length value
    "oversized",  # value larger than STREAMPROC_MAX_EVENT_BYTES
    "invalid_utf8",  # value is not UTF-8
    "malformed_json",  # not JSON (or nested deeper than the parser allows)
    "not_an_object",  # JSON, but not an object
    "missing_id",
    "invalid_id",  # id not a non-empty string of at most MAX_ID_CHARS characters
    "missing_text",
    "invalid_text",  # text is not a string
    "empty_text",  # text is empty or only whitespace
    "invalid_ts",  # ts present but not a finite, non-negative number
    "inference_error",  # the model raised on this very event (see stream/pipeline.py)
    "inference_timeout",  # the model process hung on this very event alone (stream/pipeline.py)
    "invalid_header",  # a header key is not UTF-8 (see stream/lenient_records.py)
    "publish_failed",  # its prediction could never be published (see stream/publish_errors.py)
)


@dataclass(frozen=True, slots=True)
class TextEvent:
    """A validated input event."""

    id: str
    text: str
    ts_ms: float | None  # producer time, epoch milliseconds, when the producer stamped it


def decode_event(raw: bytes | None, *, max_bytes: int) -> TextEvent:
    """Validate one raw input value; raise :class:`EventError` with a reason when it is bad."""
    if not raw:
        raise EventError("empty_payload", "the record has no value (null or 0 bytes)")
    if len(raw) > max_bytes:
        raise EventError("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 too; tell the two apart only on this (rare) error path.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as utf_exc:
            raise EventError("invalid_utf8", str(utf_exc)[:200]) from None
        raise EventError("malformed_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise EventError("not_an_object", f"got {type(doc).__name__}")
    return _validate(doc)


def _validate(doc: Mapping[str, Any]) -> TextEvent:
    if "id" not in doc:
        raise EventError("missing_id", 'no "id" field')
    event_id = doc["id"]
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_CHARS:
        raise EventError("invalid_id", f"id must be a string of 1..{MAX_ID_CHARS} characters")
    if "text" not in doc:
        raise EventError("missing_text", 'no "text" field')
    text = doc["text"]
    if not isinstance(text, str):
        raise EventError("invalid_text", f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise EventError(
            "empty_text", f'"text" is empty or only whitespace ({len(text)} characters)'
        )
    ts = doc.get("ts")
    if ts is not None:
        # bool is an int subclass: reject it explicitly.
        if (
            isinstance(ts, bool)
            or not isinstance(ts, int | float)
            or not math.isfinite(ts)
            or ts < 0
        ):
            raise EventError("invalid_ts", "ts must be a non-negative number of epoch milliseconds")
        ts = float(ts)
    return TextEvent(id=event_id, text=text, ts_ms=ts)


#: A payload ``ts`` further than this from the Kafka record timestamp is not trusted for latency
#: (a ts in seconds, a producer clock far off, a replay of old events).
MAX_TS_SKEW_MS = 3_600_000.0


def latency_origin(
    ts_ms: float | None, record_timestamp_ms: float | None
) -> tuple[float | None, str | None]:
    """Where event-to-prediction latency starts: ``(epoch ms, "ts" | "kafka_timestamp")``.

    The payload's ``ts`` when it is within :data:`MAX_TS_SKEW_MS` of the record timestamp (or
    there is none), else the record timestamp; ``(None, None)`` when neither exists."""
    if ts_ms is not None and (
        record_timestamp_ms is None or abs(ts_ms - record_timestamp_ms) <= MAX_TS_SKEW_MS
    ):
        return ts_ms, "ts"
    if record_timestamp_ms is not None:
        return record_timestamp_ms, "kafka_timestamp"
    return None, None


def encode_prediction(
    event: TextEvent,
    prediction: Prediction,
    *,
    model_version: str,
    batch_size: int,
    now_ms: float | None = None,
    record_timestamp_ms: float | None = None,
) -> bytes:
    """The output record (orjson). ``latency_ms`` is event-to-prediction, from the clock
    :func:`latency_origin` picks; ``latency_from`` says which. A multi-label prediction adds
    ``labels`` (the labels at or above the threshold); other outputs have no such field."""
    now_ms = time.time() * 1000.0 if now_ms is None else now_ms
    origin_ms, source = latency_origin(event.ts_ms, record_timestamp_ms)
    out = {
        "id": event.id,
        "label": prediction.label,
        "score": prediction.score,
        "probabilities": prediction.probabilities,
        "model_version": model_version,
        "batch_size": batch_size,
        "ts": event.ts_ms,
        "predicted_at": now_ms,
        "latency_ms": None if origin_ms is None else max(0.0, now_ms - origin_ms),
        "latency_from": None if origin_ms is None else source,
    }
    if prediction.labels is not None:  # multi-label models only: single-label output unchanged
        out["labels"] = prediction.labels
    return orjson.dumps(out)


#: Headers this service writes on dead letters start with this; incoming ones are renamed.
DEAD_LETTER_HEADER_PREFIX = "streamproc-"

#: Where a prediction or dead letter came from: on every record streamproc publishes.
SOURCE_TOPIC_HEADER = "streamproc-source-topic"
SOURCE_PARTITION_HEADER = "streamproc-source-partition"
SOURCE_OFFSET_HEADER = "streamproc-source-offset"


@functools.lru_cache(maxsize=64)
def _topic_bytes(topic: str) -> bytes:
    return topic.encode()


def source_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes | None]]:
    """The headers naming an output's input record (``streamproc verify`` reads them). Per-record
    hot path: the topic's bytes are cached, the numbers are formatted in C."""
    return [
        (SOURCE_TOPIC_HEADER, _topic_bytes(topic)),
        (SOURCE_PARTITION_HEADER, b"%d" % partition),
        (SOURCE_OFFSET_HEADER, b"%d" % offset),
    ]


def dead_letter_headers(
    error: EventError,
    *,
    topic: str,
    partition: int,
    offset: int,
    original: Any = None,
) -> list[tuple[str, bytes | None]]:
    """Headers of a dead-letter record: the original headers, then the reason and where it came
    from. An original header named ``streamproc-…`` is kept as ``original-streamproc-…``, so a
    producer cannot spoof the reason or source; a null header value stays null."""
    headers = _header_items(original)
    headers += [
        ("streamproc-reason", error.reason.encode()),
        ("streamproc-detail", error.detail.encode("utf-8", "replace")[:1024]),
        ("streamproc-source-topic", topic.encode()),
        ("streamproc-source-partition", str(partition).encode()),
        ("streamproc-source-offset", str(offset).encode()),
    ]
    return headers


def _header_items(headers: Any) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for key, value in items:
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if not name.isascii():  # a key that was not UTF-8 arrives with lone surrogates
            name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if name.startswith(DEAD_LETTER_HEADER_PREFIX):
            name = "original-" + name
        if value is not None and not isinstance(value, bytes):
            value = str(value).encode()
        out.append((name, value))
    return out
