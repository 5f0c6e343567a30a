"""W3C trace context propagation through the pipeline, and the optional OpenTelemetry batch span."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from streamproc.errors import ConfigError
from streamproc.testing import FakeClassifier
from streamproc.tracing import open_batch_tracer, trace_headers
from tests.fixtures.pipeline import FakePublisher, Record, event, run_pipeline

PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = b"congo=t61rcWkgMzE"


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", PARENT), ("tracestate", STATE), ("other", b"x")],
        ((b"other", b"x"), (b"traceparent", PARENT), (b"tracestate", STATE)),
        {"traceparent": PARENT.decode(), "other": "x", "tracestate": STATE},
    ],
)
def test_trace_headers_are_picked_from_any_header_shape(headers: object) -> None:
    assert sorted(trace_headers(headers)) == [("traceparent", PARENT), ("tracestate", STATE)]


@pytest.mark.parametrize("headers", [None, [], (), {}, [("Traceparent", PARENT), ("x", b"")]])
def test_records_without_trace_context_get_no_headers(headers: object) -> None:
    assert trace_headers(headers) == []


def test_predictions_and_dead_letters_carry_their_inputs_trace_context() -> None:
    def parent(i: int) -> bytes:
        return b"00-%032x-%016x-01" % (i + 1, i + 1)

    records = [
        Record(
            i,
            b"not json" if i == 5 else event(i),
            headers=[("traceparent", parent(i)), ("tracestate", STATE)] if i % 2 else None,
        )
        for i in range(20)
    ]
    publisher = FakePublisher()
    asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    by_id = {  # the trace headers of each prediction (beside its streamproc-source-* ones)
        prediction["id"]: {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
        for prediction, headers in zip(
            publisher.predictions, publisher.prediction_headers, strict=True
        )
    }
    assert len(by_id) == 19
    for record in records:
        if record.offset == 5:
            continue
        expected = {"traceparent": parent(record.offset), "tracestate": STATE}
        assert by_id[f"id-{record.offset}"] == (expected if record.offset % 2 else {})
    [(_, dead_headers)] = publisher.dead_letters
    assert dead_headers["traceparent"] == parent(5) and dead_headers["tracestate"] == STATE


def test_tracing_off_imports_no_opentelemetry() -> None:
    code = (
        "import sys\n"
        "from streamproc.settings import load_settings\n"
        "from streamproc.stream.app import create_worker\n"
        "from streamproc.testing import FakeClassifier\n"
        "w = create_worker(load_settings(), model=FakeClassifier(), web_enabled=False)\n"
        "assert w.pipeline._batch_tracer is None\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_otel_without_the_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"STREAMPROC_TRACING=otel.*streamproc\[tracing\]"):
        open_batch_tracer("otel")


def test_one_span_per_batch_linked_to_the_inputs_trace_contexts() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from streamproc.stream.batching import FixedBatchPolicy

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = open_batch_tracer("otel", provider.get_tracer("test"))
    trace_ids = {i: 0xABC000 + i for i in range(12)}
    records = [
        Record(
            i,
            b"{}" if i == 3 else event(i),
            partition=i % 3,
            headers=[("traceparent", b"00-%032x-%016x-01" % (trace_ids[i], i + 1))]
            if i != 7
            else None,  # no trace context: no link
        )
        for i in range(12)
    ]
    publisher = FakePublisher()
    asyncio.run(
        run_pipeline(
            records,
            model=FakeClassifier(version="v-test"),
            publisher=publisher,
            policy=FixedBatchPolicy(size=6, window_s=5.0),
            batch_tracer=tracer,
        )
    )
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert len(spans) == 2
    assert [s.attributes["messaging.batch.message_count"] for s in spans] == [6, 6]
    first, second = spans
    assert first.kind is SpanKind.CONSUMER and first.name == "process in"
    assert first.attributes["streamproc.model.version"] == "v-test"
    assert tuple(first.attributes["streamproc.batch.partitions"]) == (0, 1, 2)
    assert first.attributes["streamproc.batch.dead_letters"] == 1  # record 3: missing id
    assert second.attributes["streamproc.batch.dead_letters"] == 0
    assert [link.context.trace_id for link in first.links] == [trace_ids[i] for i in range(6)]
    assert [link.context.trace_id for link in second.links] == [
        trace_ids[i] for i in range(6, 12) if i != 7
    ]
    assert all(link.context.is_remote for link in first.links)


def test_the_worker_traces_batches_when_asked() -> None:
    pytest.importorskip("opentelemetry")
    from streamproc.settings import load_settings
    from streamproc.stream.app import create_worker
    from streamproc.tracing import BatchTracer

    worker = create_worker(load_settings(tracing="otel"), model=FakeClassifier(), web_enabled=False)
    assert isinstance(worker.pipeline._batch_tracer, BatchTracer)
