"""The whole ``streamproc bench`` run: one broker, every contender through every load profile,
the floors, the reports; and the click command."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from streamproc.errors import ConfigError
from streamproc.tools.bench.contenders import (
    CONTENDERS,
    FULL_RATES,
    QUICK_CONTENDERS,
    QUICK_RATES,
    Contender,
)
from streamproc.tools.bench.load import busy_processes
from streamproc.tools.bench.measure import (
    IDLE_GAP_S,
    BenchConfig,
    BenchWorker,
    model_floor,
    run_point,
)
from streamproc.tools.bench.results import (
    BenchResults,
    Environment,
    FloorRow,
    Floors,
    Point,
    SkippedPoint,
)
from streamproc.tools.served_model import choose_artifact

__all__ = ["bench", "run_bench"]


# --- the whole run -------------------------------------------------------------------------------
@contextlib.contextmanager
def _broker() -> Iterator[tuple[str, int | None]]:
    from streamproc.broker import configured_or_local_broker
    from streamproc.settings import load_settings

    with configured_or_local_broker(load_settings()) as (bootstrap, local):
        yield bootstrap, local.pid if local is not None else None


def _texts(quick: bool) -> tuple[list[str], str]:
    """TREC test questions (what the model was trained for); a built-in list if unavailable."""
    with contextlib.suppress(Exception):
        from streamproc.compress.data import load_dataset
        from streamproc.settings import default_cache_dir

        return list(load_dataset("trec", cache_dir=default_cache_dir()).test_texts), "trec test"
    subjects = ["who", "what", "when", "where", "how many", "why"]
    verbs = ["invented the telephone", "is the capital of peru", "did rome fall", "live in iceland"]
    return [
        f"{s} {v} #{i}?" for i, (s, v) in enumerate(zip(subjects * 4, verbs * 6, strict=True))
    ], "synthetic"


def _teacher_available() -> bool:
    from streamproc.compress.teacher_model import find_cached_teacher
    from streamproc.settings import default_cache_dir

    return find_cached_teacher(default_cache_dir()) is not None


def run_bench(cfg: BenchConfig, artifact: Path | None, out_dir: Path, command: str) -> BenchResults:
    """Run every contender through every profile; write and return the results."""
    from tqdm import tqdm

    from streamproc.model.runtime import load_classifier
    from streamproc.settings import default_cache_dir
    from streamproc.tools.bench import report, targets

    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    wall0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="streamproc-bench-"))
    texts, text_source = _texts(cfg.quick)
    artifact_dir, artifact_how = choose_artifact(artifact, quick=cfg.quick, scratch=scratch)
    student = load_classifier(artifact_dir, num_threads=cfg.model_threads or None)
    contenders = [CONTENDERS[name] for name in cfg.contenders]
    notes: list[str] = []
    if any(c.model == "teacher" for c in contenders) and not _teacher_available():
        contenders = [c for c in contenders if c.model != "teacher"]
        notes.append("teacher-per-event skipped: no fine-tuned teacher in the cache")
    click.echo("checking what else runs on this machine …", err=True)
    busy_before = busy_processes()
    # Environment's fields, gathered as the run goes (Environment keeps the JSON's key order).
    environment: dict[str, Any] = {
        "started_at": started_at,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_before": os.getloadavg(),
        "busy_processes_before": tuple(busy_before),
        "texts": f"{text_source} ({len(texts)} texts, cycled)",
        "artifact": str(artifact_dir),
        "artifact_choice": artifact_how,
        "student_version": student.version,
        "student_runtime": student.runtime,
        "model_threads": cfg.model_threads,
    }
    points: list[Point | SkippedPoint] = []
    broker_one_hop: list[Point] = []
    model_floors: dict[str, dict[int, FloorRow]] = {}
    plan = 2 + sum(len(cfg.rates) + (1 if cfg.burst else 0) for _ in contenders)
    with _broker() as (bootstrap, broker_pid), tqdm(total=plan, unit="pt", desc="bench") as bar:
        environment["broker"] = bootstrap if broker_pid is None else f"LocalBroker {bootstrap}"
        conf = {"bootstrap.servers": bootstrap}
        # Floor 1: the broker alone (produce → consume, one hop), at the lowest and highest rate.
        for rate in sorted({min(cfg.rates), max(cfg.rates)}):
            bar.set_description(f"broker alone @{rate:g}/s")
            point = run_point(
                conf, bootstrap, None, None, texts, cfg, rate=rate,
                duration_s=min(cfg.duration_s, 5.0), broker_pid=broker_pid,
            )  # fmt: skip
            broker_one_hop.append(point)
            bar.update(1)
        for contender in contenders:
            _run_contender(
                contender, cfg, conf, bootstrap, broker_pid, texts, artifact_dir, scratch,
                points, bar,
            )  # fmt: skip
    # Floor 2: model time alone, in this process with the worker's thread count, machine quiet.
    bar_sizes = {1, 64, 256}
    for p in points:
        if isinstance(p, Point) and p.contender == "adaptive" and p.batch.event_p50 is not None:
            bar_sizes.add(int(p.batch.event_p50))
    model_floors["model_student"] = model_floor(student, texts, sorted(bar_sizes))
    model_floors["model_student_idle_gaps"] = model_floor(
        student, texts, [1, 4], idle_gap_s=IDLE_GAP_S
    )
    if any(c.model == "student" and c.runtime == "torch" for c in contenders):
        eager = load_classifier(artifact_dir, num_threads=cfg.model_threads, runtime="torch")
        model_floors["model_student_torch"] = model_floor(eager, texts, sorted(bar_sizes))
    if any(c.model == "teacher" for c in contenders):
        from streamproc.compress.teacher_model import load_teacher_classifier

        teacher = load_teacher_classifier(default_cache_dir(), student.labels)
        model_floors["model_teacher"] = model_floor(teacher, texts, [1, 16])
        environment["teacher_version"] = teacher.version
    environment["load_avg_after"] = os.getloadavg()
    environment["wall_s"] = round(time.monotonic() - wall0, 1)
    results = BenchResults(
        command=command,
        argv=tuple(sys.argv),
        config=dataclasses.asdict(cfg),
        contenders={c.name: dataclasses.asdict(c) for c in contenders},
        environment=Environment(**environment),
        notes=tuple(notes),
        floors=Floors(broker_one_hop=tuple(broker_one_hop), **model_floors),
        points=tuple(points),
    )
    results = dataclasses.replace(results, targets=tuple(targets.bench_verdicts(results)))
    report.write_reports(results, out_dir)
    shutil.rmtree(scratch, ignore_errors=True)  # worker logs and test artifact; kept on failure
    return results


def _run_contender(
    contender: Contender,
    cfg: BenchConfig,
    conf: dict[str, Any],
    bootstrap: str,
    broker_pid: int | None,
    texts: Sequence[str],
    artifact_dir: Path,
    scratch: Path,
    points: list[Point | SkippedPoint],
    bar: Any,
) -> None:
    from streamproc.settings import default_cache_dir

    worker_config = {
        "model": contender.model,
        "artifact": str(artifact_dir),
        "cache_dir": str(default_cache_dir()),
        "model_threads": contender.model_threads or cfg.model_threads,
        "runtime": contender.runtime,
        "event_loop": contender.event_loop,
        "switch_interval_s": contender.switch_interval_s or cfg.switch_interval_s,
        "isolation": contender.isolation,
    }
    log_path = scratch / f"worker-{contender.name}.log"
    worker: BenchWorker | None = None

    def fresh_worker() -> BenchWorker:
        nonlocal worker
        if worker is not None:
            worker.close(kill=True)
        bar.set_description(f"{contender.name}: loading model")
        worker = BenchWorker(worker_config, log_path)
        return worker

    saturated_at: float | None = None
    try:
        for rate in sorted(cfg.rates):
            if saturated_at is not None:
                bar.update(1)
                continue
            if worker is None:
                fresh_worker()
            bar.set_description(f"{contender.name} @{rate:g}/s")
            assert worker is not None
            point = run_point(
                conf, bootstrap, worker, contender, texts, cfg, rate=rate,
                duration_s=max(cfg.duration_s, cfg.min_events / rate), broker_pid=broker_pid,
            )  # fmt: skip
            point = dataclasses.replace(point, model_version=worker.ready.get("version"))
            points.append(point)
            bar.set_postfix_str(_postfix(point))
            bar.update(1)
            if not point.stopped_cleanly:
                worker.close(kill=True)
                worker = None
            if point.saturated:
                saturated_at = rate
        if cfg.burst:
            if saturated_at is not None and saturated_at <= cfg.burst_rate:
                points.append(
                    SkippedPoint(
                        contender=contender.name,
                        skipped=f"saturated at {saturated_at:g}/s ≤ the burst's steady "
                        f"{cfg.burst_rate:g}/s: it could never drain the backlog",
                    )
                )
            else:
                if worker is None:
                    fresh_worker()
                assert worker is not None
                bar.set_description(f"{contender.name} burst {cfg.burst}")
                point = run_point(
                    conf, bootstrap, worker, contender, texts, cfg, rate=cfg.burst_rate,
                    duration_s=cfg.burst_duration_s, burst=cfg.burst, broker_pid=broker_pid,
                )  # fmt: skip
                points.append(point)
                bar.set_postfix_str(_postfix(point))
                if not point.stopped_cleanly:
                    worker.close(kill=True)
                    worker = None
            bar.update(1)
    finally:
        if worker is not None:
            worker.close()


def _postfix(point: Point) -> str:
    p99 = point.latency_ms.p99
    return (
        f"{point.contender} {point.offered_eps:g}/s: "
        f"{point.throughput_eps:.0f} ev/s, p99 {float('nan') if p99 is None else p99:.0f} ms"
        + (" SATURATED" if point.saturated else "")
    )


# --- the command ---------------------------------------------------------------------------------
def _floats(value: str | None) -> tuple[float, ...] | None:
    if not value:
        return None
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--rates {value!r}: give numbers separated by commas") from None
    if not rates or min(rates) <= 0:
        raise ConfigError("--rates: every rate must be > 0")
    return rates


def _canonical_command(params: dict[str, Any]) -> str:
    """The command line that reproduces this run (options as given, in a stable order)."""
    args = ["streamproc", "bench"]
    if params["quick"]:
        args.append("--quick")
    for name in ("artifact", "out", "rates", "contenders", "duration", "burst", "burst_rate"):
        if params.get(name) is not None:
            args += [f"--{name.replace('_', '-')}", str(params[name])]
    for name in ("model_threads", "switch_interval"):
        if params.get(name) is not None:
            args += [f"--{name.replace('_', '-')}", str(params[name])]
    from streamproc.settings import load_settings

    prefix = ""
    if "bootstrap_servers" in load_settings().model_fields_set:
        prefix = "STREAMPROC_BOOTSTRAP_SERVERS=… "
    return prefix + shlex.join(args)


@click.command("bench")
@click.option(
    "--quick", is_flag=True, help="CI-sized: 2 rates, small burst, student only (< 5 min)."
)
@click.option(
    "--artifact",
    type=click.Path(path_type=Path),
    default=None,
    help="Student artifact dir or builtin:trec. Default: STREAMPROC_MODEL_DIR/CURRENT, else "
    "builtin:trec "
    "(--quick: a small test artifact).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("streamproc-results/bench"),
    show_default=True,
    help="Report directory (`make bench` writes the repository's docs/results/bench).",
)
@click.option("--rates", default=None, help="Offered rates for the sweep, e.g. 50,200,1000.")
@click.option(
    "--contenders",
    default=None,
    help=f"Comma-separated subset of: {', '.join(CONTENDERS)}.",
)
@click.option("--duration", type=click.FloatRange(min=1), default=None, help="Seconds per point.")
@click.option("--burst", type=click.IntRange(min=0), default=None, help="Burst backlog (0: none).")
@click.option("--burst-rate", type=click.FloatRange(min=1), default=None, help="Steady load, ev/s.")
@click.option(
    "--model-threads",
    type=click.IntRange(min=1),
    default=None,
    help="[1] intra-op threads of the model runtime in each worker",
)
@click.option(
    "--switch-interval",
    type=click.FloatRange(min=1e-5),
    default=None,
    help="Experiment: the worker process's GIL switch interval, s (Python's default: 0.005).",
)
def bench(
    quick: bool,
    artifact: Path | None,
    out: Path,
    rates: str | None,
    contenders: str | None,
    duration: float | None,
    burst: int | None,
    burst_rate: float | None,
    model_threads: int | None,
    switch_interval: float | None,
) -> None:
    """Latency/throughput of per-event, fixed and adaptive batching against a real broker."""
    from streamproc.settings import load_settings

    params = dict(click.get_current_context().params)
    names = tuple(n.strip() for n in contenders.split(",")) if contenders else None
    if names:
        unknown = [n for n in names if n not in CONTENDERS]
        if unknown:
            raise ConfigError(f"--contenders: unknown {unknown}; choose from {list(CONTENDERS)}")
    settings = load_settings()
    cfg = BenchConfig(
        rates=_floats(rates) or (QUICK_RATES if quick else FULL_RATES),
        contenders=names or (QUICK_CONTENDERS if quick else tuple(CONTENDERS)),
        duration_s=duration or (3.0 if quick else 8.0),
        burst=burst if burst is not None else (1000 if quick else 10_000),
        burst_rate=burst_rate or (100.0 if quick else 200.0),
        burst_duration_s=4.0 if quick else 12.0,
        burst_at_s=1.0 if quick else 2.0,
        burst_max_drain_s=20.0 if quick else 45.0,
        drain_s=30.0 if quick else 8.0,
        partitions=settings.input_partitions,
        # One model thread: the other core serves the broker, Faust's loop and the load generator.
        model_threads=model_threads or 1,
        latency_target_ms=settings.latency_target_ms,
        quick=quick,
        min_events=0 if quick else 1000,  # a p99 over fewer than 1,000 events is one outlier
        switch_interval_s=switch_interval,
    )
    out_dir = out
    command = _canonical_command(params)
    results = run_bench(cfg, artifact, out_dir, command)
    from streamproc.tools.bench.report import summary_lines

    for line in summary_lines(results):
        click.echo(line)
    click.echo(f"results: {out_dir / 'bench.json'}, {out_dir / 'bench.md'}, plots in {out_dir}")
