"""StreamMetrics: metric names and labels, and the live page's snapshot (fake clock)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamproc.stream.metrics import (
    BATCH_SIZE_BUCKETS,
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    METRIC_NAMES,
    StreamMetrics,
    build_labels,
)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(clock: FakeClock) -> StreamMetrics:
    return StreamMetrics(clock=clock, wall_clock=lambda: 1_700_000_000.0)


def samples(m: StreamMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels), parsed back from text."""
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: StreamMetrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


# --------------------------------------------------------------------------- names and labels
def test_every_family_is_exposed_with_conventional_names(metrics: StreamMetrics) -> None:
    metrics.record_consumed()
    metrics.record_dead_letter("malformed_json")
    metrics.record_batch(size=3, wait_s=0.001, inference_s=0.002, target_size=4)
    metrics.record_predictions([0.01])
    metrics.set_lag("in", 0, 5)
    metrics.set_buffered(2)
    metrics.set_model_version("v1")
    metrics.record_model_reload(ok=True)
    metrics.record_inference_error()
    metrics.record_stage("publish", 0.001)
    metrics.record_publish_retry(3)

    names = {s[0] for s in samples(metrics)}
    for name in METRIC_NAMES:
        assert name.startswith("streamproc_")
        if name.endswith("_total"):  # counters: `_total` suffix in the exposition
            assert name in names, name
        elif name in {
            "streamproc_batch_size",
            "streamproc_batch_wait_seconds",
            "streamproc_inference_seconds",
            "streamproc_event_latency_seconds",
            "streamproc_stage_seconds",
        }:  # histograms: _bucket/_sum/_count
            assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= names, name
        else:
            assert name in names, name
    # durations are in base units (seconds), never ms
    assert not any(n.startswith("streamproc_") and "_ms" in n for n in names)
    # a fresh registry also carries the process metrics (CPU for the Grafana dashboard)
    assert "process_cpu_seconds_total" in names


def test_registry_is_fresh_per_instance_and_can_be_injected() -> None:
    a, b = StreamMetrics(), StreamMetrics()  # no duplicate-metric error
    assert a.registry is not b.registry
    registry = CollectorRegistry()
    c = StreamMetrics(registry)
    assert c.registry is registry
    assert registry.get_sample_value("streamproc_events_consumed_total") == 0.0
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        StreamMetrics(registry)


def test_exposition_is_prometheus_text(metrics: StreamMetrics) -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    text = metrics.exposition().decode()
    assert "# TYPE streamproc_event_latency_seconds histogram" in text
    assert "# TYPE streamproc_consumer_lag gauge" in text


def test_counters(metrics: StreamMetrics) -> None:
    metrics.record_consumed()
    metrics.record_consumed(9)
    metrics.record_consumed(0)
    metrics.record_dead_letter("malformed_json")
    metrics.record_dead_letter("malformed_json")
    metrics.record_dead_letter("empty_text")
    metrics.record_inference_error()
    metrics.record_inference_timeout()
    assert value(metrics, "streamproc_events_consumed_total") == 10
    assert value(metrics, "streamproc_dead_letters_total", reason="malformed_json") == 2
    assert value(metrics, "streamproc_dead_letters_total", reason="empty_text") == 1
    assert value(metrics, "streamproc_inference_errors_total") == 1
    assert value(metrics, "streamproc_inference_timeouts_total") == 1
    assert metrics.snapshot()["totals"]["inference_timeouts"] == 1


def test_batch_histograms_and_target(metrics: StreamMetrics) -> None:
    assert tuple(float(2**i) for i in range(11)) == BATCH_SIZE_BUCKETS
    metrics.record_batch(size=1, wait_s=0.0, inference_s=0.004, target_size=1)
    metrics.record_batch(size=100, wait_s=0.02, inference_s=0.05, target_size=128)
    assert value(metrics, "streamproc_batch_size_count") == 2
    assert value(metrics, "streamproc_batch_size_sum") == 101
    assert value(metrics, "streamproc_batch_size_bucket", le="1.0") == 1
    assert value(metrics, "streamproc_batch_size_bucket", le="64.0") == 1
    assert value(metrics, "streamproc_batch_size_bucket", le="128.0") == 2
    assert value(metrics, "streamproc_batch_size_bucket", le="1024.0") == 2
    assert value(metrics, "streamproc_batch_wait_seconds_sum") == pytest.approx(0.02)
    # No model version set yet: labelled "unknown".
    assert value(
        metrics, "streamproc_inference_seconds_sum", model_version="unknown"
    ) == pytest.approx(0.054)
    assert value(metrics, "streamproc_batch_target_size") == 128


def test_inference_time_is_labelled_by_the_version_that_ran_the_batch(
    metrics: StreamMetrics,
) -> None:
    metrics.set_model_version("v1")
    metrics.record_batch(size=4, wait_s=0.0, inference_s=0.010, target_size=4)
    metrics.set_model_version("v2")  # a hot reload while a v1 batch was still running
    metrics.record_batch(size=4, wait_s=0.0, inference_s=0.020, target_size=4, model_version="v1")
    metrics.record_batch(size=4, wait_s=0.0, inference_s=0.003, target_size=4)
    v1 = value(metrics, "streamproc_inference_seconds_sum", model_version="v1")
    assert v1 == pytest.approx(0.030)
    assert value(metrics, "streamproc_inference_seconds_count", model_version="v1") == 2
    v2 = value(metrics, "streamproc_inference_seconds_sum", model_version="v2")
    assert v2 == pytest.approx(0.003)


def test_predictions_count_events_without_timestamp_but_do_not_observe_them(
    metrics: StreamMetrics,
) -> None:
    metrics.record_predictions([0.002, None, 0.3, None])
    metrics.record_predictions([])
    assert value(metrics, "streamproc_predictions_produced_total") == 4
    assert value(metrics, "streamproc_event_latency_seconds_count") == 2
    assert value(metrics, "streamproc_event_latency_seconds_sum") == pytest.approx(0.302)
    assert value(metrics, "streamproc_event_latency_seconds_bucket", le="0.0025") == 1
    assert metrics.snapshot()["latency_ms"]["samples"] == 2


def test_latency_buckets_span_1ms_to_10s() -> None:
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    assert 0.1 in LATENCY_BUCKETS  # the default latency target is a bucket boundary


def test_lag_per_partition_and_forget_partition(metrics: StreamMetrics) -> None:
    metrics.set_lag("in", 0, 10)
    metrics.set_lag("in", 1, 5)
    metrics.set_lag("in", 1, 7)
    metrics.set_lag("in", 2, -3)  # a transient negative reading is clamped
    assert value(metrics, "streamproc_consumer_lag", topic="in", partition="0") == 10
    assert value(metrics, "streamproc_consumer_lag", topic="in", partition="1") == 7
    assert value(metrics, "streamproc_consumer_lag", topic="in", partition="2") == 0
    assert metrics.snapshot()["lag"]["total"] == 17

    metrics.forget_partition("in", 1)
    metrics.forget_partition("in", 1)  # twice is harmless
    metrics.forget_partition("other", 9)  # never set is harmless
    assert value(metrics, "streamproc_consumer_lag", topic="in", partition="1") is None
    assert value(metrics, "streamproc_consumer_lag", topic="in", partition="0") == 10
    lag = metrics.snapshot()["lag"]
    assert lag == {
        "partitions": [
            {"topic": "in", "partition": 0, "lag": 10},
            {"topic": "in", "partition": 2, "lag": 0},
        ],
        "total": 10,
    }


def test_model_info_labels_only_the_current_version(metrics: StreamMetrics) -> None:
    assert not [k for k in samples(metrics) if k[0] == "streamproc_model_info"]
    metrics.set_model_version("v1")
    assert value(metrics, "streamproc_model_info", version="v1") == 1
    metrics.set_model_version("v2")
    info = {k: v for k, v in samples(metrics).items() if k[0] == "streamproc_model_info"}
    assert info == {("streamproc_model_info", (("version", "v2"),)): 1.0}
    assert metrics.snapshot()["model_version"] == "v2"


def test_model_reloads_by_result(metrics: StreamMetrics) -> None:
    # both series exist before any reload, so rate() in Grafana has a baseline
    assert value(metrics, "streamproc_model_reloads_total", result="ok") == 0
    assert value(metrics, "streamproc_model_reloads_total", result="refused") == 0
    metrics.record_model_reload(ok=True)
    metrics.record_model_reload(ok=False)
    metrics.record_model_reload(ok=False)
    assert value(metrics, "streamproc_model_reloads_total", result="ok") == 1
    assert value(metrics, "streamproc_model_reloads_total", result="refused") == 2
    assert metrics.snapshot()["totals"]["model_reloads"] == {"ok": 1, "refused": 2}


def test_buffered_gauge(metrics: StreamMetrics) -> None:
    metrics.set_buffered(42)
    assert value(metrics, "streamproc_buffered_events") == 42
    assert metrics.snapshot()["buffered"] == 42
    metrics.set_unsettled_bytes(3 * 1024 * 1024)
    assert value(metrics, "streamproc_unsettled_bytes") == 3 * 1024 * 1024


# --------------------------------------------------------------------------- snapshot
def test_snapshot_of_nothing_is_json_and_empty(metrics: StreamMetrics) -> None:
    snap = metrics.snapshot()
    json.dumps(snap, allow_nan=False)
    assert snap["ts"] == 1_700_000_000.0
    assert snap["model_version"] is None
    assert snap["latency_ms"]["p99"] is None
    assert snap["batch"]["last_size"] is None
    assert snap["throughput"]["in_per_s"] == 0
    assert snap["lag"] == {"partitions": [], "total": 0}


def test_snapshot_percentiles_over_the_rolling_window(clock: FakeClock) -> None:
    m = StreamMetrics(window=100, clock=clock)
    m.record_predictions([5.0] * 50)  # old and slow: pushed out of the window below
    m.record_predictions([(i + 1) / 1000 for i in range(100)])  # 1 ms … 100 ms
    lat = m.snapshot()["latency_ms"]
    assert lat["samples"] == 100
    assert lat["window"] == 100
    assert lat["p50"] == pytest.approx(50.5)
    assert lat["p95"] == pytest.approx(95.05)
    assert lat["p99"] == pytest.approx(99.01)
    assert lat["max"] == pytest.approx(100.0)
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # the histogram, unlike the window, keeps everything
    assert value(m, "streamproc_event_latency_seconds_count") == 150


def test_snapshot_throughput_over_the_last_ten_seconds(clock: FakeClock) -> None:
    m = StreamMetrics(clock=clock)
    for _ in range(20):  # 20 s of 100 events/s in, 80/s out, 1/s dead-lettered
        clock.advance(0.5)
        m.record_consumed(100)
        m.record_predictions([0.01] * 80)
        clock.advance(0.5)
        m.record_dead_letter("malformed_json")
    tp = m.snapshot()["throughput"]
    assert tp["in_per_s"] == pytest.approx(100, rel=0.12)
    assert tp["out_per_s"] == pytest.approx(80, rel=0.12)
    assert tp["dead_per_s"] == pytest.approx(1, rel=0.12)
    assert tp["window_s"] == 10

    clock.advance(5)  # idle for 5 s: about half the window is empty
    assert m.snapshot()["throughput"]["in_per_s"] == pytest.approx(50, rel=0.25)
    clock.advance(10)  # idle for the whole window
    assert m.snapshot()["throughput"] == {
        "in_per_s": 0,
        "out_per_s": 0,
        "dead_per_s": 0,
        "window_s": 10,
    }
    # the totals are not windowed
    assert m.snapshot()["totals"]["consumed"] == 2000


def test_snapshot_throughput_right_after_start_is_not_inflated(clock: FakeClock) -> None:
    m = StreamMetrics(clock=clock)
    clock.advance(0.01)
    m.record_consumed(5)
    assert m.snapshot()["throughput"]["in_per_s"] == pytest.approx(5)  # not 500/s
    clock.advance(3.99)
    m.record_consumed(15)
    assert m.snapshot()["throughput"]["in_per_s"] == pytest.approx(5)  # 20 events in 4 s


def test_snapshot_burst_after_long_idle(clock: FakeClock) -> None:
    m = StreamMetrics(clock=clock)
    m.record_consumed(1)
    clock.advance(100)
    m.record_consumed(1000)
    # the burst is averaged over the window, not over the 100 s since the last event
    assert m.snapshot()["throughput"]["in_per_s"] == pytest.approx(1000 / 9.0, rel=0.12)


def test_snapshot_batches_totals_and_uptime(clock: FakeClock) -> None:
    m = StreamMetrics(clock=clock)
    m.record_consumed(30)
    m.record_dead_letter("invalid_utf8")
    m.record_dead_letter("empty_text")
    m.record_dead_letter("empty_text")
    m.record_batch(size=8, wait_s=0.005, inference_s=0.010, target_size=16)
    m.record_batch(size=16, wait_s=0.010, inference_s=0.030, target_size=32)
    m.record_predictions([0.02] * 24)
    m.set_model_version("2026-11-01.3")
    clock.advance(12.5)
    snap = m.snapshot()
    json.dumps(snap, allow_nan=False)
    assert snap["uptime_s"] == pytest.approx(12.5)
    assert snap["totals"] == {
        "consumed": 30,
        "produced": 24,
        "dead_lettered": 3,
        "batches": 2,
        "inference_errors": 0,
        "inference_timeouts": 0,
        "model_reloads": {"ok": 0, "refused": 0},
    }
    assert snap["dead_letters"] == {"empty_text": 2, "invalid_utf8": 1}
    batch = snap["batch"]
    assert batch["last_size"] == 16
    assert batch["avg_size"] == 12
    assert batch["target_size"] == 32
    assert batch["last_wait_ms"] == pytest.approx(10)
    assert batch["last_inference_ms"] == pytest.approx(30)
    assert batch["avg_inference_ms"] == pytest.approx(20)
    assert snap["model_version"] == "2026-11-01.3"


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        StreamMetrics(window=0)


def test_build_info_and_the_last_batch_time() -> None:
    import platform

    import streamproc

    wall = [1_800_000_000.0]
    metrics = StreamMetrics(wall_clock=lambda: wall[0])
    assert value(metrics, "streamproc_last_batch_timestamp_seconds") == 0  # no batch yet
    metrics.record_batch(size=3, wait_s=0.0, inference_s=0.01, target_size=4)
    wall[0] += 42.5
    metrics.record_batch(size=1, wait_s=0.0, inference_s=0.01, target_size=4)
    assert value(metrics, "streamproc_last_batch_timestamp_seconds") == 1_800_000_042.5
    labels = build_labels()
    assert labels["version"] == streamproc.__version__
    assert labels["python"] == platform.python_version()
    assert "onnxruntime " in labels["runtime"]  # the serving runtime, with its version
    assert value(metrics, "streamproc_build_info", **labels) == 1
