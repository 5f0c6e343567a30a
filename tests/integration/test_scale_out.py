"""Two workers in one consumer group share 4 partitions; one stops mid-stream; nothing is lost."""

from __future__ import annotations

import collections
import signal
import threading
from pathlib import Path

import orjson
import pytest

from tests.helpers import (
    WorkerProcess,
    collect,
    collect_ids,
    make_settings,
    produce_payloads,
    text_events,
)
from tests.verification import judge, wait_until_committed_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_one_of_two_workers_stops_mid_stream_and_every_id_is_predicted(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, session_timeout_s=6)
    events = text_events(4000)
    cost = {"FAKE_COST_S": "0.004", "FAKE_COST_PER_ITEM_S": "0.0003"}
    workers = [WorkerProcess(settings, name=f"w{i}", log_dir=tmp_path, env=cost) for i in range(2)]
    try:
        feeder = threading.Thread(
            target=lambda: [
                produce_payloads(settings, events[i : i + 400]) or __import__("time").sleep(0.25)
                for i in range(0, len(events), 400)
            ]
        )
        feeder.start()
        first = collect(settings, settings.output_topic, 1200, unique=unique, timeout_s=120)
        assert len(first) >= 1200, workers[0].log_tail()
        workers[0].stop()  # SIGTERM mid-stream: graceful leave, its partitions move
        assert workers[0].proc.returncode == 0, workers[0].log_tail()
        feeder.join()
        records = collect_ids(settings, {f"e-{i}" for i in range(4000)}, unique=unique)
        assert wait_until_committed_to_end(settings, 60), workers[1].log_tail()
    finally:
        for worker in workers:
            worker.stop()
    verdict = judge(settings)

    ids = collections.Counter(orjson.loads(r.value)["id"] for r in records)
    missing = {f"e-{i}" for i in range(4000)} - set(ids)
    assert not missing, f"{len(missing)} ids lost; logs:\n{workers[1].log_tail()}"
    print(f"\n4000 events, 2 workers, one stopped mid-stream: {verdict.summary()}")
    # Offset by offset: nothing lost or left behind, each partition's outputs in input order
    # across the hand-over; a graceful leave (and the rebalance's wait for in-flight records)
    # commits what was published, so nothing is published twice.
    assert verdict.holds, verdict.violations
    assert verdict.lost == verdict.pending == 0 and verdict.inputs == 4000
    assert verdict.duplicated == 0, "a graceful hand-over re-does nothing"


def test_a_worker_stopping_while_another_joins_hands_over_without_redoing_work(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """SIGTERM lands while the worker holds seconds of buffered work, and a second worker joins
    during that drain: the group revokes the stopping worker's partitions mid-drain. It must
    settle and commit what it holds *in the revocation*, before the new generation hands the
    partitions over, or the newcomer re-does everything the leaver published (its final commit
    would come after the revocation and be discarded)."""
    settings = make_settings(kafka_bootstrap, unique, session_timeout_s=6)
    events = text_events(2000)
    # ~1 s per batch of 256: the 2,000 buffered events take several seconds to drain
    slow = {"FAKE_COST_S": "0.5", "FAKE_COST_PER_ITEM_S": "0.002"}
    leaver = WorkerProcess(settings, name="leaver", log_dir=tmp_path, env=slow)
    joiner: WorkerProcess | None = None
    try:
        produce_payloads(settings, events)
        first = collect(settings, settings.output_topic, 100, unique=unique, timeout_s=120)
        assert len(first) >= 100, leaver.log_tail()
        leaver.signal(signal.SIGTERM)
        joiner = WorkerProcess(settings, name="joiner", log_dir=tmp_path)
        assert leaver.wait(90) == 0, leaver.log_tail()
        records = collect_ids(settings, {f"e-{i}" for i in range(2000)}, unique=unique)
        assert wait_until_committed_to_end(settings, 60), joiner.log_tail()
    finally:
        for worker in (leaver, joiner):
            if worker is not None:
                worker.stop()
    verdict = judge(settings)
    print(f"\n2000 events, a leaver draining while a joiner joins: {verdict.summary()}")
    assert len({orjson.loads(r.value)["id"] for r in records}) == 2000
    assert verdict.holds, verdict.violations
    assert verdict.lost == verdict.pending == 0 and verdict.inputs == 2000
    assert verdict.duplicated == 0, f"the joiner re-did the leaver's work:\n{leaver.log_tail()}"
