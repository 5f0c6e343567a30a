"""Prometheus metrics of the worker, and the data behind its live page.

One :class:`StreamMetrics` per worker owns a :class:`~prometheus_client.CollectorRegistry` (a fresh
one unless given, so tests can build many workers in one process) and every metric in it:

============================================  =========  ========================================
name                                          type       what
============================================  =========  ========================================
``streamproc_events_consumed_total``          counter    events taken off Kafka (good or bad)
``streamproc_dead_letters_total{reason}``     counter    events sent to the dead-letter topic
``streamproc_predictions_produced_total``     counter    predictions published
``streamproc_batch_size``                     histogram  events per batch (buckets 1, 2, 4 … 1024)
``streamproc_batch_wait_seconds``             histogram  oldest event's wait in the buffer
``streamproc_inference_seconds``              histogram  model time per batch, by
  ``{model_version}``                                      ``model_version`` (a hot reload's
                                                         before/after side by side)
``streamproc_batch_target_size``              gauge      the adaptive controller's target size
``streamproc_last_batch_timestamp_seconds``   gauge      epoch time the last batch ran (alert on
                                                         ``time() - …`` while lag grows)
``streamproc_event_latency_seconds``          histogram  producer timestamp → prediction (1 ms–10 s)
``streamproc_consumer_lag{topic,partition}``  gauge      highwater − position, assigned partitions
``streamproc_buffered_events``                gauge      events decoded and waiting for a batch
``streamproc_unsettled_bytes``                gauge      raw payload bytes of events taken off
                                                         Kafka and not settled yet (what
                                                         ``STREAMPROC_MAX_BUFFERED_BYTES`` bounds)
``streamproc_model_info{version}``            gauge      1 for the model version now serving
``streamproc_build_info``                     gauge      1; labels ``version`` (streamproc),
                                                         ``python``, ``runtime`` (installed ones)
``streamproc_model_reloads_total{result}``    counter    hot reloads: ``ok`` | ``refused``
``streamproc_inference_errors_total``         counter    batches whose inference raised
``streamproc_inference_timeouts_total``       counter    model calls that did not return within
                                                         ``STREAMPROC_INFERENCE_TIMEOUT_S`` (the
                                                         worker then stops)
``streamproc_stage_seconds{stage}``           histogram  per call: ``ingress`` (a fetched batch
                                                         decoded, buffered), ``model_call`` (the
                                                         model call as the pipeline awaits it:
                                                         hand-off, model, way back), ``publish``
                                                         (a batch handed to the producer),
                                                         ``ack`` (broker acknowledgement after
                                                         hand-over)
``streamproc_publish_retries_total``          counter    records sent again after a failed send
``streamproc_publish_failures_total``         counter    outputs never sendable as they were, by
                                                         ``outcome``: ``dead_lettered`` (a
                                                         prediction; its input dead-lettered),
                                                         ``truncated`` (a dead letter, sent cut),
                                                         ``stopped`` (the worker stopped)
``streamproc_outbox_records``                 gauge      outputs handed to the producer, not yet
                                                         acknowledged by the broker
``process_*``, ``python_info``                (various)  CPU, memory, fds (in a registry we own)
============================================  =========  ========================================

Besides the Prometheus series it keeps what the live page needs and Prometheus cannot give it
without a server: throughput over the last ~10 s (per-second buckets, stamped by an injectable
``clock``), latency percentiles over a rolling window of the last ``window`` predictions, and the
last batches. :meth:`StreamMetrics.snapshot` returns all of it as a JSON-able dict.

Everything here is pure bookkeeping: no Kafka, no asyncio. The methods are thread-safe, so the
inference thread and the event loop may both record.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "BATCH_WAIT_BUCKETS",
    "CONTENT_TYPE",
    "INFERENCE_BUCKETS",
    "LATENCY_BUCKETS",
    "METRIC_NAMES",
    "PUBLISH_FAILURE_OUTCOMES",
    "STAGE_BUCKETS",
    "StreamMetrics",
    "build_labels",
]

#: Content type of :meth:`StreamMetrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Events per batch: powers of two, 1 … 1024.
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(11))
#: Event-to-prediction latency, 1 ms … 10 s, dense around the 100 ms default target.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Time the oldest event of a batch waited for it, 0.1 ms … 2.5 s.
BATCH_WAIT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: Model time per batch, 0.5 ms … 10 s.
# Hot-path stages: 20 µs (decoding a few records) to 2.5 s (a broker away).
STAGE_BUCKETS: tuple[float, ...] = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip
INFERENCE_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: ``outcome`` label values of ``streamproc_publish_failures_total``.
PUBLISH_FAILURE_OUTCOMES: tuple[str, ...] = ("dead_lettered", "truncated", "stopped")

#: Every metric family StreamMetrics itself defines (exposition names of counters end in _total).
METRIC_NAMES: tuple[str, ...] = (
    "streamproc_events_consumed_total",
    "streamproc_dead_letters_total",
    "streamproc_predictions_produced_total",
    "streamproc_batch_size",
    "streamproc_batch_wait_seconds",
    "streamproc_inference_seconds",
    "streamproc_batch_target_size",
    "streamproc_last_batch_timestamp_seconds",
    "streamproc_event_latency_seconds",
    "streamproc_consumer_lag",
    "streamproc_buffered_events",
    "streamproc_unsettled_bytes",
    "streamproc_model_info",
    "streamproc_build_info",
    "streamproc_model_reloads_total",
    "streamproc_inference_errors_total",
    "streamproc_inference_timeouts_total",
    "streamproc_stage_seconds",
    "streamproc_publish_retries_total",
    "streamproc_publish_failures_total",
    "streamproc_outbox_records",
)

_RATE_WINDOW_S = 10  # throughput is averaged over this many seconds …
_RATE_BUCKET_S = 1.0  # … kept as per-second counts
_RECENT_BATCHES = 100  # "avg batch size" on the live page is over this many batches


class StreamMetrics:
    """The worker's Prometheus metrics and live-page data. See the module docstring for names.

    Args:
        registry: where the metrics live; ``None`` creates a fresh registry (with the process
            and platform collectors) instead of the global default one.
        window: how many recent event latencies the live percentiles are computed over.
        clock: monotonic seconds, for throughput windows and uptime (inject a fake in tests).
        wall_clock: epoch seconds, for the snapshot's ``ts``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        window: int = 2048,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            # Fresh registries lack the process metrics the default one has: add them.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.registry = registry
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        r = registry

        self.events_consumed = Counter(
            "streamproc_events_consumed", "Input events consumed from Kafka.", registry=r
        )
        self.dead_letters = Counter(
            "streamproc_dead_letters",
            "Input events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.predictions_produced = Counter(
            "streamproc_predictions_produced", "Predictions published.", registry=r
        )
        self.batch_size = Histogram(
            "streamproc_batch_size", "Events per model batch.", buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.batch_wait = Histogram(
            "streamproc_batch_wait_seconds",
            "Time the oldest event of a batch waited in the buffer before the batch ran.",
            buckets=BATCH_WAIT_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "streamproc_inference_seconds",
            "Model inference time per batch, by the model version that ran it.",
            ["model_version"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_target = Gauge(
            "streamproc_batch_target_size",
            "Batch size the adaptive controller currently aims at.",
            registry=r,
        )
        self.last_batch_timestamp = Gauge(
            "streamproc_last_batch_timestamp_seconds",
            "When the last model batch ran (Unix time): stale while events wait = stuck worker.",
            registry=r,
        )
        self.event_latency = Histogram(
            "streamproc_event_latency_seconds",
            "Event-to-prediction latency: producer timestamp to prediction published.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamproc_consumer_lag",
            "Consumer lag (highwater minus position) of each assigned partition, in events.",
            ["topic", "partition"],
            registry=r,
        )
        self.buffered = Gauge(
            "streamproc_buffered_events", "Decoded events waiting for a batch.", registry=r
        )
        self.unsettled_bytes = Gauge(
            "streamproc_unsettled_bytes",
            "Raw payload bytes of events taken off Kafka and not settled yet (buffered, in "
            "inference or awaiting the broker's acknowledgement).",
            registry=r,
        )
        self.model_info = Gauge(
            "streamproc_model_info",
            "Model version now serving (value 1; the version is a label).",
            ["version"],
            registry=r,
        )
        self.build_info = Gauge(
            "streamproc_build_info",
            "Versions of this process (value 1): streamproc, Python, inference runtimes installed.",
            ["version", "python", "runtime"],
            registry=r,
        )
        self.build_info.labels(**build_labels()).set(1)
        self.model_reloads = Counter(
            "streamproc_model_reloads",
            "Model hot reloads, by result (ok or refused).",
            ["result"],
            registry=r,
        )
        self.inference_errors = Counter(
            "streamproc_inference_errors", "Batches whose inference raised.", registry=r
        )
        self.inference_timeouts = Counter(
            "streamproc_inference_timeouts",
            "Model calls that did not return within the inference timeout (the worker stops).",
            registry=r,
        )
        self.stage_seconds = Histogram(
            "streamproc_stage_seconds",
            "Time per call of each hot-path stage: ingress (a fetched batch decoded and "
            "buffered), model_call (a model call as the pipeline awaits it: hand-off to the "
            "model's thread or process, the model, the way back), publish (a batch handed to "
            "the producer), ack (the broker's acknowledgement of a batch, after it was handed "
            "over).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.publish_retries = Counter(
            "streamproc_publish_retries",
            "Records sent again after a send the broker did not acknowledge.",
            registry=r,
        )
        self.publish_failures = Counter(
            "streamproc_publish_failures",
            "Outputs that could never be sent as they were, by outcome: dead_lettered (a "
            "prediction; its input was dead-lettered instead), truncated (a dead letter, sent "
            "cut), stopped (no retry could help: the worker stopped).",
            ["outcome"],
            registry=r,
        )
        self.outbox = Gauge(
            "streamproc_outbox_records",
            "Outputs handed to the producer that the broker has not acknowledged yet.",
            registry=r,
        )
        for stage in ("ingress", "model_call", "publish", "ack"):
            self.stage_seconds.labels(stage=stage)
        for result in ("ok", "refused"):  # both series exist from the start, so rate() works
            self.model_reloads.labels(result=result)
        for outcome in PUBLISH_FAILURE_OUTCOMES:
            self.publish_failures.labels(outcome=outcome)

        # --- live-page state (guarded by _lock) ---
        self._started = clock()
        self._window = window
        self._latencies: deque[float] = deque(maxlen=window)  # seconds
        self._rate_buckets: deque[list[float]] = deque()  # [bucket index, in, out, dead]
        self._consumed = 0
        self._produced = 0
        self._dead_by_reason: dict[str, int] = {}
        self._batches = 0
        self._recent_batches: deque[tuple[int, float, float]] = deque(maxlen=_RECENT_BATCHES)
        self._target_size: int | None = None
        self._lag: dict[tuple[str, int], int] = {}
        self._buffered = 0
        self._model_version: str | None = None
        self._reloads = {"ok": 0, "refused": 0}
        self._inference_errors = 0
        self._inference_timeouts = 0

    # ------------------------------------------------------------------ recording
    def record_consumed(self, count: int = 1) -> None:
        """``count`` input events were taken off Kafka (before decoding: good and bad alike)."""
        if count <= 0:
            return
        self.events_consumed.inc(count)
        with self._lock:
            self._consumed += count
            self._bucket()[1] += count

    def record_dead_letter(self, reason: str) -> None:
        """One event went to the dead-letter topic because of ``reason``."""
        self.dead_letters.labels(reason=reason).inc()
        with self._lock:
            self._dead_by_reason[reason] = self._dead_by_reason.get(reason, 0) + 1
            self._bucket()[3] += 1

    def record_stage(self, stage: str, seconds: float) -> None:
        """One call of a hot-path stage took ``seconds`` (see ``streamproc_stage_seconds``)."""
        self.stage_seconds.labels(stage=stage).observe(max(0.0, seconds))

    def record_publish_retry(self, records: int) -> None:
        self.publish_retries.inc(records)

    def record_publish_failure(self, outcome: str) -> None:
        """An output could never be sent as it was; ``outcome`` is one of
        :data:`PUBLISH_FAILURE_OUTCOMES`."""
        self.publish_failures.labels(outcome=outcome).inc()

    def record_batch(
        self,
        *,
        size: int,
        wait_s: float,
        inference_s: float,
        target_size: int,
        model_version: str | None = None,
    ) -> None:
        """A batch of ``size`` events ran: its oldest event waited ``wait_s``, the model
        (``model_version``; default: the one serving now) took ``inference_s``; the controller's
        target was ``target_size``."""
        self.batch_size.observe(size)
        self.batch_wait.observe(max(0.0, wait_s))
        version = model_version or self._model_version or "unknown"
        self.inference.labels(model_version=version).observe(max(0.0, inference_s))
        self.batch_target.set(target_size)
        self.last_batch_timestamp.set(self._wall_clock())
        with self._lock:
            self._batches += 1
            self._recent_batches.append((size, wait_s, inference_s))
            self._target_size = target_size

    def record_predictions(self, latencies_s: Sequence[float | None]) -> None:
        """Predictions were published, one latency per event (``None``: no producer timestamp,
        counted but not observed)."""
        n = len(latencies_s)
        if n == 0:
            return
        self.predictions_produced.inc(n)
        observed = [max(0.0, x) for x in latencies_s if x is not None and math.isfinite(x)]
        for latency in observed:
            self.event_latency.observe(latency)
        with self._lock:
            self._produced += n
            self._bucket()[2] += n
            self._latencies.extend(observed)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Current lag of one assigned partition."""
        lag = max(0, int(lag))
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
        with self._lock:
            self._lag[(topic, partition)] = lag

    def forget_partition(self, topic: str, partition: int) -> None:
        """The partition was revoked: drop its lag series (no stale gauges after a rebalance)."""
        with contextlib.suppress(KeyError):  # never set, or already forgotten
            self.consumer_lag.remove(topic, str(partition))
        with self._lock:
            self._lag.pop((topic, partition), None)

    def set_outbox(self, count: int) -> None:
        """Outputs handed to the producer and not acknowledged yet."""
        self.outbox.set(count)

    def set_buffered(self, count: int) -> None:
        """Events decoded and waiting for a batch."""
        self.buffered.set(count)
        with self._lock:
            self._buffered = count

    def set_unsettled_bytes(self, size: int) -> None:
        """Raw payload bytes of the events taken off Kafka and not settled yet."""
        self.unsettled_bytes.set(size)

    def set_model_version(self, version: str) -> None:
        """The model now serving; the previous version's series is removed."""
        with self._lock:
            self.model_info.clear()
            self.model_info.labels(version=version).set(1)
            self._model_version = version

    def record_model_reload(self, *, ok: bool) -> None:
        """A hot reload was attempted: applied (``ok``) or refused (old model kept serving)."""
        result = "ok" if ok else "refused"
        self.model_reloads.labels(result=result).inc()
        with self._lock:
            self._reloads[result] += 1

    def record_inference_error(self) -> None:
        """A batch's inference raised."""
        self.inference_errors.inc()
        with self._lock:
            self._inference_errors += 1

    def record_inference_timeout(self) -> None:
        """A model call did not return within the inference timeout."""
        self.inference_timeouts.inc()
        with self._lock:
            self._inference_timeouts += 1

    # ------------------------------------------------------------------ reading
    def exposition(self) -> bytes:
        """The registry in Prometheus text format (content type :data:`CONTENT_TYPE`)."""
        return prometheus_client.generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """What the live page shows, JSON-able. Latencies in milliseconds, rates per second."""
        with self._lock:
            now = self._clock()
            rate_in, rate_out, rate_dead = self._rates(now)
            latencies = sorted(self._latencies)
            recent = list(self._recent_batches)
            lag = [
                {"topic": topic, "partition": partition, "lag": value}
                for (topic, partition), value in sorted(self._lag.items())
            ]
            dead = dict(sorted(self._dead_by_reason.items()))
            snap: dict[str, Any] = {
                "ts": self._wall_clock(),
                "uptime_s": round(now - self._started, 3),
                "model_version": self._model_version,
                "totals": {
                    "consumed": self._consumed,
                    "produced": self._produced,
                    "dead_lettered": sum(dead.values()),
                    "batches": self._batches,
                    "inference_errors": self._inference_errors,
                    "inference_timeouts": self._inference_timeouts,
                    "model_reloads": dict(self._reloads),
                },
                "dead_letters": dead,
                "throughput": {
                    "in_per_s": round(rate_in, 3),
                    "out_per_s": round(rate_out, 3),
                    "dead_per_s": round(rate_dead, 3),
                    "window_s": _RATE_WINDOW_S,
                },
                "lag": {"partitions": lag, "total": sum(p["lag"] for p in lag)},
                "buffered": self._buffered,
                "batch": {
                    "last_size": recent[-1][0] if recent else None,
                    "avg_size": _round(_mean([b[0] for b in recent]), 2),
                    "target_size": self._target_size,
                    "last_wait_ms": _round(recent[-1][1] * 1e3 if recent else None, 3),
                    "last_inference_ms": _round(recent[-1][2] * 1e3 if recent else None, 3),
                    "avg_inference_ms": _round(_ms(_mean([b[2] for b in recent])), 3),
                    "recent": len(recent),
                },
                "latency_ms": {
                    "p50": _round(_ms(_percentile(latencies, 50)), 3),
                    "p95": _round(_ms(_percentile(latencies, 95)), 3),
                    "p99": _round(_ms(_percentile(latencies, 99)), 3),
                    "max": _round(_ms(latencies[-1] if latencies else None), 3),
                    "samples": len(latencies),
                    "window": self._window,
                },
            }
        return snap

    # ------------------------------------------------------------------ internals
    def _bucket(self) -> list[float]:
        """The current second's [index, in, out, dead] counts (call with the lock held)."""
        index = math.floor(self._clock() / _RATE_BUCKET_S)
        buckets = self._rate_buckets
        if not buckets or buckets[-1][0] != index:
            buckets.append([index, 0, 0, 0])
            while buckets and buckets[0][0] <= index - _RATE_WINDOW_S:
                buckets.popleft()
        return buckets[-1]

    def _rates(self, now: float) -> tuple[float, float, float]:
        """Events/s in, out and dead-lettered over the last ``_RATE_WINDOW_S`` (lock held).

        The window is the current, partial second plus the ``_RATE_WINDOW_S - 1`` whole seconds
        before it, but never reaches back before the metrics were created.
        """
        index = math.floor(now / _RATE_BUCKET_S)
        first = index - _RATE_WINDOW_S + 1
        start = max(first * _RATE_BUCKET_S, self._started)
        # at least one bucket long: a few events in the first split second are not 1000s/s
        span = max(now - start, _RATE_BUCKET_S)
        total_in = total_out = total_dead = 0.0
        for bucket_index, n_in, n_out, n_dead in self._rate_buckets:
            if first <= bucket_index <= index:
                total_in += n_in
                total_out += n_out
                total_dead += n_dead
        return total_in / span, total_out / span, total_dead / span


def build_labels() -> dict[str, str]:
    """``streamproc_build_info``'s labels: package versions from their metadata (nothing is
    imported: a worker serving ONNX must not pay for importing torch)."""
    import importlib.metadata
    import platform

    from streamproc import __version__

    runtimes = []
    for package in ("onnxruntime", "onnxruntime-gpu", "torch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            runtimes.append(f"{package} {importlib.metadata.version(package)}")
    return {
        "version": __version__,
        "python": platform.python_version(),
        "runtime": ", ".join(runtimes) or "none",
    }


def _percentile(values: Sequence[float], q: float) -> float | None:
    """numpy's linear-interpolated percentile; None for no values."""
    return float(np.percentile(values, q)) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
