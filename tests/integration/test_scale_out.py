"""Two workers in one consumer group share 4 partitions; one stops mid-stream; nothing is lost."""

from __future__ import annotations

import collections
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
