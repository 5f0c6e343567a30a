"""The benchmark report's verdicts on the hot-path targets, from hand-built typed results."""

from __future__ import annotations

import dataclasses

import pytest

from streamproc.tools.bench.load import sched_s
from streamproc.tools.bench.results import (
    BatchSummary,
    BenchResults,
    CpuUsage,
    Environment,
    FloorRow,
    Floors,
    LatencySummary,
    ModelUse,
    Point,
)
from streamproc.tools.bench.targets import cpu_budget, hot_path_targets, per_event_ms


def _point(
    contender: str,
    rate: float,
    p99: float,
    *,
    cpu: float = 0.2,
    batch_mean: float = 1.0,
    model_ms: float | None = None,
    model_cpu_ms: float | None = None,
    saturated: bool = False,
) -> Point:
    """A rate point with what the targets read; the rest: every event delivered, no errors."""
    return Point(
        contender=contender,
        profile="rate",
        offered_eps=rate,
        offered_achieved_eps=rate,
        measured_s=5.0,
        sent=int(5 * rate),
        delivered=int(5 * rate),
        undelivered=0,
        duplicates=0,
        throughput_eps=rate,
        latency_ms=LatencySummary(p99=p99),
        worker_latency_ms=LatencySummary(),
        batch=BatchSummary(event_p50=int(batch_mean), event_mean=batch_mean),
        cpu=CpuUsage(worker_ms_per_event=cpu),
        errors=(),
        stopped_cleanly=True,
        model=(
            ModelUse(
                batches=1, busy_fraction=0.5, ms_per_event=model_ms, cpu_ms_per_event=model_cpu_ms
            )
            if model_ms
            else None
        ),
        saturated=saturated,
    )


MODEL = {
    1: FloorRow(batch_ms=0.5, per_event_ms=0.5, ceiling_eps=2000.0, reps=5),
    64: FloorRow(batch_ms=12.8, per_event_ms=0.2, ceiling_eps=5000.0, reps=5),
}

ENVIRONMENT = Environment(
    started_at="2024-01-01T00:00:00Z",
    machine="x86_64, 2 CPUs, Linux",
    python="3.11",
    load_avg_before=(0.0, 0.0, 0.0),
    busy_processes_before=(),
    texts="synthetic",
    artifact="artifact",
    artifact_choice="test",
    student_version="student-test",
    student_runtime="onnxruntime",
    model_threads=1,
    broker="localhost:9092",
    load_avg_after=(0.0, 0.0, 0.0),
    wall_s=1.0,
)  # cpus unrecorded: the CPU budget counts this machine's cores


def _results(points: list[Point], **floors: dict[int, FloorRow]) -> BenchResults:
    return BenchResults(
        command="streamproc bench",
        argv=(),
        config={"model_threads": 1},
        contenders={},
        environment=ENVIRONMENT,
        notes=(),
        floors=Floors(
            model_student=MODEL, broker_one_hop=(_point("broker", 9000.0, 5.0),), **floors
        ),
        points=tuple(points),
    )


def test_model_time_alone_is_interpolated_between_measured_batch_sizes() -> None:
    assert per_event_ms(MODEL, 1) == pytest.approx(0.5)
    assert per_event_ms(MODEL, 64) == pytest.approx(0.2)
    # batch 32: 0.5 + (12.8 − 0.5)·31/63 ms for 32 events
    assert per_event_ms(MODEL, 32) == pytest.approx((0.5 + 12.3 * 31 / 63) / 32)
    assert per_event_ms(MODEL, 500) == pytest.approx(0.2)  # beyond the table: its last size


def test_hot_path_targets_met_and_missed() -> None:
    points = [
        _point("passthrough", 25, 10.0),
        _point("passthrough", 9000, 80.0, cpu=0.09),
        _point("adaptive", 25, 15.0),  # ≤ 10 + 0.5 + 5
        _point("adaptive", 1000, 50.0, batch_mean=64, model_ms=0.25),  # 1.25× alone
        _point("adaptive", 4000, 90.0, batch_mean=64, model_ms=0.30),  # 1.5× alone
    ]
    verdicts = {t.target: t for t in hot_path_targets(_results(points))}
    assert verdicts[5].met is True
    assert "9,000 ev/s at the top offered rate" in verdicts[5].detail
    assert verdicts[6].met is True and verdicts[6].share == pytest.approx(0.8)
    assert verdicts[7].met is False and verdicts[7].worst_ratio == pytest.approx(1.5)
    assert verdicts[8].met is True

    slow_low_load = [*points[:2], _point("adaptive", 25, 16.0), *points[3:]]
    assert {t.target: t for t in hot_path_targets(_results(slow_low_load))}[8].met is False


def test_a_busy_pass_through_worker_misses_the_cpu_target() -> None:
    points = [_point("passthrough", 9000, 80.0, cpu=0.16)]
    (verdict,) = [t for t in hot_path_targets(_results(points)) if t.target == 5]
    assert verdict.met is False and "0.160 ms CPU/event" in verdict.detail


def test_the_cpu_budget_says_when_a_rate_cannot_hold_on_this_machine() -> None:
    passthrough = {
        4000.0: _point("passthrough", 4000, 20.0, cpu=0.15),
        6000.0: _point("passthrough", 6000, 30.0, cpu=0.10),  # the favourable reading
    }
    favourable = passthrough[6000.0]
    passthrough[6000.0] = dataclasses.replace(
        favourable, cpu=dataclasses.replace(favourable.cpu, broker_cores=0.6, bench_cores=0.3)
    )
    budget = cpu_budget(5000.0, MODEL[64], passthrough, 2)
    assert budget is not None
    # model 5000 × 0.2 ms = 1.0 core; worker 5000 × 0.10 ms = 0.5; broker 0.6; load 0.3
    assert budget.cores == pytest.approx(2.4)
    assert "≈ 2.40 cores of 2" in budget.detail and "pass-through point 6000/s" in budget.detail
    assert cpu_budget(7000.0, MODEL[64], passthrough, 2) is None  # no point that fast


def test_model_time_inside_the_worker_is_also_given_on_cpu() -> None:
    # 1.5× alone on the wall clock; on a CPU 0.22 ms: the rest was waiting for a CPU
    point = _point("adaptive", 1000, 50.0, batch_mean=64, model_ms=0.30, model_cpu_ms=0.22)
    (verdict,) = [t for t in hot_path_targets(_results([point])) if t.target == 7]
    assert verdict.met is False  # judged as the issue states it: wall time in the model
    assert "the model process's CPU time 0.220 ms/ev, 1.10× alone" in verdict.detail


def test_schedstat_reads_this_process_run_and_wait_time() -> None:
    import os

    before = sched_s(os.getpid())
    sum(i * i for i in range(200_000))  # some CPU
    after = sched_s(os.getpid())
    assert before is not None and after is not None
    assert after[0] > before[0] and after[1] >= before[1] >= 0.0
    assert sched_s(None) is None


def test_the_idle_gap_floor_is_quoted_beside_the_model_time_target() -> None:
    gapped = {1: FloorRow(batch_ms=0.8, per_event_ms=0.8, ceiling_eps=1250.0, reps=5)}
    results = _results(
        [_point("adaptive", 500, 20.0, batch_mean=1, model_ms=0.9)],
        model_student_idle_gaps=gapped,
    )
    (verdict,) = [t for t in hot_path_targets(results) if t.target == 7]
    assert (
        "idle gap before each call vs back to back: batch 1 0.800 vs 0.500 ms/ev" in verdict.detail
    )
