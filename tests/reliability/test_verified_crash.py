"""A worker SIGKILLed mid-stream and restarted, judged offset by offset by ``streamproc verify``."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from streamproc.settings import Settings
from tests.helpers import WorkerProcess, make_settings, produce_payloads
from tests.verification import committed_total, judge, mixed_events, wait_until_committed_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]

# ~1,500 events/s at most: the stream outlasts the first worker's first seconds.
COST = {"FAKE_COST_S": "0.005", "FAKE_COST_PER_ITEM_S": "0.0005"}


def _feed(settings: Settings, events: list[tuple[bytes, bytes]]) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(events), 500):
            produce_payloads(settings, events[start : start + 500])
            time.sleep(0.3)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_killed_mid_stream_and_restarted_loses_no_offset(
    kafka_bootstrap: str, unique: str, tmp_path: Path, guarantee: str
) -> None:
    n = 6000
    settings = make_settings(
        kafka_bootstrap,
        unique,
        session_timeout_s=6,
        commit_interval_s=0.5,
        processing_guarantee=guarantee,
    )
    feeder = _feed(settings, mixed_events(n))  # every 10th event invalid: dead-lettered
    worker = WorkerProcess(settings, name="killed", log_dir=tmp_path, env=COST)
    try:
        assert _wait(lambda: committed_total(settings) >= n // 3, 120), worker.log_tail()
        worker.signal(signal.SIGKILL)  # batches in inference and in flight, a commit pending
        worker.wait(30)
        at_kill = committed_total(settings)
        worker = WorkerProcess(settings, name="restarted", log_dir=tmp_path, env=COST)
        feeder.join(60)
        assert wait_until_committed_to_end(settings, 120), worker.log_tail()
    finally:
        worker.stop()
    verdict = judge(settings)
    print(f"\n{guarantee}: killed at {at_kill}/{n} committed; {verdict.summary()}")
    assert at_kill < 0.9 * n, "the kill landed mid-stream"
    assert verdict.holds, verdict.violations
    assert verdict.inputs == n
    assert verdict.lost == verdict.pending == 0, "every input offset has an outcome"
    if guarantee == "exactly_once":
        assert verdict.duplicated == 0
        assert (verdict.predictions, verdict.dead_letters) == (n - n // 10, n // 10)
    else:
        assert verdict.predictions + verdict.dead_letters == n + verdict.duplicated
