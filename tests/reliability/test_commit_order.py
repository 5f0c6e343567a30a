"""A dead letter must never let a commit pass valid events still being processed.

The regression: in at_least_once mode a malformed record used to be dead-lettered (and acked) at
once, ahead of valid records of its partition still buffered or in inference. Faust 0.15.3's gap
check is skipped while the group has no committed offset (faust-streaming #606), so it committed
past them, and a crash at that moment lost them. The pipeline now owns one ordered watermark per
partition and the consumer commits nothing at or above it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import (
    LiveCollector,
    WorkerProcess,
    committed_offsets,
    make_settings,
    produce_payloads,
    text_events,
)

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_dead_letter_never_commits_past_valid_events_in_flight(
    kafka_bootstrap: str, unique: str, tmp_path: Path, guarantee: str
) -> None:
    n_valid = 50
    # A fresh group (no committed offset yet), one partition, a short commit period.
    settings = make_settings(
        kafka_bootstrap,
        unique,
        partitions=1,
        commit_interval_s=0.2,
        session_timeout_s=6,  # the restart need not wait long for the killed member to expire
        processing_guarantee=guarantee,
    )
    produce_payloads(settings, [*text_events(n_valid), (b"bad", b"{not json")])
    # A slow model: a batch takes 10 s, so the valid events are still in inference (or buffered)
    # long after the bad record behind them has been read and handled.
    started = tmp_path / "first-batch-started"
    slow = WorkerProcess(
        settings,
        name="slow",
        log_dir=tmp_path,
        env={"FAKE_COST_S": "10", "FAKE_STARTED_FILE": str(started)},
    )
    try:
        slow.wait_for_file(started)
        time.sleep(2.0)  # ten commit periods: a commit past the valid events would have landed
        assert slow.proc.poll() is None, slow.log_tail()
    finally:
        slow.signal(signal.SIGKILL)  # mid-batch, no goodbye
        slow.wait(30)
    committed = committed_offsets(settings)[0]
    # Nothing was predicted yet, so nothing may be committed (the dead letter sits after them).
    assert committed <= 0, f"committed offset {committed} passed {n_valid} unpredicted events"

    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    again = WorkerProcess(settings, name="again", log_dir=tmp_path)
    try:
        expected = {f"e-{i}" for i in range(n_valid)}
        assert collector.wait_for_ids(expected, 120), again.log_tail()
        time.sleep(1.5)
    finally:
        again.stop()
        collector.stop()
    assert expected <= set(collector.ids()), "the valid events before the dead letter survived"
    assert committed_offsets(settings)[0] == n_valid + 1, "the restart committed everything"
