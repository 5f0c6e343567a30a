"""One contender at one load point: a worker child process serving it, fresh topics, a load
profile, the predictions collected and summarised; and the model-alone floors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from streamproc.errors import StreamprocError
from streamproc.kafka import ensure_topics
from streamproc.tools.bench.contenders import EXPLODED_P99_MS, Contender
from streamproc.tools.bench.load import (
    LoadGenerator,
    Outcome,
    ResultCollector,
    cpu_sample,
    cpu_usage,
)
from streamproc.tools.bench.results import (
    BatchSummary,
    BurstOutcome,
    FloorRow,
    LatencySummary,
    ModelUse,
    Point,
    Ramp,
)
from streamproc.tools.bench.worker import BenchWorker
from streamproc.tools.simulation import percentile

__all__ = ["IDLE_GAP_S", "WARMUP_EVENTS", "BenchConfig", "model_floor", "run_point"]

WARMUP_EVENTS = 32  # sent and awaited before a point's measurement starts


@dataclass(frozen=True)
class BenchConfig:
    rates: tuple[float, ...]
    contenders: tuple[str, ...]
    duration_s: float
    burst: int
    burst_rate: float
    burst_duration_s: float
    burst_at_s: float
    burst_max_drain_s: float
    drain_s: float
    partitions: int
    model_threads: int
    latency_target_ms: float
    quick: bool
    min_events: int = 0  # low rates run longer, so a p99 rests on at least this many events
    ramp_s: float = 1.0  # a rate point's load before its measurement starts (see run_point)
    switch_interval_s: float | None = None


# --- one load point ------------------------------------------------------------------------------
def _lat_summary(values: list[float]) -> LatencySummary:
    if not values:
        return LatencySummary()
    ordered = sorted(values)
    return LatencySummary(
        p50=round(percentile(ordered, 50, presorted=True), 2),
        p95=round(percentile(ordered, 95, presorted=True), 2),
        p99=round(percentile(ordered, 99, presorted=True), 2),
        max=round(ordered[-1], 2),
        mean=round(sum(ordered) / len(ordered), 2),
    )


def _p99_by_second(outcomes: Sequence[Outcome]) -> list[float]:
    """p99 latency of the events sent in each second of the point, in order."""
    if not outcomes:
        return []
    first = min(o.ts_ms for o in outcomes)
    seconds: dict[int, list[float]] = {}
    for o in outcomes:
        seconds.setdefault(int((o.ts_ms - first) // 1000), []).append(o.received_ms - o.ts_ms)
    return [
        round(percentile(sorted(seconds[s]), 99, presorted=True), 1) if s in seconds else 0.0
        for s in range(max(seconds) + 1)
    ]


def _batch_summary(sizes: list[int]) -> BatchSummary:
    """Batch sizes as events saw them (event-weighted: the batch a typical event ran in)."""
    if not sizes:
        return BatchSummary()
    ordered = sorted(sizes)
    return BatchSummary(
        event_p50=ordered[len(ordered) // 2],
        event_mean=round(sum(ordered) / len(ordered), 1),
        max=ordered[-1],
        batches_est=round(sum(1.0 / s for s in ordered if s > 0)),
    )


def _wait(condition: Any, timeout_s: float, what: str, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise StreamprocError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(step_s)


def run_point(
    conf: dict[str, Any],
    bootstrap: str,
    worker: BenchWorker | None,
    contender: Contender | None,
    texts: Sequence[str],
    cfg: BenchConfig,
    *,
    rate: float,
    duration_s: float,
    burst: int = 0,
    broker_pid: int | None = None,
) -> Point:
    """Measure one contender at one load profile (``worker=None``: the broker alone, one hop)."""
    uid = uuid.uuid4().hex[:10]
    names = {
        "app_id": f"bench-{uid}",
        "input_topic": f"bench-in-{uid}",
        "output_topic": f"bench-out-{uid}",
        "dead_letter_topic": f"bench-dlq-{uid}",
    }
    ensure_topics(
        conf,
        {
            names["input_topic"]: cfg.partitions,
            names["output_topic"]: cfg.partitions,
            names["dead_letter_topic"]: 1,
        },
    )
    # Broker alone: read the input topic itself. Otherwise read the worker's predictions.
    read_topic = names["input_topic"] if worker is None else names["output_topic"]
    collector = ResultCollector(conf, read_topic, f"bench-collect-{uid}")
    collector.start()
    counters0: dict[str, float] = {}
    counters1: dict[str, float] = {}
    stopped_cleanly = True
    try:
        _wait(collector.assigned.is_set, 60, "the collector's partition assignment")
        if worker is not None and contender is not None:
            worker.request(
                "start",
                policy=contender.policy,
                ingress=contender.ingress,
                settings={
                    **names,
                    "bootstrap_servers": bootstrap,
                    "input_partitions": cfg.partitions,
                    "latency_target_ms": cfg.latency_target_ms,
                    "egress": contender.egress,
                },
            )
        load = LoadGenerator(
            conf,
            names["input_topic"],
            texts,
            rate=rate,
            max_duration_s=(
                (cfg.burst_at_s + cfg.burst_max_drain_s) if burst else cfg.ramp_s + duration_s
            ),
            burst=burst,
            burst_at_s=cfg.burst_at_s,
        )
        # Warm-up through the load generator's own producer (its first sends are slow) and the
        # worker (group join, first batches); measured events start once all have come back.
        load.warm_up(WARMUP_EVENTS)
        _wait(lambda: collector.count("w-") >= WARMUP_EVENTS, 120, "warm-up events")
        # A rate point ramps for cfg.ramp_s at the offered rate before it measures: on a shared
        # 2-core machine the step from idle to full rate first costs a burst of broker CPU (its
        # request paths warming up, measured at twice its steady use for ~300 ms) that every
        # contender, the same in each, pays once. The ramp's events must still be delivered and
        # their p99 is reported; the burst profile is the one that measures such steps.
        ramp_s = 0.0 if burst else cfg.ramp_s
        t0 = time.monotonic()
        load.start()
        if ramp_s:
            time.sleep(ramp_s)
        measure_from_ms = time.time() * 1000.0
        if worker is not None:
            counters0 = worker.request("mark")["counters"]
        cpu0 = cpu_sample(worker.pid if worker else None, broker_pid)
        t_measure = time.monotonic()
        lag_series: list[tuple[float, int]] = []

        def delivered() -> int:
            return len(collector.outcomes) - WARMUP_EVENTS

        load_stop_at: float | None = None
        drain_deadline: float | None = None
        while True:
            time.sleep(0.1)
            now = time.monotonic() - t0
            lag_series.append((round(now, 2), max(0, load.sent - delivered())))
            if load.error is not None:
                raise StreamprocError(f"load generator failed: {load.error!r}")
            if load_stop_at is None:
                burst_done = not burst or collector.count("b-") >= burst
                if (now >= ramp_s + duration_s and burst_done) or not load.is_alive():
                    load.stop()
                    load.join(90)
                    load_stop_at = now
                    drain_deadline = now + cfg.drain_s
                continue
            assert drain_deadline is not None
            if delivered() >= load.sent or now >= drain_deadline:
                break
        end_wall = time.monotonic()
        cpu1 = cpu_sample(worker.pid if worker else None, broker_pid)
        all_delivered = delivered() >= load.sent
        if worker is not None:
            counters1 = worker.request("mark")["counters"]
            if all_delivered:
                worker.request("stop", timeout_s=90.0)
            else:
                stopped_cleanly = False  # a backlog to drain: the caller kills the process
    finally:
        collector.stop()

    delivered_all = sum(1 for key in collector.outcomes if not key.startswith("w-"))
    loaded = [o for key, o in collector.outcomes.items() if not key.startswith("w-")]
    ramp = [o.received_ms - o.ts_ms for o in loaded if o.ts_ms < measure_from_ms]
    outcomes = [o for o in loaded if o.ts_ms >= measure_from_ms]
    latencies = [o.received_ms - o.ts_ms for o in outcomes]
    worker_lat = [o.worker_latency_ms for o in outcomes if o.worker_latency_ms is not None]
    received = sorted(o.received_ms for o in outcomes)
    span_s = (received[-1] - received[0]) / 1000.0 if len(received) > 1 else 0.0
    throughput = (len(received) - 1) / span_s if span_s > 0 else 0.0
    send_span_s = (
        ((load.last_send_ms or 0) - (load.first_send_ms or 0)) / 1000.0 if load.sent > 1 else 0.0
    )
    offered_achieved = (load.sent - burst - 1) / send_span_s if send_span_s > 0 else 0.0
    cpu = cpu_usage(cpu0, cpu1)
    work = {k: counters1.get(k, 0.0) - counters0.get(k, 0.0) for k in counters1}
    model: ModelUse | None = None
    if work:
        wall = max(1e-9, end_wall - t_measure)
        events = max(1.0, work["events"])
        model_cpu = cpu.model_process_cpu_s  # a model process: its CPU time (loop included)
        model = ModelUse(
            batches=int(work["batches"]),
            busy_fraction=round(work["inference_s"] / wall, 3),
            ms_per_event=round(1000 * work["inference_s"] / events, 3),
            # The call as the pipeline waits for it: hand-off to the model's thread or process,
            # the model, and the answer's way back.
            call_ms_per_event=round(1000 * work["call_s"] / events, 3),
            cpu_ms_per_event=None if model_cpu is None else round(1000 * model_cpu / events, 3),
        )
    if cpu.worker_cores is not None and outcomes:
        per_event = 1000 * cpu.worker_cores * (end_wall - t_measure) / len(outcomes)
        cpu = replace(cpu, worker_ms_per_event=round(per_event, 3))
    burst_outcome: BurstOutcome | None = None
    lag_kept: tuple[tuple[float, int], ...] | None = None
    if burst:
        burst_outcomes = [o for k, o in collector.outcomes.items() if k.startswith("b-")]
        first_burst = load.burst_sent_ms[0] if load.burst_sent_ms else None
        burst_outcome = BurstOutcome(
            events=burst,
            at_s=cfg.burst_at_s,
            steady_eps=rate,
            peak_lag=max((lag for _, lag in lag_series), default=0),
            drained=len(burst_outcomes) >= burst,
            drain_s=(
                round((max(o.received_ms for o in burst_outcomes) - first_burst) / 1000.0, 2)
                if first_burst is not None and len(burst_outcomes) >= burst
                else None
            ),
            burst_delivered=len(burst_outcomes),
        )
        step = max(1, len(lag_series) // 600)
        lag_kept = tuple(lag_series[::step])
    point = Point(
        contender=contender.name if contender else "broker",
        profile="burst" if burst else "rate",
        offered_eps=rate,
        offered_achieved_eps=round(offered_achieved, 1),
        measured_s=round(end_wall - t_measure, 2),
        sent=load.sent,
        delivered=delivered_all,
        undelivered=load.sent - delivered_all,
        ramp=Ramp(seconds=ramp_s, events=len(ramp), latency_ms=_lat_summary(ramp)),
        duplicates=collector.duplicates,
        throughput_eps=round(throughput, 1),
        latency_ms=_lat_summary(latencies),
        worker_latency_ms=_lat_summary(worker_lat),
        # Where in the point the tail lives: a slow start or a pause shows as one bad second.
        p99_by_second_ms=tuple(_p99_by_second(outcomes)),
        batch=_batch_summary([o.batch_size for o in outcomes if o.batch_size]),
        cpu=cpu,
        errors=tuple(collector.errors[:5]),
        stopped_cleanly=stopped_cleanly,
        model=model,
        burst=burst_outcome,
        lag_series=lag_kept,
    )
    saturated, reason = _saturation(point)
    return replace(point, saturated=saturated, saturation_reason=reason)


def _saturation(point: Point) -> tuple[bool, str]:
    if point.profile != "rate":
        return False, ""
    offered = point.offered_achieved_eps or point.offered_eps
    if point.undelivered > 0:
        return True, f"{point.undelivered} events undelivered at the cut-off"
    if point.throughput_eps < 0.9 * offered:
        return True, f"delivered {point.throughput_eps:.0f}/s < 0.9 × offered {offered:.0f}/s"
    p99 = point.latency_ms.p99 or 0.0
    if p99 > EXPLODED_P99_MS:
        return True, f"p99 {p99:.0f} ms > {EXPLODED_P99_MS:.0f} ms"
    return False, ""


#: The model-alone floor with this idle time before each call (a worker at low rates).
IDLE_GAP_S = 0.002


# --- floors: model time alone --------------------------------------------------------------------
def model_floor(
    model: Any, texts: Sequence[str], sizes: Sequence[int], *, idle_gap_s: float = 0.0
) -> dict[int, FloorRow]:
    """Median ``predict_batch`` seconds per batch size (real texts, warmed, ≥ 5 repetitions).

    ``idle_gap_s``: sleep that long before each call, as a worker at low rates idles between
    batches (its caches go cold: a different floor from back-to-back calls)."""
    out: dict[int, FloorRow] = {}
    for size in sorted(set(sizes)):
        batches = [[texts[(k * size + i) % len(texts)] for i in range(size)] for k in range(8)]
        model.predict_batch(batches[0])
        timings = []
        started = time.perf_counter()
        k = 0
        while k < 5 or (time.perf_counter() - started < 1.0 and k < 200):
            if idle_gap_s:
                time.sleep(idle_gap_s)
            t = time.perf_counter()
            model.predict_batch(batches[k % len(batches)])
            timings.append(time.perf_counter() - t)
            k += 1
        median_s = sorted(timings)[len(timings) // 2]
        out[size] = FloorRow(
            batch_ms=round(median_s * 1000, 3),
            per_event_ms=round(median_s * 1000 / size, 4),
            ceiling_eps=round(size / median_s, 1),
            reps=k,
        )
    return out
