"""Tracing: the W3C trace context of each input record goes onto its output record, and
(``STREAMPROC_TRACING=otel``) one OpenTelemetry span covers each batch.

* **Propagation** (always on): an input's ``traceparent`` and ``tracestate`` headers are copied
  unchanged onto its prediction (dead letters keep every original header already), so a trace
  started by the producer continues downstream of streamproc. Per-record cost when the record
  has no headers: one truth test.
* **Batch spans** (opt-in): a batch serves many traces, so its span is the child of none; it is
  *linked* to each input's span context, and carries the batch size, model version and
  partitions. OpenTelemetry is imported only then (the ``tracing`` extra); spans go wherever the
  process's tracer provider sends them (e.g. run under ``opentelemetry-instrument``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from streamproc.errors import ConfigError

__all__ = ["TRACE_HEADERS", "BatchTracer", "open_batch_tracer", "trace_headers"]

#: The W3C Trace Context headers carried from input to output.
TRACE_HEADERS = ("traceparent", "tracestate")
_TRACE_HEADER_KEYS = frozenset([*TRACE_HEADERS, *(name.encode() for name in TRACE_HEADERS)])


def trace_headers(headers: Any) -> list[tuple[str, bytes | None]]:
    """The ``traceparent`` / ``tracestate`` headers among a record's headers (a sequence of
    ``(key, value)`` pairs or a mapping; str or bytes keys), to put on its output record."""
    if not headers:  # the common case: one truth test
        return []
    # aiokafka hands a tuple of pairs: test for it before the (slower) Mapping ABC check.
    if not isinstance(headers, tuple | list) and isinstance(headers, Mapping):
        headers = headers.items()
    found = []  # a plain loop: cheaper than a comprehension's frame for 1-3 headers
    for key, value in headers:
        if key in _TRACE_HEADER_KEYS:
            found.append((key.decode() if isinstance(key, bytes) else key, _as_bytes(value)))
    return found


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


class TracedRecord(Protocol):
    topic: str
    partition: int
    headers: Any


class BatchTracer:
    """Starts and ends one span per batch with an OpenTelemetry ``Tracer``."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def start(self, records: Sequence[TracedRecord], model_version: str) -> Any:
        """A started span for a batch of ``records``, linked to their trace contexts."""
        topics = sorted({record.topic for record in records})
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.batch.message_count": len(records),
            "streamproc.model.version": model_version,
            "streamproc.batch.partitions": sorted({record.partition for record in records}),
        }
        if len(topics) == 1:
            attributes["messaging.destination.name"] = topics[0]
        return self._tracer.start_span(
            f"process {' '.join(topics)}",
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=self._links(records),
        )

    def end(self, span: Any, *, dead_letters: int) -> None:
        span.set_attribute("streamproc.batch.dead_letters", dead_letters)
        span.end()

    def _links(self, records: Sequence[TracedRecord]) -> list[Any]:
        links = []
        for record in records:
            carrier = {
                key: (value or b"").decode("ascii", "replace")
                for key, value in trace_headers(record.headers)
            }
            if "traceparent" not in carrier:
                continue
            context = self._trace.get_current_span(
                self._propagator.extract(carrier)
            ).get_span_context()
            if context.is_valid:
                links.append(self._trace.Link(context))
        return links


def open_batch_tracer(mode: str, tracer: Any = None) -> BatchTracer | None:
    """The batch tracer ``STREAMPROC_TRACING`` asks for: None when off (nothing imported)."""
    if mode == "off":
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError(
            "STREAMPROC_TRACING=otel needs OpenTelemetry: pip install 'streamproc[tracing]'"
        ) from None
    return BatchTracer(tracer or trace.get_tracer("streamproc"))
