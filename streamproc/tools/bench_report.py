"""Turn ``streamproc bench`` measurements into verdicts, tables and plots.

Pure functions of the results dict (no Kafka, no torch), so reports can be rebuilt from a saved
``bench.json`` with :func:`write_reports` and the target logic is testable on its own.

The issue's targets (issue 5), evaluated against what was measured, never assumed:

1. adaptive sustains ≥ 5× the throughput of per-event processing with the same model;
2. at ≤ 50 events/s adaptive's p99 is within 1.2× per-event's;
3. at every load adaptive's p99 is no worse than the best fixed policy's;
4. ≥ 3,000 events/s per worker with p99 ≤ 100 ms.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamproc.plotting import pyplot

__all__ = [
    "capacity",
    "evaluate_targets",
    "headline_rows",
    "markdown",
    "summary_lines",
    "write_plots",
    "write_reports",
]

FIXED = ("per-event", "take64", "take256")
_TARGET_MS = 100.0


def _rate_points(results: dict[str, Any]) -> dict[str, dict[float, dict[str, Any]]]:
    by: dict[str, dict[float, dict[str, Any]]] = defaultdict(dict)
    for p in results["points"]:
        if p.get("profile") == "rate" and "skipped" not in p:
            by[p["contender"]][float(p["offered_eps"])] = p
    return by


def _p99(point: dict[str, Any]) -> float:
    return float(point["latency_ms"].get("p99", float("inf")))


def capacity(points: Iterable[dict[str, Any]]) -> tuple[float, bool]:
    """(highest delivered ev/s, whether the sweep reached saturation — i.e. it is the capacity)."""
    pts = list(points)
    if not pts:
        return 0.0, False
    return max(p["throughput_eps"] for p in pts), any(p["saturated"] for p in pts)


def _held(points: Iterable[dict[str, Any]], p99_ms: float = _TARGET_MS) -> float:
    """Highest offered rate delivered in full with p99 ≤ ``p99_ms`` (0 if none)."""
    ok = [p["offered_eps"] for p in points if not p["saturated"] and _p99(p) <= p99_ms]
    return float(max(ok, default=0.0))


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target: ``met`` is True, False, or None (the run cannot decide it)."""
    by = _rate_points(results)
    adaptive, per_event = by.get("adaptive", {}), by.get("per-event", {})
    out: list[dict[str, Any]] = []

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
        ratios = {r: _p99(adaptive[r]) / max(1e-9, _p99(per_event[r])) for r in low}
        out.append(
            _target(
                2,
                "at ≤ 50 ev/s adaptive p99 ≤ 1.2 × per-event p99",
                all(x <= 1.2 for x in ratios.values()),
                "; ".join(
                    f"{r:g}/s: {_p99(adaptive[r]):.1f} vs {_p99(per_event[r]):.1f} ms ({x:.2f}×)"
                    for r, x in ratios.items()
                ),
                ratios={str(r): round(x, 3) for r, x in ratios.items()},
            )
        )

    # 3. every load: adaptive p99 <= best fixed policy's p99 (fixed ones still running there)
    rows, worse = [], []
    ran_fixed = any(name in by for name in FIXED)
    for rate in sorted(adaptive) if ran_fixed else ():
        fixed = {name: by[name][rate] for name in FIXED if rate in by.get(name, {})}
        if not fixed:
            rows.append(f"{rate:g}/s: every fixed policy had saturated below this rate")
            continue
        best_name = min(fixed, key=lambda n: _p99(fixed[n]))
        best, mine = _p99(fixed[best_name]), _p99(adaptive[rate])
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
        and not p["saturated"]
        and p["offered_achieved_eps"] >= 0.98 * 3000
        and p["throughput_eps"] >= 0.95 * p["offered_achieved_eps"]
    ]
    good = [p for p in candidates if _p99(p) <= _TARGET_MS]
    held = _held(adaptive.values())
    if good:
        top = max(good, key=lambda p: p["offered_eps"])
        detail = (
            f"{top['offered_eps']:g}/s offered, {top['throughput_eps']:,.0f} delivered/s, "
            f"p99 {_p99(top):.1f} ms"
        )
    else:
        at3k = [p for r, p in sorted(adaptive.items()) if r >= 3000]
        detail = f"highest rate held with p99 ≤ 100 ms: {held:g}/s" + (
            "; at ≥ 3000/s: "
            + "; ".join(
                f"{p['offered_eps']:g}/s → {p['throughput_eps']:,.0f}/s delivered, "
                f"p99 {_p99(p):.0f} ms" + (" (saturated)" if p["saturated"] else "")
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


def _idle_gap_note(back_to_back: dict[str, Any], gapped: dict[str, Any]) -> str:
    """The model alone, called after an idle gap vs back to back: the cold-cache share."""
    parts = [
        f"batch {size} {gapped[size]['per_event_ms']:.3f} "
        f"vs {back_to_back[size]['per_event_ms']:.3f} ms/ev"
        for size in sorted(gapped, key=int)
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


def cpu_budget(
    rate: float,
    model_b64: dict[str, Any],
    passthrough: dict[float, dict[str, Any]],
    machine_cores: int,
) -> dict[str, Any] | None:
    """Cores the machine would need to run ``rate`` ev/s with the model, from this run's floors:
    the model alone at batch 64, plus the pass-through worker, broker and load generator at the
    pass-through point at or above ``rate`` with the least worker CPU per event (the most
    favourable reading). More than the machine's cores: the rate cannot hold here, whatever the
    pipeline does."""
    per_event = model_b64.get("per_event_ms")
    above = [
        p
        for r, p in passthrough.items()
        if r >= rate and not p["saturated"] and p["cpu"].get("worker_ms_per_event") is not None
    ]
    if not per_event or not above:
        return None
    best = min(above, key=lambda p: p["cpu"]["worker_ms_per_event"])
    cpu = best["cpu"]
    parts = {
        "model alone": rate * per_event / 1000.0,
        "worker without model": rate * cpu["worker_ms_per_event"] / 1000.0,
        "broker": cpu.get("broker_cores") or 0.0,
        "load generator": cpu.get("bench_cores") or 0.0,
    }
    cores = sum(parts.values())
    detail = (
        f"CPU budget at {rate:,.0f} ev/s from this run's floors: ≈ {cores:.2f} cores of "
        f"{machine_cores} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        + f"; pass-through point {best['offered_eps']:g}/s)"
    )
    return {"cores": round(cores, 2), "parts": parts, "detail": detail}


def hot_path_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9's targets (the hot path), numbered 5–9 after issue 5's four."""
    by = _rate_points(results)
    floors = results["floors"]
    passthrough, adaptive = by.get("passthrough", {}), by.get("adaptive", {})
    model = floors.get("model_student", {})
    out: list[dict[str, Any]] = []

    # 5. the model-free worker: capacity and CPU per event, beside the broker alone
    hops = floors.get("broker_one_hop", [])
    broker = max((p["throughput_eps"] for p in hops), default=0.0)
    if passthrough:
        cap, sat = capacity(passthrough.values())
        top = max(passthrough.values(), key=lambda p: p["throughput_eps"])
        cpu = top["cpu"].get("worker_ms_per_event")
        met = cap >= 8000 and cpu is not None and cpu <= 0.10
        out.append(
            _target(
                5,
                "pass-through worker ≥ 8,000 ev/s at ≤ 0.10 ms CPU per event",
                met,
                f"capacity {cap:,.0f}{'' if sat else '+'} ev/s"
                f"{'' if sat else ' (never saturated)'}, {_fmt(cpu, 3)} ms CPU/event at "
                f"{top['throughput_eps']:,.0f} ev/s; in the same run the broker alone (one hop) "
                f"delivered {broker:,.0f} ev/s at the top offered rate",
            )
        )
    # 6. adaptive: rate held at p99 ≤ 100 ms vs the model-alone ceiling at batch 64
    b64 = model.get("64", {}).get("ceiling_eps")
    if adaptive and b64:
        held = _held(adaptive.values())
        share = held / b64
        cores = results.get("environment", {}).get("cpus") or os.cpu_count() or 1
        budget = cpu_budget(0.70 * b64, model.get("64", {}), passthrough, int(cores))
        out.append(
            _target(
                6,
                "adaptive holds p99 ≤ 100 ms up to ≥ 70% of the model-alone ceiling at batch 64",
                share >= 0.70,
                f"held {held:,.0f} ev/s = {share:.0%} of {b64:,.0f} ev/s "
                f"(model alone, batch 64, {results['config'].get('model_threads', 1)} thread)"
                + (f"; {budget['detail']}" if budget else ""),
                share=round(share, 3),
                cores_needed=budget["cores"] if budget else None,
            )
        )
    # 7. model time inside the worker vs alone, at the batch size it ran
    ratios = []
    for rate, p in sorted(adaptive.items()):
        inside = (p.get("model") or {}).get("ms_per_event")
        size = p["batch"].get("event_mean") or 0
        alone = _per_event_ms(model, float(size)) if size else None
        if inside and alone and not p["saturated"] and rate >= 250:
            ratios.append((rate, inside / alone, inside, alone, size))
    if ratios:
        worst = max(ratios, key=lambda r: r[1])
        on_cpu = {r: (adaptive[r].get("model") or {}).get("cpu_ms_per_event") for r, *_ in ratios}
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
                + _idle_gap_note(model, floors.get("model_student_idle_gaps", {})),
                worst_ratio=round(worst[1], 2),
            )
        )
    # 8. low load: adaptive p99 ≤ pass-through p99 + batch-1 model time + 5 ms
    batch1 = model.get("1", {}).get("batch_ms")
    low = sorted(r for r in adaptive if 25 <= r <= 100 and r in passthrough)
    if low and batch1 is not None:
        rows, ok = [], True
        for r in low:
            bound = _p99(passthrough[r]) + batch1 + 5.0
            ok &= _p99(adaptive[r]) <= bound
            rows.append(f"{r:g}/s: {_p99(adaptive[r]):.1f} vs ≤ {bound:.1f} ms")
        out.append(
            _target(
                8,
                "at 25–100 ev/s adaptive p99 ≤ pass-through p99 + batch-1 model time + 5 ms",
                ok,
                "; ".join(rows),
            )
        )
    return out


def _per_event_ms(table: dict[str, Any], size: float) -> float | None:
    """Model-alone ms/event at ``size``, interpolated linearly in batch size between measured
    sizes (the table is measured at 1, 64, 256 and the sizes the adaptive contender ran)."""
    if not table:
        return None
    points = sorted((int(k), float(v["batch_ms"])) for k, v in table.items())
    lo = max((p for p in points if p[0] <= size), default=points[0])
    hi = min((p for p in points if p[0] >= size), default=points[-1])
    if hi[0] == lo[0]:
        return lo[1] / lo[0]
    batch_ms = lo[1] + (hi[1] - lo[1]) * (size - lo[0]) / (hi[0] - lo[0])
    return batch_ms / size


def _target(n: int, name: str, met: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    return {"target": n, "name": name, "met": met, "detail": detail, **extra}


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "UNDECIDED"}[met]


# --- tables --------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def headline_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per contender: capacity, rate held at p99 ≤ 100 ms, p99 at the lowest rate, burst drain."""
    by = _rate_points(results)
    bursts = {p["contender"]: p for p in results["points"] if p.get("profile") == "burst"}
    rows = []
    for name, contender in results["contenders"].items():
        pts = by.get(name, {})
        if not pts:
            continue
        cap, sat = capacity(pts.values())
        low = pts[min(pts)]
        burst = bursts.get(name, {})
        if "skipped" in burst:
            drain = "never (saturated)"
        elif burst:
            b = burst["burst"]
            drain = f"{b['drain_s']:.1f} s" if b["drain_s"] is not None else "not drained"
        else:
            drain = "–"
        cpu = low["cpu"].get("worker_ms_per_event")
        rows.append(
            [
                f"{name} ({contender['description']})",
                f"{cap:,.0f}" + ("" if sat else "+"),
                f"{_held(pts.values()):,.0f}",
                f"{_p99(low):.1f} @ {min(pts):g}/s",
                drain,
                _fmt(cpu, 2),
            ]
        )
    return rows


_HEADLINE_HEADER = [
    "contender",
    "capacity, ev/s",
    "max rate with p99 ≤ 100 ms, ev/s",
    "p99 at low load, ms",
    "burst drained in",
    "worker CPU ms/event (low load)",
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    env, cfg = results["environment"], results["config"]
    lines = [
        "# streamproc bench: end-to-end latency and throughput",
        "",
        f"Command: `{results['command']}`  ",
        f"Started {env['started_at']}, took {env.get('wall_s', '?')} s. Machine: {env['machine']}; "
        f"broker: {env.get('broker')}; model: `{env['student_version']}` "
        f"({env['artifact_choice']}; served by {env.get('student_runtime', 'torch')}); "
        f"model threads per worker: {cfg['model_threads']}; "
        f"GIL switch interval: {cfg.get('switch_interval_s') or 'Python default (5 ms)'}; "
        f"texts: {env['texts']}.",
        "",
        "Latency is **received time**: the bench consumer's clock when the prediction arrived "
        "minus the event's send stamp (`ts`), so it includes both Kafka hops and the worker. "
        "`worker p99` is the prediction's own `latency_ms` (published − sent). Every point ran on "
        f"fresh topics and a fresh consumer group after a 32-event warm-up and a "
        f"{cfg.get('ramp_s', 0):g}-s ramp at the offered rate (its events are delivered and "
        "counted, their p99 is the `ramp p99` column, but they are not in the latency "
        "statistics: the step from idle to full rate first costs a burst of broker CPU on this "
        "shared machine; the burst profile measures steps), then for "
        f"{cfg['duration_s']:g} s of load (at least {cfg.get('min_events', 0)} events); a "
        "contender's sweep "
        "stops at its first saturated rate (delivered < 0.9 × offered, events left undelivered, "
        "or p99 > 1 s). CPU is process CPU time / wall (from /proc); `other` is everything else "
        "on the machine during the point (contention).",
        "",
    ]
    load_before = ", ".join(f"{x:.2f}" for x in env["load_avg_before"])
    busy = env.get("busy_processes_before") or []
    lines.append(f"Load average before the run: {load_before}.")
    if busy:
        lines.append(
            "Busy processes before the run: "
            + "; ".join(f"{b['cores']} cores `{b['cmd'][:70]}`" for b in busy)
            + "."
        )
    for note in results.get("notes", []):
        lines.append(f"Note: {note}.")
    lines += ["", "## Headline", ""]
    lines += _table(_HEADLINE_HEADER, headline_rows(results))
    lines += [
        "",
        "`+`: never saturated in the sweep (capacity is at least this). Burst: "
        f"{cfg['burst']:,} events at once on top of {cfg['burst_rate']:g} ev/s.",
        "",
    ]
    lines += ["## Targets (adaptive batching, then the hot path)", ""]
    for t in results["targets"]:
        lines.append(f"- **{_verdict(t['met'])}** — {t['name']}: {t['detail']}")
    lines += ["", "## Rate sweep", ""]
    header = [
        "contender", "offered", "delivered ev/s", "p50", "p95", "p99", "max", "worker p99",
        "ramp p99", "batch p50/mean", "model busy", "model ms/ev", "call ms/ev", "model CPU wait",
        "worker cores", "CPU ms/ev", "other cores", "status",
    ]  # fmt: skip
    rows = []
    for p in results["points"]:
        if p.get("profile") != "rate":
            continue
        lat, cpu, batch = p["latency_ms"], p["cpu"], p["batch"]
        rows.append(
            [
                p["contender"],
                f"{p['offered_eps']:g}",
                f"{p['throughput_eps']:,.0f}",
                _fmt(lat.get("p50")),
                _fmt(lat.get("p95")),
                _fmt(lat.get("p99")),
                _fmt(lat.get("max")),
                _fmt(p["worker_latency_ms"].get("p99")),
                _fmt(((p.get("ramp") or {}).get("latency_ms") or {}).get("p99")),
                f"{batch.get('event_p50', '–')}/{batch.get('event_mean', '–')}",
                _fmt((p.get("model") or {}).get("busy_fraction"), 2),
                _fmt((p.get("model") or {}).get("ms_per_event"), 3),
                _fmt((p.get("model") or {}).get("call_ms_per_event"), 3),
                _fmt(cpu.get("model_process_wait_per_run"), 2),
                _fmt(cpu.get("worker_cores"), 2),
                _fmt(cpu.get("worker_ms_per_event"), 2),
                _fmt(cpu.get("other_cores"), 2),
                ("SATURATED: " + p["saturation_reason"]) if p["saturated"] else "ok",
            ]
        )
    lines += _table(header, rows)
    lines += [
        "",
        "Latencies in ms. `model busy`: fraction of the point's wall time the model ran; "
        "`model ms/ev`: the model's own time per event, where it runs (inference thread or "
        "model process); `call ms/ev`: the model call as the pipeline waited for it (hand-off "
        "there and back included); `model CPU wait`: seconds the model process was runnable "
        "but waiting for a CPU per second it ran (`/proc/…/schedstat`: the cost of sharing 2 "
        "cores with the worker, broker and load generator; – where the model runs in the "
        "worker's own process). Worker CPU includes its model process.",
        "",
    ]
    lines += ["## Burst", ""]
    lines += _burst_lines(results)
    lines += ["", "## Floors and distance from them", ""]
    lines += _floor_lines(results)
    lines += [
        "",
        "## Plots",
        "",
        "![latency vs offered load](latency_vs_load.png)",
        "",
        "![throughput vs offered load](throughput_vs_load.png)",
        "",
        "![lag during the burst](burst_lag.png)",
        "",
    ]
    return "\n".join(lines)


def _burst_lines(results: dict[str, Any]) -> list[str]:
    header = [
        "contender", "steady ev/s", "burst", "peak lag", "drain s", "p50", "p99", "max",
        "delivered/sent", "worker cores", "other cores",
    ]  # fmt: skip
    rows = []
    for p in results["points"]:
        if p.get("profile") != "burst":
            continue
        if "skipped" in p:
            rows.append([p["contender"], "–", "–", "–", "–", "–", "–", "–", p["skipped"], "–", "–"])
            continue
        b, lat = p["burst"], p["latency_ms"]
        rows.append(
            [
                p["contender"],
                f"{b['steady_eps']:g}",
                f"{b['events']:,}",
                f"{b['peak_lag']:,}",
                _fmt(b["drain_s"], 2)
                if b["drained"]
                else f"not drained ({b['burst_delivered']:,})",
                _fmt(lat.get("p50")),
                _fmt(lat.get("p99")),
                _fmt(lat.get("max")),
                f"{p['delivered']:,}/{p['sent']:,}",
                _fmt(p["cpu"].get("worker_cores"), 2),
                _fmt(p["cpu"].get("other_cores"), 2),
            ]
        )
    if not rows:
        return ["No burst profile in this run."]
    return [
        *_table(header, rows),
        "",
        "Lag = events sent but not yet predicted, sampled every 100 ms by the bench. Drain = from "
        "the first burst event sent to the last burst event's prediction received.",
    ]


def _floor_lines(results: dict[str, Any]) -> list[str]:
    floors = results["floors"]
    by = _rate_points(results)
    lines = ["Broker alone (produce → consume, one hop, no worker):", ""]
    for p in floors.get("broker_one_hop", []):
        lat = p["latency_ms"]
        lines.append(
            f"- {p['offered_eps']:g}/s: p50 {_fmt(lat.get('p50'))} ms, p99 {_fmt(lat.get('p99'))} "
            f"ms, max {_fmt(lat.get('max'))} ms ({p['delivered']:,}/{p['sent']:,} delivered)"
        )
    model = floors.get("model_student", {})
    eager = floors.get("model_student_torch", {})
    gapped = floors.get("model_student_idle_gaps", {})
    teacher = floors.get("model_teacher", {})
    runtime = results["environment"].get("student_runtime", "torch")
    lines += [
        "",
        "Model time alone (`predict_batch`, median, same thread count as the worker):",
        "",
    ]
    header = ["model", "batch", "ms/batch", "ms/event", "ceiling ev/s"]
    rows = [
        [name, size, _fmt(m["batch_ms"], 2), _fmt(m["per_event_ms"], 3), f"{m['ceiling_eps']:,.0f}"]
        for name, table in (
            (f"student ({runtime})", model),
            (f"student ({runtime}), 2-ms idle gap before each call", gapped),
            ("student (torch)", eager),
            ("teacher fp32", teacher),
        )
        for size, m in table.items()
    ]
    lines += _table(header, rows)
    passthrough = by.get("passthrough", {})
    pt_cap, pt_sat = capacity(passthrough.values())
    lines += [
        "",
        f"Pipeline floor (pass-through worker, no model: two Kafka hops + Faust + the batching "
        f"pipeline): capacity {pt_cap:,.0f}{'' if pt_sat else '+'} ev/s.",
        "",
        "Distance from the floors. Latency: p99 minus the pass-through worker's p99 at the same "
        "rate (what the model and the policy add). Throughput: capacity as a share of the "
        "model-alone ceiling at the batch size the contender ran, and of the pipeline floor.",
        "",
    ]
    header = [
        "contender", "rate", "p99", "floor p99", "+ms over floor", "batch p50",
        "model ceiling ev/s @ batch", "delivered / model ceiling",
    ]  # fmt: skip
    rows = []
    for name, pts in by.items():
        if name == "passthrough":
            continue
        table = teacher if name.startswith("teacher") else model
        if name.endswith("-torch") and eager:
            table = eager
        for rate, p in sorted(pts.items()):
            floor = passthrough.get(rate)
            size = int(p["batch"].get("event_p50", 1) or 1)
            ceiling = _nearest(table, size)
            rows.append(
                [
                    name,
                    f"{rate:g}",
                    _fmt(_p99(p)),
                    _fmt(_p99(floor)) if floor else "–",
                    _fmt(_p99(p) - _p99(floor)) if floor else "–",
                    str(size),
                    f"{ceiling:,.0f}" if ceiling else "–",
                    f"{p['throughput_eps'] / ceiling:.0%}" if ceiling else "–",
                ]
            )
    lines += _table(header, rows)
    lines.append("")
    for name, pts in by.items():
        if name == "passthrough" or not pts:
            continue
        cap, sat = capacity(pts.values())
        lines.append(
            f"- {name}: capacity {cap:,.0f}{'' if sat else '+'} ev/s = "
            f"{cap / pt_cap:.0%} of the pipeline floor's {pt_cap:,.0f}{'' if pt_sat else '+'} ev/s"
            if pt_cap
            else f"- {name}: capacity {cap:,.0f} ev/s"
        )
    return lines


def _nearest(table: dict[str, Any], size: int) -> float | None:
    if not table:
        return None
    key = min(table, key=lambda k: abs(int(k) - size))
    return float(table[key]["ceiling_eps"])


# --- plots ---------------------------------------------------------------------------------------
def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot("the benchmark plots")
    if plt is None:
        return []
    from matplotlib import ticker

    by = _rate_points(results)
    paths = []
    styles: dict[str, dict[str, Any]] = {"passthrough": {"color": "0.5", "linestyle": "--"}}
    # Gray is the floor's: every other contender gets a distinct non-gray colour.
    palette = [f"C{i}" for i in range(10) if i != 7]  # the default cycle (tab10) minus its gray
    palette += ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"]  # Dark2
    others = [name for name in by if name not in styles]
    styles.update({name: {"color": palette[i % len(palette)]} for i, name in enumerate(others)})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, q in zip(axes, ("p50", "p99"), strict=True):
        for name, pts in by.items():
            rates = sorted(pts)
            ax.plot(
                rates,
                [max(0.1, pts[r]["latency_ms"].get(q, 0.0)) for r in rates],
                marker="o",
                label=name,
                **styles.get(name, {}),
            )
            sat = [r for r in rates if pts[r]["saturated"]]
            ax.scatter(
                sat,
                [max(0.1, pts[r]["latency_ms"].get(q, 0.0)) for r in sat],
                s=140,
                facecolors="none",
                edgecolors="red",
            )
        ax.axhline(_TARGET_MS, color="red", linewidth=0.8, linestyle=":", label="100 ms target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(sorted({r for pts in by.values() for r in pts}))
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("offered load, events/s (red ring: saturated)")
        ax.set_title(f"{q} end-to-end latency (received − sent)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (log)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"streamproc bench — {results['environment']['student_version']}", fontsize=10)
    fig.tight_layout()
    paths.append(out_dir / "latency_vs_load.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    top = 1.0
    for name, pts in by.items():
        rates = sorted(pts)
        top = max(top, *rates)
        ax.plot(
            rates,
            [pts[r]["throughput_eps"] for r in rates],
            marker="o",
            label=name,
            **styles.get(name, {}),
        )
    ax.plot([1, top], [1, top], color="0.8", linewidth=0.8, label="delivered = offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, events/s")
    ax.set_ylabel("delivered, events/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "throughput_vs_load.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for p in results["points"]:
        if p.get("profile") != "burst" or "skipped" in p:
            continue
        series = p.get("lag_series") or []
        ax.plot(
            [t for t, _ in series],
            [max(1, lag) for _, lag in series],
            label=p["contender"],
            **styles.get(p["contender"], {}),
        )
        ax.axvline(p["burst"]["at_s"], color="0.85", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the load started (burst at the grey line)")
    ax.set_ylabel("lag: sent, not yet predicted (log)")
    ax.set_title("lag during a burst on top of steady load")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "burst_lag.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def readme_snippet(results: dict[str, Any], out_dir: Path) -> str:
    rel = out_dir.as_posix().rstrip("/")
    env = results["environment"]
    lines = [
        "## Benchmark",
        "",
        "One worker, one local Kafka broker, the load generator and the consumer, all on one "
        f"machine ({env['machine'].split(',')[1].strip()}); model `{env['student_version']}`, "
        f"{results['config']['model_threads']} model thread(s) in the worker. End-to-end latency "
        "= prediction received − event sent.",
        "",
        *_table(_HEADLINE_HEADER, headline_rows(results)),
        "",
        f"![latency vs offered load]({rel}/latency_vs_load.png)",
        "",
    ]
    for t in results["targets"]:
        lines.append(f"- {_verdict(t['met'])}: {t['name']} — {t['detail']}")
    lines += [
        "",
        f"Full tables, floors and plots: [{rel}/bench.md]({rel}/bench.md). Reproduce with:",
        "",
        "```",
        results["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def write_reports(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths["markdown"].write_text(markdown(results) + "\n")
    for png in write_plots(results, out_dir):
        paths[png.stem] = png
    paths["snippet"] = out_dir / "README-snippet.md"
    paths["snippet"].write_text(readme_snippet(results, out_dir))
    return paths


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", *_table(_HEADLINE_HEADER, headline_rows(results)), ""]
    lines += [f"{_verdict(t['met'])}: {t['name']} — {t['detail']}" for t in results["targets"]]
    return lines
