"""The group leader assigns while the input topic is missing from its metadata; then it is there.

A broker restarted after a crash answers metadata without its topics for a moment; a leader
that assigns then ("Ignoring missing topic") gives every member nothing. aiokafka refreshes the
metadata of a consumer that owns no partition only every 5 minutes, so the group sat idle (the
fault matrix's SIGKILL-broker cells, now and then). A worker that subscribes to an input topic
that does not exist yet, on a broker that does not auto-create topics, is in that state every
time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from streamproc.broker import LocalBroker, free_port
from streamproc.kafka import ensure_topics
from streamproc.settings import Settings, load_settings
from tests.helpers import WorkerProcess, committed_offsets, produce_payloads, text_events

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """No auto-creation: a topic exists only once the test creates it."""
    broker = LocalBroker(
        data_dir=tmp_path_factory.mktemp("strict-kafka"),
        server_properties={"auto.create.topics.enable": "false"},
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(remove_data=True)


def _committed_total(settings: Settings) -> int:
    try:
        return sum(max(0, offset) for offset in committed_offsets(settings).values())
    except KafkaException:  # e.g. NOT_COORDINATOR while a fresh broker loads its offsets
        return 0


def _readiness_reason(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(json.loads(response.read())["reason"])
    except urllib.error.HTTPError as exc:
        return str(json.loads(exc.read())["reason"])
    except OSError:  # not listening yet
        return None


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _settings_without_input_topic(broker: LocalBroker, unique: str) -> Settings:
    settings = load_settings(
        bootstrap_servers=broker.bootstrap_servers,
        app_id=f"app-{unique}",
        input_topic=f"in-{unique}",
        output_topic=f"out-{unique}",
        dead_letter_topic=f"dlq-{unique}",
        input_partitions=2,
        web_port=free_port(),
    )
    ensure_topics(
        settings.confluent_config(), {settings.output_topic: 2, settings.dead_letter_topic: 2}
    )
    return settings


def test_worker_consumes_an_input_topic_that_appears_after_it_joined(
    strict_broker: LocalBroker, unique: str, tmp_path: Path
) -> None:
    settings = _settings_without_input_topic(strict_broker, unique)
    readyz = f"http://127.0.0.1:{settings.web_port}/readyz"
    worker = WorkerProcess(
        settings, name="w", log_dir=tmp_path, env={"FAKE_NO_DECLARE": "1", "FAKE_WEB": "1"}
    )
    try:
        # The worker joined as the group's leader and assigned nothing.
        assert _wait(lambda: "Ignoring missing topic" in worker.log_tail(400), 60), (
            worker.log_tail()
        )
        assert _wait(lambda: _readiness_reason(readyz) == "topic_missing", 30), worker.log_tail()
        ensure_topics(settings.confluent_config(), {settings.input_topic: 2})
        produce_payloads(settings, text_events(40))
        # aiokafka alone would see the topic at its next periodic refresh, 5 min away.
        assert _wait(lambda: _committed_total(settings) >= 40, 30), worker.log_tail()
        assert _wait(lambda: _readiness_reason(readyz) == "ok", 10), _readiness_reason(readyz)
        assert worker.proc.poll() is None
    finally:
        worker.stop()


def test_the_leader_re_reads_metadata_that_lacks_the_topic_before_it_assigns(
    strict_broker: LocalBroker, unique: str, tmp_path: Path
) -> None:
    # As after a broker crash: the leader's metadata lacks a topic the broker has. Its periodic
    # re-read is pushed out of the way: only the re-read before assigning can save the group.
    settings = _settings_without_input_topic(strict_broker, unique)
    env = {"FAKE_NO_DECLARE": "1", "FAKE_MISSING_TOPIC_REFRESH_S": "600"}
    leader = WorkerProcess(settings, name="leader", log_dir=tmp_path, env=env)
    try:
        assert _wait(lambda: "Ignoring missing topic" in leader.log_tail(400), 60), (
            leader.log_tail()
        )
        ensure_topics(settings.confluent_config(), {settings.input_topic: 2})
        produce_payloads(settings, text_events(40))
        # A second member's join makes the leader assign again, with the metadata it holds.
        joiner = WorkerProcess(settings, name="joiner", log_dir=tmp_path, env=env)
        try:
            assert _wait(lambda: _committed_total(settings) >= 40, 45), leader.log_tail()
        finally:
            joiner.stop()
    finally:
        leader.stop()
