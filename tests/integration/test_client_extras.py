"""STREAMPROC_AIOKAFKA_CONSUMER_EXTRA_CONFIG reaches the worker's consumer: the broker reports the
client id it was given for the group's member (describe consumer groups)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.helpers import WorkerProcess, collect, make_settings, produce_payloads, text_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_consumer_extra_is_visible_broker_side(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    client_id = f"extras-{unique}"
    settings = make_settings(
        kafka_bootstrap,
        unique,
        partitions=2,
        aiokafka_consumer_extra_config={"client_id": client_id},
        kafka_extra_config={"client.id": f"tools-{unique}"},
    )
    worker = WorkerProcess(settings, name="worker", log_dir=tmp_path)
    try:
        produce_payloads(settings, text_events(10))
        assert len(collect(settings, settings.output_topic, 10, unique=unique, timeout_s=90)) == 10
        admin = AdminClient(settings.confluent_config())
        members: list = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not members:
            [future] = admin.describe_consumer_groups([settings.app_id]).values()
            members = future.result(timeout=10).members
            time.sleep(0.2)
        assert [member.client_id for member in members] == [client_id], worker.log_tail()
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.log_tail()
