"""The broker goes away mid-stream and comes back on the same data directory."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

from streamproc.broker import LocalBroker
from tests.helpers import LiveCollector, WorkerProcess, make_settings, produce_payloads, text_events
from tests.verification import judge, wait_until_committed_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]


def test_worker_reconnects_after_a_broker_restart_and_loses_nothing(
    unique: str, tmp_path: Path
) -> None:
    broker = LocalBroker(data_dir=tmp_path / "kafka")
    broker.start()
    try:
        settings = make_settings(broker.bootstrap_servers, unique, partitions=2)
        n = 4000
        events = text_events(n)
        collector = LiveCollector(settings, settings.output_topic, unique=unique)
        worker = WorkerProcess(
            settings,
            name="w",
            log_dir=tmp_path,
            env={"FAKE_COST_S": "0.003", "FAKE_COST_PER_ITEM_S": "0.0002"},
        )
        try:
            produce_payloads(settings, events[:2000])
            assert collector.wait_for(lambda c: c.count() >= 500, 120), worker.log_tail()
            broker.stop(remove_data=False)  # same ports, same data directory
            time.sleep(5)
            assert worker.proc.poll() is None, "the worker survives the broker's absence"
            broker.start()
            producer = threading.Thread(target=produce_payloads, args=(settings, events[2000:]))
            producer.start()
            producer.join(120)
            assert collector.wait_for_ids({f"e-{i}" for i in range(n)}, 240), worker.log_tail()
            assert wait_until_committed_to_end(settings, 60), worker.log_tail()
        finally:
            worker.stop()
            collector.stop()
        counts = collections.Counter(collector.ids())
        duplicates = sum(c - 1 for c in counts.values())
        verdict = judge(settings)
        print(f"\nbroker restarted mid-stream: {duplicates} duplicate ids; {verdict.summary()}")
        # Offset by offset: nothing lost, and the sends that failed while the broker was away
        # were retried in order (each output's last copy follows its input order).
        assert verdict.holds, verdict.violations
        assert verdict.lost == verdict.pending == 0 and verdict.inputs == n
        assert verdict.duplicated == duplicates, "the verifier counts what the ids show"
    finally:
        broker.stop(remove_data=True)
