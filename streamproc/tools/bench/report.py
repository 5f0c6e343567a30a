"""``streamproc bench`` results as Markdown: the full report, the README snippet, the summary
printed at the end of a run. :func:`rerender` rebuilds them from a saved ``bench.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamproc.tools.bench.plots import write_plots
from streamproc.tools.bench.results import BenchResults, FloorTable, Point, SkippedPoint
from streamproc.tools.bench.targets import (
    capacity,
    fmt,
    held_rate,
    point_p99,
    rate_points,
    verdict_word,
)

__all__ = [
    "headline_rows",
    "markdown",
    "readme_snippet",
    "rerender",
    "summary_lines",
    "write_reports",
]


def headline_rows(results: BenchResults) -> list[list[str]]:
    """Per contender: capacity, rate held at p99 ≤ 100 ms, p99 at the lowest rate, burst drain."""
    by = rate_points(results)
    bursts = {p.contender: p for p in results.points if p.profile == "burst"}
    rows = []
    for name, contender in results.contenders.items():
        pts = by.get(name, {})
        if not pts:
            continue
        cap, sat = capacity(pts.values())
        low = pts[min(pts)]
        burst = bursts.get(name)
        if isinstance(burst, SkippedPoint):
            drain = "never (saturated)"
        elif burst is not None and burst.burst is not None:
            b = burst.burst
            drain = f"{b.drain_s:.1f} s" if b.drain_s is not None else "not drained"
        else:
            drain = "–"
        cpu = low.cpu.worker_ms_per_event
        rows.append(
            [
                f"{name} ({contender['description']})",
                f"{cap:,.0f}" + ("" if sat else "+"),
                f"{held_rate(pts.values()):,.0f}",
                f"{point_p99(low):.1f} @ {min(pts):g}/s",
                drain,
                fmt(cpu, 2),
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


def markdown(results: BenchResults) -> str:
    env, cfg = results.environment, results.config
    lines = [
        "# streamproc bench: end-to-end latency and throughput",
        "",
        f"Command: `{results.command}`  ",
        f"Started {env.started_at}, took {env.wall_s} s. Machine: {env.machine}; "
        f"broker: {env.broker}; model: `{env.student_version}` "
        f"({env.artifact_choice}; served by {env.student_runtime}); "
        f"model threads per worker: {cfg['model_threads']}; "
        f"GIL switch interval: {cfg.get('switch_interval_s') or 'Python default (5 ms)'}; "
        f"texts: {env.texts}.",
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
    load_before = ", ".join(f"{x:.2f}" for x in env.load_avg_before)
    busy = env.busy_processes_before
    lines.append(f"Load average before the run: {load_before}.")
    if busy:
        lines.append(
            "Busy processes before the run: "
            + "; ".join(f"{b.cores} cores `{b.cmd[:70]}`" for b in busy)
            + "."
        )
    for note in results.notes:
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
    for t in results.targets:
        lines.append(f"- **{verdict_word(t.met)}** — {t.name}: {t.detail}")
    lines += ["", "## Rate sweep", ""]
    header = [
        "contender", "offered", "delivered ev/s", "p50", "p95", "p99", "max", "worker p99",
        "ramp p99", "batch p50/mean", "model busy", "model ms/ev", "call ms/ev", "model CPU wait",
        "worker cores", "CPU ms/ev", "other cores", "status",
    ]  # fmt: skip
    rows = []
    for p in results.points:
        if not isinstance(p, Point) or p.profile != "rate":
            continue
        lat, cpu, batch, model = p.latency_ms, p.cpu, p.batch, p.model
        rows.append(
            [
                p.contender,
                f"{p.offered_eps:g}",
                f"{p.throughput_eps:,.0f}",
                fmt(lat.p50),
                fmt(lat.p95),
                fmt(lat.p99),
                fmt(lat.max),
                fmt(p.worker_latency_ms.p99),
                fmt(p.ramp.latency_ms.p99 if p.ramp else None),
                f"{_or_dash(batch.event_p50)}/{_or_dash(batch.event_mean)}",
                fmt(model.busy_fraction if model else None, 2),
                fmt(model.ms_per_event if model else None, 3),
                fmt(model.call_ms_per_event if model else None, 3),
                fmt(cpu.model_process_wait_per_run, 2),
                fmt(cpu.worker_cores, 2),
                fmt(cpu.worker_ms_per_event, 2),
                fmt(cpu.other_cores, 2),
                ("SATURATED: " + p.saturation_reason) if p.saturated else "ok",
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


def _or_dash(value: float | None) -> str:
    return "–" if value is None else str(value)


def _burst_lines(results: BenchResults) -> list[str]:
    header = [
        "contender", "steady ev/s", "burst", "peak lag", "drain s", "p50", "p99", "max",
        "delivered/sent", "worker cores", "other cores",
    ]  # fmt: skip
    rows = []
    for p in results.points:
        if p.profile != "burst":
            continue
        if isinstance(p, SkippedPoint):
            rows.append([p.contender, "–", "–", "–", "–", "–", "–", "–", p.skipped, "–", "–"])
            continue
        b, lat = p.burst, p.latency_ms
        assert b is not None  # a measured burst point records its burst
        rows.append(
            [
                p.contender,
                f"{b.steady_eps:g}",
                f"{b.events:,}",
                f"{b.peak_lag:,}",
                fmt(b.drain_s, 2) if b.drained else f"not drained ({b.burst_delivered:,})",
                fmt(lat.p50),
                fmt(lat.p99),
                fmt(lat.max),
                f"{p.delivered:,}/{p.sent:,}",
                fmt(p.cpu.worker_cores, 2),
                fmt(p.cpu.other_cores, 2),
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


def _floor_lines(results: BenchResults) -> list[str]:
    floors = results.floors
    by = rate_points(results)
    lines = ["Broker alone (produce → consume, one hop, no worker):", ""]
    for p in floors.broker_one_hop:
        lat = p.latency_ms
        lines.append(
            f"- {p.offered_eps:g}/s: p50 {fmt(lat.p50)} ms, p99 {fmt(lat.p99)} "
            f"ms, max {fmt(lat.max)} ms ({p.delivered:,}/{p.sent:,} delivered)"
        )
    model = floors.model_student
    eager = floors.model_student_torch
    gapped = floors.model_student_idle_gaps
    teacher = floors.model_teacher
    runtime = results.environment.student_runtime
    lines += [
        "",
        "Model time alone (`predict_batch`, median, same thread count as the worker):",
        "",
    ]
    header = ["model", "batch", "ms/batch", "ms/event", "ceiling ev/s"]
    rows = [
        [name, str(size), fmt(m.batch_ms, 2), fmt(m.per_event_ms, 3), f"{m.ceiling_eps:,.0f}"]
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
            size = int(p.batch.event_p50 or 1)
            ceiling = _nearest(table, size)
            rows.append(
                [
                    name,
                    f"{rate:g}",
                    fmt(point_p99(p)),
                    fmt(point_p99(floor)) if floor else "–",
                    fmt(point_p99(p) - point_p99(floor)) if floor else "–",
                    str(size),
                    f"{ceiling:,.0f}" if ceiling else "–",
                    f"{p.throughput_eps / ceiling:.0%}" if ceiling else "–",
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


def _nearest(table: FloorTable, size: int) -> float | None:
    if not table:
        return None
    key = min(table, key=lambda k: abs(k - size))
    return float(table[key].ceiling_eps)


def readme_snippet(results: BenchResults, out_dir: Path) -> str:
    rel = out_dir.as_posix().rstrip("/")
    env = results.environment
    lines = [
        "## Benchmark",
        "",
        "One worker, one local Kafka broker, the load generator and the consumer, all on one "
        f"machine ({env.machine.split(',')[1].strip()}); model `{env.student_version}`, "
        f"{results.config['model_threads']} model thread(s) in the worker. End-to-end latency "
        "= prediction received − event sent.",
        "",
        *_table(_HEADLINE_HEADER, headline_rows(results)),
        "",
        f"![latency vs offered load]({rel}/latency_vs_load.png)",
        "",
    ]
    for t in results.targets:
        lines.append(f"- {verdict_word(t.met)}: {t.name} — {t.detail}")
    lines += [
        "",
        f"Full tables, floors and plots: [{rel}/bench.md]({rel}/bench.md). Reproduce with:",
        "",
        "```",
        results.command,
        "```",
        "",
    ]
    return "\n".join(lines)


def write_reports(
    results: BenchResults, out_dir: Path, *, json_too: bool = True
) -> dict[str, Path]:
    """Write bench.json, bench.md, the plots and README-snippet.md into ``out_dir``; returns their
    paths. ``json_too=False`` leaves bench.json as it is (:func:`rerender`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md"}
    if json_too:
        paths["json"].write_text(json.dumps(results.to_json(), indent=1, default=str) + "\n")
    paths["markdown"].write_text(markdown(results) + "\n")
    for png in write_plots(results, out_dir):
        paths[png.stem] = png
    paths["snippet"] = out_dir / "README-snippet.md"
    paths["snippet"].write_text(readme_snippet(results, out_dir))
    return paths


def rerender(out_dir: Path) -> dict[str, Path]:
    """Rewrite bench.md, the plots and README-snippet.md from an existing bench.json (which is
    left as it is)."""
    results = BenchResults.from_json(json.loads((out_dir / "bench.json").read_text()))
    return write_reports(results, out_dir, json_too=False)


def summary_lines(results: BenchResults) -> list[str]:
    lines = ["", *_table(_HEADLINE_HEADER, headline_rows(results)), ""]
    lines += [f"{verdict_word(t.met)}: {t.name} — {t.detail}" for t in results.targets]
    return lines
