"""A record whose header key is not UTF-8 (legal in Kafka: keys are bytes on the wire; aiokafka
decodes them as str) must end in a dead letter, never stall or crash-loop the group.

Produced with kcat: confluent-kafka's Python client writes ``str(key)`` for a bytes header key
(``"b'\\xff'"``), so it cannot produce one."""

from __future__ import annotations

import shutil
import subprocess
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

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]


def test_a_header_key_that_is_not_utf8_is_dead_lettered(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: `make install-tools` (Debian: apt-get install kcat)")
    settings = make_settings(kafka_bootstrap, unique, partitions=1, session_timeout_s=6)
    produce_payloads(settings, text_events(10, prefix="before"))
    bad_value = b'{"id": "bad-header", "text": "hello"}'
    kcat = ["kcat", "-P", "-b", kafka_bootstrap, "-t", settings.input_topic, "-k", "k"]
    subprocess.run([*kcat, "-H", b"\xff\xfekey=v"], input=bad_value + b"\n", check=True, timeout=30)
    produce_payloads(settings, text_events(10, prefix="after"))
    predictions = LiveCollector(settings, settings.output_topic, unique=unique)
    dead = LiveCollector(settings, settings.dead_letter_topic, unique=unique)
    worker = WorkerProcess(settings, name="header", log_dir=tmp_path)
    try:
        expected = {f"before-{i}" for i in range(10)} | {f"after-{i}" for i in range(10)}
        assert predictions.wait_for_ids(expected, 60), worker.log_tail(60)
        assert dead.wait_for(lambda c: c.count() >= 1, 30), worker.log_tail(60)
        assert worker.proc.poll() is None, "the worker kept running"
    finally:
        worker.stop()
        predictions.stop()
        dead.stop()
    assert "bad-header" not in predictions.ids()
    [record] = dead.records
    assert record.headers["streamproc-reason"] == b"invalid_header"
    assert record.headers["streamproc-source-offset"] == b"10"
    assert record.value == bad_value
    assert record.headers["\\xff\\xfekey"] == b"v", "the key kept, its bytes escaped"
    assert committed_offsets(settings)[0] == 21
