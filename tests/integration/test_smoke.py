"""End to end against the real broker: topics, confluent-kafka producer, the Faust worker, back."""

from __future__ import annotations

import time

import orjson
import pytest

from streamproc.kafka import consume_count, ensure_topics, make_producer
from streamproc.settings import load_settings
from streamproc.stream.app import create_worker
from streamproc.testing import FakeClassifier, running_worker

pytestmark = pytest.mark.kafka


def test_every_event_comes_back_exactly_once(kafka_conf: dict[str, str], unique: str) -> None:
    settings = load_settings(
        bootstrap_servers=kafka_conf["bootstrap.servers"],
        app_id=f"smoke-{unique}",
        input_topic=f"in-{unique}",
        output_topic=f"out-{unique}",
        dead_letter_topic=f"dlq-{unique}",
        input_partitions=2,
        latency_target_ms=200,
    )
    ensure_topics(
        kafka_conf,
        {settings.input_topic: 2, settings.output_topic: 2, settings.dead_letter_topic: 1},
    )
    model = FakeClassifier()
    texts = {f"id-{i}": f"event number {i} says hello" for i in range(200)}
    with running_worker(lambda: create_worker(settings, model=model, web_enabled=False)):
        producer = make_producer(kafka_conf)
        now_ms = time.time() * 1000
        for event_id, text in texts.items():
            value = orjson.dumps({"id": event_id, "text": text, "ts": now_ms})
            producer.produce(settings.input_topic, key=event_id.encode(), value=value)
        assert producer.flush(30) == 0
        records = consume_count(
            kafka_conf, settings.output_topic, len(texts), group_id=f"check-{unique}", timeout_s=90
        )

    outputs = [orjson.loads(r.value) for r in records]
    ids = [o["id"] for o in outputs]
    assert sorted(ids) == sorted(texts), "every id exactly once"
    for record, out in zip(records, outputs, strict=True):
        assert record.key == out["id"].encode()
        assert out["label"] == model.expected_label(texts[out["id"]])
        assert out["model_version"] == "fake-1"
        assert out["latency_ms"] >= 0
        assert 1 <= out["batch_size"] <= settings.max_batch_size
