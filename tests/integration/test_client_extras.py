"""Against a real broker: STREAMPROC_AIOKAFKA_CONSUMER_EXTRA_CONFIG reaches the worker's consumer
(the broker reports the client id it was given for the group's member), and an input's W3C trace
context comes out on its prediction (one worker run serves both)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from streamproc.kafka import make_producer
from tests.helpers import WorkerProcess, collect, make_settings, text_events

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
        producer = make_producer(settings.confluent_config())
        for i, (key, value) in enumerate(text_events(10)):
            headers = [("traceparent", _parent(i)), ("tracestate", b"k=v")] if i % 2 else None
            producer.produce(settings.input_topic, key=key, value=value, headers=headers)
        assert producer.flush(30) == 0
        outputs = collect(settings, settings.output_topic, 10, unique=unique, timeout_s=90)
        assert len(outputs) == 10, worker.log_tail()
        for record in outputs:
            i = int(orjson.loads(record.value or b"")["id"].removeprefix("e-"))
            trace = {k: v for k, v in record.headers.items() if k in ("traceparent", "tracestate")}
            assert trace == ({"traceparent": _parent(i), "tracestate": b"k=v"} if i % 2 else {})
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


def _parent(i: int) -> bytes:
    return b"00-%032x-%016x-01" % (0xFEED0000 + i, i + 1)
