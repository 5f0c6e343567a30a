"""As a user follows the README: `streamproc worker` first, topics created later by a producer.

A consumer group subscribed to a topic that does not exist is assigned nothing and only notices
the topic at its next metadata refresh (minutes), so the worker creates its input topic itself.
The producer here sends no ``ts``: latency then starts from the Kafka record timestamp. The
worker runs as a worker-only install does: with torch and matplotlib unimportable, serving the
ONNX artifact.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from streamproc.model.versions import publish_artifact
from streamproc.settings import load_settings
from tests.helpers import LiveCollector, WorkerProcess, produce_payloads

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_worker_started_before_its_input_topic_exists_consumes_it(
    kafka_bootstrap: str, unique: str, tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir = tmp_path / "models"
    publish_artifact(model_artifacts["sentiment-v1"], model_dir)
    settings = load_settings(  # nothing created: no input, output or dead-letter topic
        bootstrap_servers=kafka_bootstrap,
        app_id=f"app-{unique}",
        input_topic=f"in-{unique}",
        output_topic=f"out-{unique}",
        dead_letter_topic=f"dlq-{unique}",
        input_partitions=3,
        model_dir=model_dir,
    )
    admin = AdminClient(settings.confluent_config())
    assert settings.input_topic not in admin.list_topics(timeout=10).topics
    blocked = tmp_path / "worker-only"  # what the worker image leaves out
    for package in ("torch", "matplotlib"):
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(
            f"raise ImportError('{package} is not installed here')\n"
        )
    worker = WorkerProcess(
        settings,
        name="first",
        log_dir=tmp_path,
        real_model=True,
        env={"PYTHONPATH": str(blocked)},
    )
    collector = None
    try:
        deadline = time.monotonic() + 60
        topics: dict = {}
        while time.monotonic() < deadline:
            topics = admin.list_topics(timeout=10).topics
            if settings.input_topic in topics and settings.output_topic in topics:
                break
            time.sleep(0.2)
        assert settings.input_topic in topics, worker.log_tail()
        assert len(topics[settings.input_topic].partitions) == 3
        collector = LiveCollector(settings, settings.output_topic, unique=unique)
        events = [
            (None, orjson.dumps({"id": f"n-{i}", "text": f"a fine film number {i}"}))
            for i in range(60)
        ]
        produce_payloads(settings, events)
        expected = {f"n-{i}" for i in range(60)}
        assert collector.wait_for_ids(expected, 60), worker.log_tail()
    finally:
        worker.stop()
        if collector is not None:
            collector.stop()
    assert "serving model sentiment-v1 (runtime onnxruntime)" in worker.log_tail(400)
    outputs = [orjson.loads(r.value or b"{}") for r in collector.records]
    assert all(o["ts"] is None and o["latency_from"] == "kafka_timestamp" for o in outputs)
    assert all(0 <= o["latency_ms"] < 60_000 for o in outputs)
