"""``streamproc bench``: end-to-end latency and throughput of batching policies, real broker.

One run, one broker, one model, one machine for every contender::

    load generator ──▶ input topic ──▶ worker process (contender) ──▶ output topic ──▶ collector
    (bench thread)                     streamproc.tools.bench_worker                 (bench thread)

Contenders: per-event with the fp32 teacher; per-event, take(64, 50 ms), take(256, 200 ms) and
adaptive batching with the compressed student; and a pass-through worker (no model) as the floor
of Kafka + Faust + pipeline. Every contender × load point gets fresh topics, a fresh consumer
group, a fresh Faust app and a fresh batching policy, is warmed up with a few events, then
measured for a bounded time. Load profiles: a sweep of constant rates (a contender's sweep stops
at its first saturated rate: delivered < 0.9 × offered, undelivered events, or p99 above
``EXPLODED_P99_MS``) and a burst (a backlog of events arriving at once on top of steady load).

Floors, measured in the same run: the broker alone (produce → consume, one hop, no worker), the
pass-through worker (two hops through Faust), and model time alone (``predict_batch`` at batch 1
and at the sizes the batched contenders used).

Reports: ``bench.json`` (everything, with the command line), ``bench.md`` (tables, targets,
distance from floors), PNG plots, and ``README-snippet.md`` (headline table + plot + command).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import click

from streamproc.errors import ConfigError, StreamprocError
from streamproc.kafka import ensure_topics
from streamproc.stream.simulation import percentile
from streamproc.tools.bench_load import (
    LoadGenerator,
    Outcome,
    ResultCollector,
    busy_processes,
    cpu_sample,
    cpu_usage,
)
from streamproc.tools.served_model import choose_artifact

__all__ = ["CONTENDERS", "EXPLODED_P99_MS", "Contender", "bench", "run_bench"]

#: A p99 above this means the contender has stopped keeping up (10x the default 100 ms target).
EXPLODED_P99_MS = 1000.0


@dataclass(frozen=True)
class Contender:
    name: str
    model: str  # student | teacher | passthrough
    policy: str  # adaptive | fixed:SIZE:WINDOW_S
    description: str
    ingress: str = "batched"  # batched | stream (Faust's per-event stream: the old path)
    model_threads: int | None = None  # None: the run's --model-threads
    runtime: str = "auto"  # auto (what the artifact names) | onnxruntime | torch
    event_loop: str = "asyncio"  # asyncio | uvloop
    switch_interval_s: float | None = None  # None: the run's --switch-interval
    egress: str = "librdkafka"  # librdkafka | faust (STREAMPROC_EGRESS: the producer of outputs)
    isolation: str = "process"  # process | thread (STREAMPROC_MODEL_ISOLATION)


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender("passthrough", "passthrough", "adaptive", "floor: worker with no model"),
        Contender(
            "passthrough-stream",
            "passthrough",
            "adaptive",
            "no model, Faust's per-event stream ingress (before batched ingress)",
            ingress="stream",
        ),
        Contender(
            "passthrough-faust-egress",
            "passthrough",
            "adaptive",
            "no model, outputs through Faust's aiokafka producer (before librdkafka egress)",
            egress="faust",
        ),
        Contender("adaptive", "student", "adaptive", "adaptive batching, student"),
        Contender(
            "adaptive-thread",
            "student",
            "adaptive",
            "adaptive batching, student in the worker's inference thread (the old way)",
            isolation="thread",
        ),
        Contender(
            "adaptive-faust-egress",
            "student",
            "adaptive",
            "adaptive batching, student, outputs through Faust's aiokafka producer",
            egress="faust",
        ),
        Contender(
            "adaptive-stream",
            "student",
            "adaptive",
            "adaptive batching, student, Faust's per-event stream ingress",
            ingress="stream",
        ),
        Contender(
            "adaptive-t2",
            "student",
            "adaptive",
            "adaptive batching, student, 2 model threads",
            model_threads=2,
        ),
        Contender(
            "adaptive-torch",
            "student",
            "adaptive",
            "adaptive batching, student in eager PyTorch (the runtime before ONNX Runtime)",
            runtime="torch",
        ),
        Contender(
            "adaptive-uvloop",
            "student",
            "adaptive",
            "adaptive batching, student, uvloop event loop",
            event_loop="uvloop",
        ),
        Contender(
            "adaptive-si1ms",
            "student",
            "adaptive",
            "adaptive batching, student, GIL switch interval 1 ms (Python's default: 5 ms)",
            switch_interval_s=0.001,
        ),
        Contender("take64", "student", "fixed:64:0.05", "take(64, within=50 ms), student"),
        Contender("take256", "student", "fixed:256:0.2", "take(256, within=200 ms), student"),
        Contender("per-event", "student", "fixed:1:0", "per-event, student"),
        Contender("teacher-per-event", "teacher", "fixed:1:0", "per-event, fp32 teacher"),
    )
}
FIXED_POLICIES = ("per-event", "take64", "take256")  # what "the best fixed policy" ranges over

_FULL_RATES = (25, 50, 100, 250, 500, 1000, 1500, 2000, 3000, 4500, 6000, 8000)
_QUICK_RATES = (50, 250)
_QUICK_CONTENDERS = ("passthrough", "adaptive", "take64", "per-event")
_WARMUP_EVENTS = 32


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


# --- the worker process --------------------------------------------------------------------------
class BenchWorker:
    """A ``bench_worker`` child serving one contender's model, driven by JSON lines."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamproc.tools.bench_worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._lines: Queue[str] = Queue()
        threading.Thread(target=self._read, name="bench-worker-reader", daemon=True).start()
        self.ready = self._reply(timeout_s=180.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except Empty:
            raise StreamprocError(
                f"bench worker silent for {timeout_s:.0f}s{self._tail()}"
            ) from None
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise StreamprocError(f"bench worker: {reply.get('error')}{self._tail()}")
        return reply

    def request(self, cmd: str, timeout_s: float = 90.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise StreamprocError(f"bench worker exited ({self.proc.returncode}){self._tail()}")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout_s)

    def close(self, *, kill: bool = False) -> None:
        """``exit`` politely; ``kill=True`` when it still holds a backlog it would drain first."""
        if self.proc.poll() is None and not kill:
            with contextlib.suppress(Exception):
                self.request("exit", timeout_s=60.0)
                self.proc.wait(30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")[-1500:]
            return f"\n--- {self.log_path} (tail) ---\n{text}"
        return ""


# --- one load point ------------------------------------------------------------------------------
def _lat_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 50, presorted=True), 2),
        "p95": round(percentile(ordered, 95, presorted=True), 2),
        "p99": round(percentile(ordered, 99, presorted=True), 2),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
    }


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


def _batch_summary(sizes: list[int]) -> dict[str, float]:
    """Batch sizes as events saw them (event-weighted: the batch a typical event ran in)."""
    if not sizes:
        return {}
    ordered = sorted(sizes)
    return {
        "event_p50": ordered[len(ordered) // 2],
        "event_mean": round(sum(ordered) / len(ordered), 1),
        "max": ordered[-1],
        "batches_est": round(sum(1.0 / s for s in ordered if s > 0)),
    }


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
) -> dict[str, Any]:
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
        load.warm_up(_WARMUP_EVENTS)
        _wait(lambda: collector.count("w-") >= _WARMUP_EVENTS, 120, "warm-up events")
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
            return len(collector.outcomes) - _WARMUP_EVENTS

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
    lat = _lat_summary(latencies)
    result: dict[str, Any] = {
        "contender": contender.name if contender else "broker",
        "profile": "burst" if burst else "rate",
        "offered_eps": rate,
        "offered_achieved_eps": round(offered_achieved, 1),
        "measured_s": round(end_wall - t_measure, 2),
        "sent": load.sent,
        "delivered": delivered_all,
        "undelivered": load.sent - delivered_all,
        "ramp": {"seconds": ramp_s, "events": len(ramp), "latency_ms": _lat_summary(ramp)},
        "duplicates": collector.duplicates,
        "throughput_eps": round(throughput, 1),
        "latency_ms": lat,
        "worker_latency_ms": _lat_summary(worker_lat),
        # Where in the point the tail lives: a slow start or a pause shows as one bad second.
        "p99_by_second_ms": _p99_by_second(outcomes),
        "batch": _batch_summary([o.batch_size for o in outcomes if o.batch_size]),
        "cpu": cpu_usage(cpu0, cpu1),
        "errors": collector.errors[:5],
        "stopped_cleanly": stopped_cleanly,
    }
    work = {k: counters1.get(k, 0.0) - counters0.get(k, 0.0) for k in counters1}
    if work:
        wall = max(1e-9, end_wall - t_measure)
        result["model"] = {
            "batches": int(work["batches"]),
            "busy_fraction": round(work["inference_s"] / wall, 3),
            "ms_per_event": round(1000 * work["inference_s"] / max(1.0, work["events"]), 3),
            # The call as the pipeline waits for it: hand-off to the model's thread or process,
            # the model, and the answer's way back.
            "call_ms_per_event": round(1000 * work["call_s"] / max(1.0, work["events"]), 3),
        }
        model_cpu = result["cpu"].get("model_process_cpu_s")
        if model_cpu is not None:  # a model process: its CPU time (serving loop included)
            result["model"]["cpu_ms_per_event"] = round(
                1000 * model_cpu / max(1.0, work["events"]), 3
            )
    worker_cores = result["cpu"].get("worker_cores")
    if worker_cores is not None and outcomes:
        result["cpu"]["worker_ms_per_event"] = round(
            1000 * worker_cores * (end_wall - t_measure) / len(outcomes), 3
        )
    if burst:
        burst_outcomes = [o for k, o in collector.outcomes.items() if k.startswith("b-")]
        first_burst = load.burst_sent_ms[0] if load.burst_sent_ms else None
        result["burst"] = {
            "events": burst,
            "at_s": cfg.burst_at_s,
            "steady_eps": rate,
            "peak_lag": max((lag for _, lag in lag_series), default=0),
            "drained": len(burst_outcomes) >= burst,
            "drain_s": (
                round((max(o.received_ms for o in burst_outcomes) - first_burst) / 1000.0, 2)
                if first_burst is not None and len(burst_outcomes) >= burst
                else None
            ),
            "burst_delivered": len(burst_outcomes),
        }
        step = max(1, len(lag_series) // 600)
        result["lag_series"] = lag_series[::step]
    result["saturated"], result["saturation_reason"] = _saturation(result)
    return result


def _saturation(point: dict[str, Any]) -> tuple[bool, str]:
    if point["profile"] != "rate":
        return False, ""
    offered = point["offered_achieved_eps"] or point["offered_eps"]
    if point["undelivered"] > 0:
        return True, f"{point['undelivered']} events undelivered at the cut-off"
    if point["throughput_eps"] < 0.9 * offered:
        return True, f"delivered {point['throughput_eps']:.0f}/s < 0.9 × offered {offered:.0f}/s"
    p99 = point["latency_ms"].get("p99", 0.0)
    if p99 > EXPLODED_P99_MS:
        return True, f"p99 {p99:.0f} ms > {EXPLODED_P99_MS:.0f} ms"
    return False, ""


#: The model-alone floor with this idle time before each call (a worker at low rates).
IDLE_GAP_S = 0.002


# --- floors: model time alone --------------------------------------------------------------------
def model_floor(
    model: Any, texts: Sequence[str], sizes: Sequence[int], *, idle_gap_s: float = 0.0
) -> dict[str, Any]:
    """Median ``predict_batch`` seconds per batch size (real texts, warmed, ≥ 5 repetitions).

    ``idle_gap_s``: sleep that long before each call, as a worker at low rates idles between
    batches (its caches go cold: a different floor from back-to-back calls)."""
    out: dict[str, Any] = {}
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
        out[str(size)] = {
            "batch_ms": round(median_s * 1000, 3),
            "per_event_ms": round(median_s * 1000 / size, 4),
            "ceiling_eps": round(size / median_s, 1),
            "reps": k,
        }
    return out


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


def run_bench(
    cfg: BenchConfig, artifact: Path | None, out_dir: Path, command: str
) -> dict[str, Any]:
    """Run every contender through every profile; write and return the results."""
    from tqdm import tqdm

    from streamproc.model.runtime import load_classifier
    from streamproc.settings import default_cache_dir
    from streamproc.tools import bench_report

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
    environment: dict[str, Any] = {
        "started_at": started_at,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_before": os.getloadavg(),
        "busy_processes_before": busy_before,
        "texts": f"{text_source} ({len(texts)} texts, cycled)",
        "artifact": str(artifact_dir),
        "artifact_choice": artifact_how,
        "student_version": student.version,
        "student_runtime": student.runtime,
        "model_threads": cfg.model_threads,
    }
    points: list[dict[str, Any]] = []
    floors: dict[str, Any] = {}
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
            floors.setdefault("broker_one_hop", []).append(point)
            bar.update(1)
        for contender in contenders:
            _run_contender(
                contender, cfg, conf, bootstrap, broker_pid, texts, artifact_dir, scratch,
                points, bar,
            )  # fmt: skip
    # Floor 2: model time alone, in this process with the worker's thread count, machine quiet.
    bar_sizes = {1, 64, 256}
    for p in points:
        if p["contender"] == "adaptive" and p["batch"]:
            bar_sizes.add(int(p["batch"]["event_p50"]))
    floors["model_student"] = model_floor(student, texts, sorted(bar_sizes))
    floors["model_student_idle_gaps"] = model_floor(student, texts, [1, 4], idle_gap_s=IDLE_GAP_S)
    if any(c.model == "student" and c.runtime == "torch" for c in contenders):
        eager = load_classifier(artifact_dir, num_threads=cfg.model_threads, runtime="torch")
        floors["model_student_torch"] = model_floor(eager, texts, sorted(bar_sizes))
    if any(c.model == "teacher" for c in contenders):
        from streamproc.compress.teacher_model import load_teacher_classifier

        teacher = load_teacher_classifier(default_cache_dir(), student.labels)
        floors["model_teacher"] = model_floor(teacher, texts, [1, 16])
        environment["teacher_version"] = teacher.version
    environment["load_avg_after"] = os.getloadavg()
    environment["wall_s"] = round(time.monotonic() - wall0, 1)
    results = {
        "command": command,
        "argv": sys.argv,
        "config": {k: v for k, v in cfg.__dict__.items()},
        "contenders": {c.name: c.__dict__ for c in contenders},
        "environment": environment,
        "notes": notes,
        "floors": floors,
        "points": points,
    }
    results["targets"] = bench_report.evaluate_targets(results)
    bench_report.write_reports(results, out_dir)
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
    points: list[dict[str, Any]],
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
            point["model_version"] = worker.ready.get("version")
            points.append(point)
            bar.set_postfix_str(_postfix(point))
            bar.update(1)
            if not point["stopped_cleanly"]:
                worker.close(kill=True)
                worker = None
            if point["saturated"]:
                saturated_at = rate
        if cfg.burst:
            if saturated_at is not None and saturated_at <= cfg.burst_rate:
                points.append(
                    {
                        "contender": contender.name,
                        "profile": "burst",
                        "skipped": f"saturated at {saturated_at:g}/s ≤ the burst's steady "
                        f"{cfg.burst_rate:g}/s: it could never drain the backlog",
                    }
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
                if not point["stopped_cleanly"]:
                    worker.close(kill=True)
                    worker = None
            bar.update(1)
    finally:
        if worker is not None:
            worker.close()


def _postfix(point: dict[str, Any]) -> str:
    lat = point.get("latency_ms") or {}
    return (
        f"{point['contender']} {point['offered_eps']:g}/s: "
        f"{point['throughput_eps']:.0f} ev/s, p99 {lat.get('p99', float('nan')):.0f} ms"
        + (" SATURATED" if point.get("saturated") else "")
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
        rates=_floats(rates) or (_QUICK_RATES if quick else _FULL_RATES),
        contenders=names or (_QUICK_CONTENDERS if quick else tuple(CONTENDERS)),
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
    from streamproc.tools.bench_report import summary_lines

    for line in summary_lines(results):
        click.echo(line)
    click.echo(f"results: {out_dir / 'bench.json'}, {out_dir / 'bench.md'}, plots in {out_dir}")
