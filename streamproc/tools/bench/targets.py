"""The benchmark's targets, judged from the typed results (pure functions: no Kafka, no torch).

What is judged, always against what was measured in the same run, never assumed:

1. adaptive sustains >= 5x the throughput of per-event processing with the same model;
2. at <= 50 events/s adaptive's p99 is within 1.2x per-event's;
3. at every load adaptive's p99 is no worse than the best fixed policy's;
4. >= 3,000 events/s per worker with p99 <= 100 ms;

plus the hot-path targets (:func:`hot_path_targets`: the worker's CPU per event against the
model-alone floor, see :func:`cpu_budget`). Reports (:mod:`.report`) and plots read the helpers
here too, so a table and its verdict never disagree.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamproc.tools.bench.contenders import FIXED_POLICIES
from streamproc.tools.bench.results import BenchResults, FloorRow, FloorTable, Point, Target

__all__ = [
    "TARGET_P99_MS",
    "CpuBudget",
    "bench_verdicts",
    "capacity",
    "cpu_budget",
    "fmt",
    "held_rate",
    "hot_path_targets",
    "per_event_ms",
    "point_p99",
    "rate_points",
    "verdict_word",
]

TARGET_P99_MS = 100.0


def rate_points(results: BenchResults) -> dict[str, dict[float, Point]]:
    """The rate sweep's points: contender -> offered rate -> point."""
    by: dict[str, dict[float, Point]] = defaultdict(dict)
    for p in results.points:
        if isinstance(p, Point) and p.profile == "rate":
            by[p.contender][float(p.offered_eps)] = p
    return by


def point_p99(point: Point) -> float:
    p99 = point.latency_ms.p99
    return float("inf") if p99 is None else float(p99)


def capacity(points: Iterable[Point]) -> tuple[float, bool]:
    """(highest delivered ev/s, whether the sweep reached saturation — i.e. it is the capacity)."""
    pts = list(points)
    if not pts:
        return 0.0, False
    return max(p.throughput_eps for p in pts), any(p.saturated for p in pts)


def held_rate(points: Iterable[Point], p99_ms: float = TARGET_P99_MS) -> float:
    """Highest offered rate delivered in full with p99 ≤ ``p99_ms`` (0 if none)."""
    ok = [p.offered_eps for p in points if not p.saturated and point_p99(p) <= p99_ms]
    return float(max(ok, default=0.0))


def bench_verdicts(results: BenchResults) -> list[Target]:
    """One entry per target: ``met`` is True, False, or None (the run cannot decide it)."""
    by = rate_points(results)
    adaptive, per_event = by.get("adaptive", {}), by.get("per-event", {})
    out: list[Target] = []

    # 1. throughput ratio, same model
    a_cap, a_sat = capacity(adaptive.values())
    e_cap, e_sat = capacity(per_event.values())
    if not adaptive or not per_event:
        out.append(_target(1, "adaptive ≥ 5× per-event throughput", None, "not measured"))
    else:
        ratio = a_cap / e_cap if e_cap else float("inf")
        if not e_sat:
            met, how = None, "per-event never saturated: raise --rates to find its capacity"
        elif a_sat:
            met, how = ratio >= 5.0, "both capacities measured"
        else:
            met = True if ratio >= 5.0 else None
            how = "adaptive never saturated: its ratio is a lower bound"
        out.append(
            _target(
                1,
                "adaptive ≥ 5× per-event throughput (same model)",
                met,
                f"adaptive {a_cap:,.0f} ev/s{'' if a_sat else '+'} vs per-event {e_cap:,.0f} "
                f"ev/s: {ratio:.1f}×{'' if a_sat else ' or more'} ({how})",
                ratio=round(ratio, 2),
            )
        )

    # 2. low load: adaptive p99 within 1.2x per-event's
    low = sorted(r for r in adaptive if r <= 50 and r in per_event)
    if not low:
        out.append(_target(2, "p99 at ≤ 50 ev/s within 1.2× per-event's", None, "no rate ≤ 50"))
    else:
        ratios = {r: point_p99(adaptive[r]) / max(1e-9, point_p99(per_event[r])) for r in low}
        out.append(
            _target(
                2,
                "at ≤ 50 ev/s adaptive p99 ≤ 1.2 × per-event p99",
                all(x <= 1.2 for x in ratios.values()),
                "; ".join(
                    f"{r:g}/s: {point_p99(adaptive[r]):.1f} vs "
                    f"{point_p99(per_event[r]):.1f} ms ({x:.2f}×)"
                    for r, x in ratios.items()
                ),
                ratios={str(r): round(x, 3) for r, x in ratios.items()},
            )
        )

    # 3. every load: adaptive p99 <= best fixed policy's p99 (fixed ones still running there)
    rows, worse = [], []
    ran_fixed = any(name in by for name in FIXED_POLICIES)
    for rate in sorted(adaptive) if ran_fixed else ():
        fixed = {name: by[name][rate] for name in FIXED_POLICIES if rate in by.get(name, {})}
        if not fixed:
            rows.append(f"{rate:g}/s: every fixed policy had saturated below this rate")
            continue
        best_name = min(fixed, key=lambda n: point_p99(fixed[n]))
        best, mine = point_p99(fixed[best_name]), point_p99(adaptive[rate])
        if mine > best:
            worse.append(rate)
        rows.append(
            f"{rate:g}/s: {mine:.1f} vs {best_name} {best:.1f} ms"
            + (f" (+{mine - best:.1f} ms, {mine / best:.2f}×)" if mine > best else "")
        )
    out.append(
        _target(
            3,
            "at every load adaptive p99 ≤ the best fixed policy's",
            (not worse) if adaptive and ran_fixed else None,
            "; ".join(rows) or "not measured (no fixed policy ran)",
            worse_at=worse,
        )
    )

    # 4. ≥ 3,000 ev/s per worker with p99 <= 100 ms
    candidates = [
        p
        for r, p in adaptive.items()
        if r >= 3000
        and not p.saturated
        and p.offered_achieved_eps >= 0.98 * 3000
        and p.throughput_eps >= 0.95 * p.offered_achieved_eps
    ]
    good = [p for p in candidates if point_p99(p) <= TARGET_P99_MS]
    held = held_rate(adaptive.values())
    if good:
        top = max(good, key=lambda p: p.offered_eps)
        detail = (
            f"{top.offered_eps:g}/s offered, {top.throughput_eps:,.0f} delivered/s, "
            f"p99 {point_p99(top):.1f} ms"
        )
    else:
        at3k = [p for r, p in sorted(adaptive.items()) if r >= 3000]
        detail = f"highest rate held with p99 ≤ 100 ms: {held:g}/s" + (
            "; at ≥ 3000/s: "
            + "; ".join(
                f"{p.offered_eps:g}/s → {p.throughput_eps:,.0f}/s delivered, "
                f"p99 {point_p99(p):.0f} ms" + (" (saturated)" if p.saturated else "")
                for p in at3k
            )
            if at3k
            else "; adaptive did not reach a 3000/s point (saturated earlier)"
        )
    out.append(
        _target(
            4,
            "≥ 3,000 ev/s per worker with p99 ≤ 100 ms",
            bool(good) if adaptive else None,
            detail,
            held_eps=held,
        )
    )
    return out + hot_path_targets(results)


def _idle_gap_note(back_to_back: FloorTable, gapped: FloorTable) -> str:
    """The model alone, called after an idle gap vs back to back: the cold-cache share."""
    parts = [
        f"batch {size} {gapped[size].per_event_ms:.3f} "
        f"vs {back_to_back[size].per_event_ms:.3f} ms/ev"
        for size in sorted(gapped)
        if size in back_to_back
    ]
    if not parts:
        return ""
    return ". Model alone with a 2-ms idle gap before each call vs back to back: " + "; ".join(
        parts
    )


def _on_cpu_note(cpu_ms_per_event: float | None, alone_ms: float) -> str:
    if not cpu_ms_per_event:
        return ")"
    return (
        f"; the model process's CPU time {cpu_ms_per_event:.3f} ms/ev, "
        f"{cpu_ms_per_event / alone_ms:.2f}× alone)"
    )


@dataclass(frozen=True)
class CpuBudget:
    cores: float  # the sum of parts, rounded to 0.01
    parts: Mapping[str, float]  # cores by party: "model alone", "worker without model", …
    detail: str  # the sentence the report quotes


def cpu_budget(
    rate: float,
    model_b64: FloorRow | None,
    passthrough: Mapping[float, Point],
    machine_cores: int,
) -> CpuBudget | None:
    """Cores the machine would need to run ``rate`` ev/s with the model, from this run's floors:
    the model alone at batch 64, plus the pass-through worker, broker and load generator at the
    pass-through point at or above ``rate`` with the least worker CPU per event (the most
    favourable reading). More than the machine's cores: the rate cannot hold here, whatever the
    pipeline does."""
    per_event = model_b64.per_event_ms if model_b64 is not None else None
    above = [
        (p.cpu.worker_ms_per_event, p)
        for r, p in passthrough.items()
        if r >= rate and not p.saturated and p.cpu.worker_ms_per_event is not None
    ]
    if not per_event or not above:
        return None
    worker_ms, best = min(above, key=lambda wp: wp[0])
    cpu = best.cpu
    parts = {
        "model alone": rate * per_event / 1000.0,
        "worker without model": rate * worker_ms / 1000.0,
        "broker": cpu.broker_cores or 0.0,
        "load generator": cpu.bench_cores or 0.0,
    }
    cores = sum(parts.values())
    detail = (
        f"CPU budget at {rate:,.0f} ev/s from this run's floors: ≈ {cores:.2f} cores of "
        f"{machine_cores} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        + f"; pass-through point {best.offered_eps:g}/s)"
    )
    return CpuBudget(round(cores, 2), parts, detail)


def hot_path_targets(results: BenchResults) -> list[Target]:
    """The hot-path targets, numbered 5–9 after the four batching targets of
    :func:`bench_verdicts`."""
    by = rate_points(results)
    floors = results.floors
    passthrough, adaptive = by.get("passthrough", {}), by.get("adaptive", {})
    model = floors.model_student
    out: list[Target] = []

    # 5. the model-free worker: capacity and CPU per event, beside the broker alone
    broker = max((p.throughput_eps for p in floors.broker_one_hop), default=0.0)
    if passthrough:
        cap, sat = capacity(passthrough.values())
        top = max(passthrough.values(), key=lambda p: p.throughput_eps)
        cpu = top.cpu.worker_ms_per_event
        met = cap >= 8000 and cpu is not None and cpu <= 0.10
        out.append(
            _target(
                5,
                "pass-through worker ≥ 8,000 ev/s at ≤ 0.10 ms CPU per event",
                met,
                f"capacity {cap:,.0f}{'' if sat else '+'} ev/s"
                f"{'' if sat else ' (never saturated)'}, {fmt(cpu, 3)} ms CPU/event at "
                f"{top.throughput_eps:,.0f} ev/s; in the same run the broker alone (one hop) "
                f"delivered {broker:,.0f} ev/s at the top offered rate",
            )
        )
    # 6. adaptive: rate held at p99 ≤ 100 ms vs the model-alone ceiling at batch 64
    row64 = model.get(64)
    b64 = row64.ceiling_eps if row64 is not None else None
    if adaptive and b64:
        held = held_rate(adaptive.values())
        share = held / b64
        cores = results.environment.cpus or os.cpu_count() or 1
        budget = cpu_budget(0.70 * b64, row64, passthrough, int(cores))
        out.append(
            _target(
                6,
                "adaptive holds p99 ≤ 100 ms up to ≥ 70% of the model-alone ceiling at batch 64",
                share >= 0.70,
                f"held {held:,.0f} ev/s = {share:.0%} of {b64:,.0f} ev/s "
                f"(model alone, batch 64, {results.config.get('model_threads', 1)} thread)"
                + (f"; {budget.detail}" if budget else ""),
                share=round(share, 3),
                cores_needed=budget.cores if budget else None,
            )
        )
    # 7. model time inside the worker vs alone, at the batch size it ran
    ratios = []
    for rate, p in sorted(adaptive.items()):
        inside = p.model.ms_per_event if p.model else None
        size = p.batch.event_mean or 0
        alone = per_event_ms(model, float(size)) if size else None
        if inside and alone and not p.saturated and rate >= 250:
            ratios.append((rate, inside / alone, inside, alone, size))
    if ratios:
        worst = max(ratios, key=lambda r: r[1])
        on_cpu = {r: _model_cpu_ms(adaptive[r]) for r, *_ in ratios}
        out.append(
            _target(
                7,
                "model time per event inside the worker ≤ 1.3× alone (same batch size, ≥ 250 ev/s)",
                worst[1] <= 1.3,
                "; ".join(
                    f"{r:g}/s: {i:.3f} vs {a:.3f} ms at batch {b:.0f} ({x:.2f}×"
                    + _on_cpu_note(on_cpu.get(r), a)
                    for r, x, i, a, b in ratios
                )
                + _idle_gap_note(model, floors.model_student_idle_gaps),
                worst_ratio=round(worst[1], 2),
            )
        )
    # 8. low load: adaptive p99 ≤ pass-through p99 + batch-1 model time + 5 ms
    row1 = model.get(1)
    batch1 = row1.batch_ms if row1 is not None else None
    low = sorted(r for r in adaptive if 25 <= r <= 100 and r in passthrough)
    if low and batch1 is not None:
        rows, ok = [], True
        for r in low:
            bound = point_p99(passthrough[r]) + batch1 + 5.0
            ok &= point_p99(adaptive[r]) <= bound
            rows.append(f"{r:g}/s: {point_p99(adaptive[r]):.1f} vs ≤ {bound:.1f} ms")
        out.append(
            _target(
                8,
                "at 25–100 ev/s adaptive p99 ≤ pass-through p99 + batch-1 model time + 5 ms",
                ok,
                "; ".join(rows),
            )
        )
    return out


def _model_cpu_ms(point: Point) -> float | None:
    return point.model.cpu_ms_per_event if point.model else None


def per_event_ms(table: FloorTable, size: float) -> float | None:
    """Model-alone ms/event at ``size``, interpolated linearly in batch size between measured
    sizes (the table is measured at 1, 64, 256 and the sizes the adaptive contender ran)."""
    if not table:
        return None
    points = sorted((k, float(v.batch_ms)) for k, v in table.items())
    lo = max((p for p in points if p[0] <= size), default=points[0])
    hi = min((p for p in points if p[0] >= size), default=points[-1])
    if hi[0] == lo[0]:
        return lo[1] / lo[0]
    batch_ms = lo[1] + (hi[1] - lo[1]) * (size - lo[0]) / (hi[0] - lo[0])
    return batch_ms / size


def _target(n: int, name: str, met: bool | None, detail: str, **extra: Any) -> Target:
    if "worse_at" in extra:
        extra["worse_at"] = tuple(extra["worse_at"])
    return Target(n, name, met, detail, **extra, extras=tuple(extra))


def verdict_word(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "UNDECIDED"}[met]


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)
