"""The fault matrix: {SIGKILL, SIGTERM, SIGSTOP past the session timeout} × {a worker, the broker}
× {at_least_once, exactly_once}, each cell judged offset by offset by ``streamproc verify``.

A cell: two workers (a slow fake model: ~330 events/s each) consume a mixed stream (every 10th
event invalid) fed at ~1,000 events/s, so they work through a backlog; a third joins once 15 %
is committed; at a seeded point (30–50 % committed) the fault hits a seeded worker, or the
broker. SIGSTOP pauses the process past the session timeout, then wakes it (a zombie worker; a
broker whose clients all timed out). As Kubernetes would, a worker that exits is replaced. The
cell passes when every offset is committed and the verifier finds 0 lost, 0 pending, outputs in
order (and, exactly_once, 0 duplicated, no transaction left open). at_least_once cannot fence a
paused worker: its late outputs are counted as out of order, not failed.

Plus a seeded random schedule per guarantee: three faults in one stream, each kind, target and
moment (20–85 % committed) drawn from the seed, so what one fault leaves behind meets the next.

``make test`` runs the cells in ``CI_CELLS``; ``make test-faults`` (``--fault-matrix``) runs all
twelve and the two schedules and writes ``docs/results/faults/report.{md,json}``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamproc.broker import DEFAULT_KAFKA_VERSION, LocalBroker
from streamproc.settings import Settings
from tests.helpers import WorkerProcess, make_settings, produce_payloads
from tests.verification import committed_total, judge, mixed_events

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]

FAULTS = ("sigkill", "sigterm", "sigstop")
TARGETS = ("worker", "broker")
GUARANTEES = ("at_least_once", "exactly_once")
#: The cells ``make test`` runs (the rest need ``--fault-matrix``): a zombie worker under
#: exactly_once (~1.5 min). Not sigkill-broker: its stall (a leader assigning while its metadata
#: lacked the topic) showed only now and then; tests/reliability/test_missing_topic.py puts a
#: worker in that state every time. Its exactly_once cell still fails now and then (an open
#: defect: a duplicate or more after ProducerFenced / a crash on revocation; see the report).
CI_CELLS = {("sigstop", "worker", "exactly_once")}
SEED = 11
SCHEDULED_FAULTS = 3  # faults in the seeded random schedule
EVENTS = 6000
SESSION_TIMEOUT_S = 6.0
PAUSE_S = SESSION_TIMEOUT_S + 5.0  # SIGSTOP: long enough for the group to give up on it
# ~330 events/s a worker, the feed ~1,000/s: a backlog, so a fault hits workers mid-batch.
COST = {"FAKE_COST_S": "0.005", "FAKE_COST_PER_ITEM_S": "0.003"}
REPORT_DIR = Path(__file__).resolve().parents[2] / "docs" / "results" / "faults"

_results: list[CellResult] = []


@dataclass
class CellResult:
    fault: str
    target: str
    guarantee: str
    seed: int
    passed: bool = False
    wall_s: float = 0.0
    fault_at: int = 0  # committed input offsets when the fault hit
    recovered_s: float = 0.0  # from the fault until every offset was committed
    victim: str = ""
    replaced: list[str] = field(default_factory=list)  # "name (exit code)" of replaced workers
    verdict: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _cells() -> Iterator[Any]:
    for fault in FAULTS:
        for target in TARGETS:
            for guarantee in GUARANTEES:
                marks = [] if (fault, target, guarantee) in CI_CELLS else [pytest.mark.fault_matrix]
                yield pytest.param(
                    fault, target, guarantee, marks=marks, id=f"{fault}-{target}-{guarantee}"
                )


@pytest.fixture(scope="module")
def faulty_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own, which the broker cells kill, stop and pause."""
    broker = LocalBroker(data_dir=tmp_path_factory.mktemp("faulty-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop(remove_data=True)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    if request.config.getoption("--fault-matrix") and _results:
        _write_report(time.monotonic() - started)


@pytest.mark.parametrize(("fault", "target", "guarantee"), list(_cells()))
def test_fault_matrix_cell(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    unique: str,
    tmp_path: Path,
    fault: str,
    target: str,
    guarantee: str,
) -> None:
    index = [(f, t, g) for f in FAULTS for t in TARGETS for g in GUARANTEES].index(
        (fault, target, guarantee)
    )
    result = CellResult(fault, target, guarantee, seed=SEED + index)
    _results.append(result)
    broker = request.getfixturevalue("faulty_broker") if target == "broker" else None
    bootstrap = broker.bootstrap_servers if broker is not None else kafka_bootstrap
    rng = random.Random(result.seed)
    schedule = [(rng.uniform(0.3, 0.5), fault, target)]
    _run_judged(result, _Run(schedule, rng, bootstrap, broker, unique, tmp_path))


@pytest.mark.fault_matrix
@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_seeded_random_fault_schedule(
    request: pytest.FixtureRequest, unique: str, tmp_path: Path, guarantee: str
) -> None:
    """Several faults in one stream, each kind and target drawn at random (seeded): what one
    fault leaves behind (a fenced producer, a half-joined group, a replaced worker) meets the
    next one."""
    seed = SEED + 100 + GUARANTEES.index(guarantee)
    rng = random.Random(seed)
    schedule = sorted(
        (rng.uniform(0.2, 0.85), rng.choice(FAULTS), rng.choice(TARGETS))
        for _ in range(SCHEDULED_FAULTS)
    )
    plan = ", ".join(f"{fault} {target} @{at:.0%}" for at, fault, target in schedule)
    result = CellResult("random", plan, guarantee, seed=seed)
    _results.append(result)
    broker = request.getfixturevalue("faulty_broker")
    _run_judged(result, _Run(schedule, rng, broker.bootstrap_servers, broker, unique, tmp_path))


@dataclass
class _Run:
    """What one judged run needs: its faults ``(fraction committed, fault, target)`` in order,
    the seeded draws (victims), and where it runs."""

    schedule: list[tuple[float, str, str]]
    rng: random.Random
    bootstrap: str
    broker: LocalBroker | None
    unique: str
    tmp_path: Path


def _run_judged(result: CellResult, run: _Run) -> None:
    started = time.monotonic()
    try:
        _run_cell(result, run)
    except BaseException as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        result.wall_s = round(time.monotonic() - started, 1)
    print(f"\n{result.fault} {result.target} {result.guarantee}: {result.verdict.get('summary')}")
    assert result.passed, result.verdict.get("violations") or result.verdict


def _run_cell(result: CellResult, run: _Run) -> None:
    """Feed the stream, hit each fault of ``run.schedule`` in turn, wait until everything is
    committed (replacing exited workers), then judge."""
    schedule, rng, broker, tmp_path = run.schedule, run.rng, run.broker, run.tmp_path
    settings = make_settings(
        run.bootstrap,
        run.unique,
        session_timeout_s=SESSION_TIMEOUT_S,
        commit_interval_s=0.5,
        processing_guarantee=result.guarantee,
    )
    feeder = _feed(settings, mixed_events(EVENTS))
    workers = [_worker(settings, f"w{i}", tmp_path) for i in range(2)]
    try:
        assert _wait_committed(settings, 0.15 * EVENTS, 120, workers), workers[0].log_tail()
        workers.append(_worker(settings, "w2", tmp_path))  # joins mid-stream: a rebalance
        victims: list[str] = []
        for fraction, fault, target in schedule:
            _replace_exited(workers, settings, tmp_path, result)
            assert _wait_committed(settings, fraction * EVENTS, 120, workers), workers[0].log_tail()
            if not victims:
                result.fault_at = _committed(settings) or 0
                hit_at = time.monotonic()
            if target == "worker":
                # A worker can exit on its own meanwhile (exactly_once: fenced after a broker
                # fault); its replacement is the one hit. (Once reaped, its pid is gone.)
                _replace_exited(workers, settings, tmp_path, result)
                victim = rng.randrange(2)  # w0 or w1: surely a member owning partitions by now
                victims.append(workers[victim].name)
                _hit(fault, workers[victim].proc.pid)
                if fault != "sigstop":
                    workers[victim].wait(60)
            else:
                assert broker is not None
                victims.append("broker")
                _hit_broker(fault, broker)
        result.victim = ", ".join(victims)
        feeder.join(120)
        assert not feeder.is_alive(), "the feeder is stuck"
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            _replace_exited(workers, settings, tmp_path, result)
            if _all_committed(settings):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("not every offset was committed within 150 s")
        result.recovered_s = round(time.monotonic() - hit_at, 1)
    finally:
        _stop_all(workers)
    verdict = judge(settings, transaction_wait_s=30)
    result.verdict = {**verdict.to_dict(), "summary": verdict.summary()}
    if verdict.holds:  # a failed cell keeps its per-partition offsets (lost, duplicated)
        result.verdict.pop("partitions")
    exactly_once = result.guarantee == "exactly_once"
    # at_least_once has no fencing: a paused worker that wakes publishes what it had already
    # handed to its producer after the new owner's outputs. Out of order by design (counted in
    # the report); exactly_once fences it (ProducerFenced).
    unfenced = not exactly_once and any(
        fault == "sigstop" and target == "worker" for _, fault, target in schedule
    )
    violations = [v for v in verdict.violations if not (unfenced and v.startswith("out of order"))]
    result.passed = (
        not violations
        and verdict.inputs == EVENTS
        and verdict.lost == verdict.pending == 0
        and (not exactly_once or verdict.duplicated == 0)
    )


def _feed(settings: Settings, events: list[tuple[bytes, bytes]]) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(events), 300):
            produce_payloads(settings, events[start : start + 300])
            time.sleep(0.3)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _worker(settings: Settings, name: str, tmp_path: Path) -> WorkerProcess:
    return WorkerProcess(settings, name=name, log_dir=tmp_path, env=COST)


def _hit(fault: str, pid: int) -> None:
    if fault == "sigstop":
        os.kill(pid, signal.SIGSTOP)
        time.sleep(PAUSE_S)
        os.kill(pid, signal.SIGCONT)
    else:
        os.kill(pid, signal.SIGKILL if fault == "sigkill" else signal.SIGTERM)


def _hit_broker(fault: str, broker: LocalBroker) -> None:
    if fault == "sigstop":
        assert broker.pid is not None
        _hit(fault, broker.pid)
        return
    if fault == "sigkill":
        broker.kill()
    else:
        broker.stop(remove_data=False)
    time.sleep(3)
    broker.start()


def _committed(settings: Settings) -> int | None:
    try:
        return committed_total(settings)
    except Exception:  # the broker is away: ask again later
        return None


def _wait_committed(
    settings: Settings, target: float, timeout_s: float, workers: list[WorkerProcess]
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (_committed(settings) or 0) >= target:
            return True
        if all(w.proc.poll() is not None for w in workers):
            return False
        time.sleep(0.2)
    return False


def _all_committed(settings: Settings) -> bool:
    return (_committed(settings) or 0) >= EVENTS


def _replace_exited(
    workers: list[WorkerProcess], settings: Settings, tmp_path: Path, result: CellResult
) -> None:
    """What Kubernetes would do: a worker that exited is replaced by a fresh one."""
    for i, worker in enumerate(workers):
        code = worker.proc.poll()
        if code is not None:
            worker.wait(1)
            result.replaced.append(f"{worker.name} ({code})")
            workers[i] = _worker(settings, f"{worker.name}r", tmp_path)


def _stop_all(workers: list[WorkerProcess]) -> None:
    """SIGTERM them all at once (each drains and commits), then wait; SIGKILL stragglers."""
    for worker in workers:
        worker.signal(signal.SIGCONT)
        worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for worker in workers:
        try:
            worker.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.wait(10)


def _write_report(wall_s: float) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    cells = [asdict(r) for r in _results]
    doc = {
        "seed": SEED,
        "events_per_cell": EVENTS,
        "session_timeout_s": SESSION_TIMEOUT_S,
        "pause_s": PAUSE_S,
        "kafka": DEFAULT_KAFKA_VERSION,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cells_run": len(cells),
        "cells_passed": sum(r.passed for r in _results),
        "wall_s": round(wall_s, 1),
        "cells": cells,
    }
    (REPORT_DIR / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Fault matrix",
        "",
        f"`make test-faults`: {len(cells)} cells, {doc['cells_passed']} passed, "
        f"{wall_s / 60:.1f} min wall on {doc['machine']} (Kafka {DEFAULT_KAFKA_VERSION}). "
        f"Each cell: {EVENTS} events (every 10th invalid) fed at ~1,000/s to two workers of "
        "~330/s each (a backlog: faults hit them mid-batch), a third "
        "joining at 15 % committed, the fault at a seeded 30–50 %; SIGSTOP lasts "
        f"{PAUSE_S:g} s (session timeout {SESSION_TIMEOUT_S:g} s); exited workers are replaced. "
        "Judged by `streamproc verify` after every offset is committed. `random` rows: "
        f"{SCHEDULED_FAULTS} faults in one stream, each kind, target and moment (20–85 % "
        "committed) drawn from the seed. at_least_once cannot fence a paused (SIGSTOP) "
        "worker: when it wakes, outputs it had handed to its producer land after the new "
        "owner's, so those cells count out-of-order records without failing on them; "
        "exactly_once fences it.",
        "",
        "| fault | target | guarantee | pass | lost | duplicated | out of order | pending "
        "| dead letters | fault at | victim | replaced | recovered s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _results:
        v = r.verdict
        lines.append(
            f"| {r.fault} | {r.target} | {r.guarantee} | {'yes' if r.passed else '**no**'} "
            f"| {v.get('lost', '-')} | {v.get('duplicated', '-')} | {v.get('out_of_order', '-')} "
            f"| {v.get('pending', '-')} | {v.get('dead_letters', '-')} | {r.fault_at} "
            f"| {r.victim} | {', '.join(r.replaced) or '-'} | {r.recovered_s} | {r.wall_s} |"
        )
    problems = [r for r in _results if not r.passed]
    if problems:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"* {r.fault} {r.target} {r.guarantee}: "
            f"{r.error or '; '.join(r.verdict.get('violations', [])) or r.verdict.get('summary')}"
            for r in problems
        ]
    (REPORT_DIR / "report.md").write_text("\n".join(lines) + "\n")
