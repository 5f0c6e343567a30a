"""STREAMPROC_KAFKA_EXTRA_CONFIG / STREAMPROC_AIOKAFKA_*_EXTRA_CONFIG: validation and where the
extras end up (no broker: clients are built, never started)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import load_settings
from streamproc.stream.app import create_worker
from streamproc.stream.clients import ExtraConfigProducer
from streamproc.testing import FakeClassifier

CONSUMER = "STREAMPROC_AIOKAFKA_CONSUMER_EXTRA_CONFIG"
PRODUCER = "STREAMPROC_AIOKAFKA_PRODUCER_EXTRA_CONFIG"
LIBRDKAFKA = "STREAMPROC_KAFKA_EXTRA_CONFIG"


def _refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str, **overrides: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    message = str(info.value)
    assert name in message and "\n" not in message
    return message


def test_extras_are_read_as_json_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIBRDKAFKA, '{"client.id": "tools", "fetch.wait.max.ms": 50}')
    monkeypatch.setenv(CONSUMER, '{"client_id": "w", "fetch_min_bytes": 1024}')
    monkeypatch.setenv(PRODUCER, '{"linger_ms": 5, "compression_type": "gzip"}')
    settings = load_settings()
    assert settings.kafka_extra_config == {"client.id": "tools", "fetch.wait.max.ms": 50}
    assert settings.aiokafka_consumer_extra_config == {"client_id": "w", "fetch_min_bytes": 1024}
    assert settings.aiokafka_producer_extra_config == {"linger_ms": 5, "compression_type": "gzip"}
    # A worker process started with to_env() reads the same values back.
    for name in (LIBRDKAFKA, CONSUMER, PRODUCER):
        monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == settings


def test_defaults_are_empty_and_change_nothing() -> None:
    settings = load_settings()
    assert settings.kafka_extra_config == {}
    assert settings.confluent_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_librdkafka_extras_sit_between_the_connection_and_the_call_site() -> None:
    settings = load_settings(kafka_extra_config={"client.id": "tools", "socket.timeout.ms": 9000})
    conf = settings.confluent_config(**{"socket.timeout.ms": 1000})
    assert conf["client.id"] == "tools"
    assert conf["socket.timeout.ms"] == 1000  # the call site's own value wins
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{not json", "not JSON"),
        ('["client.id"]', "must be a JSON object"),
        ('{"group.id": "mine"}', "'group.id' is streamproc's to set"),
        ('{"enable.auto.commit": true}', "'enable.auto.commit' is streamproc's to set"),
        ('{"bootstrap.servers": "x:1"}', "STREAMPROC_BOOTSTRAP_SERVERS"),
        ('{"sasl.password": "hunter2"}', "'sasl.password' is streamproc's to set"),
        ('{"socket.timeout.ms": {"a": 1}}', "must be a string, number or boolean"),
        ('{"client.id": "x", "bogus.prop": 1}', "'bogus.prop' is not a librdkafka property"),
        ('{"socket.timeout.ms": "hunter2"}', "librdkafka refuses the value of 'socket.timeout.ms'"),
        ('{"acks": 1}', "in-sync replicas"),
        ('{"enable.idempotence": false}', "neither reorder nor duplicate"),
        ('{"message.timeout.ms": 1000}', "STREAMPROC_PUBLISH_TIMEOUT_S"),
        (
            '{"reconnect.backoff.ms": 5000, "reconnect.backoff.max.ms": 100}',
            "refuses these properties together",
        ),
    ],
)
def test_refused_librdkafka_extras(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    message = _refusal(monkeypatch, LIBRDKAFKA, value)
    assert expected in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (CONSUMER, '{"max_pol_records": 10}', "'max_pol_records' is not a keyword"),
        (PRODUCER, '{"fetch_min_bytes": 1}', "'fetch_min_bytes' is not a keyword"),
        (CONSUMER, '{"group_id": "other"}', "STREAMPROC_APP_ID"),
        (CONSUMER, '{"enable_auto_commit": true}', "'enable_auto_commit' is streamproc's"),
        (CONSUMER, '{"session_timeout_ms": 10000}', "STREAMPROC_SESSION_TIMEOUT_S"),
        (CONSUMER, '{"sasl_plain_password": "hunter2"}', "'sasl_plain_password' is streamproc's"),
        (PRODUCER, '{"transactional_id": "t"}', "'transactional_id' is streamproc's"),
        (PRODUCER, '{"acks": 1}', "in-sync replicas"),
    ],
)
def test_refused_aiokafka_extras(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    message = _refusal(monkeypatch, name, value)
    assert expected in message
    assert "hunter2" not in message


def test_exactly_once_owns_the_isolation_level_and_idempotence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    isolation = '{"isolation_level": "read_uncommitted"}'
    idempotence = '{"enable_idempotence": false}'
    # at_least_once: the user's call (e.g. read_committed behind a transactional producer).
    monkeypatch.setenv(CONSUMER, isolation)
    monkeypatch.setenv(PRODUCER, idempotence)
    assert load_settings().aiokafka_consumer_extra_config == {"isolation_level": "read_uncommitted"}
    monkeypatch.delenv(PRODUCER)
    message = _refusal(monkeypatch, CONSUMER, isolation, processing_guarantee="exactly_once")
    assert "read_committed" in message
    monkeypatch.delenv(CONSUMER)
    message = _refusal(monkeypatch, PRODUCER, idempotence, processing_guarantee="exactly_once")
    assert "idempotent" in message


def test_secrets_in_extras_are_not_in_the_settings_repr_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(
        kafka_extra_config={"ssl.key.password": "hunter2"},
        aiokafka_producer_extra_config={"client_id": "hunter3"},
    )
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings: %s / %r", settings, settings)
    assert "hunter2" not in repr(settings) and "hunter3" not in str(settings)
    assert "hunter2" not in caplog.text and "hunter3" not in caplog.text


def test_worker_clients_are_built_with_the_aiokafka_extras() -> None:
    settings = load_settings(
        app_id="extras-test",
        aiokafka_consumer_extra_config={"client_id": "consumer-x", "max_poll_records": 7},
        aiokafka_producer_extra_config={"client_id": "producer-x", "max_request_size": 123456},
    )
    worker = create_worker(settings, model=FakeClassifier(), web_enabled=False)

    async def build() -> tuple[object, object]:
        producer = worker.app.producer
        assert isinstance(producer, ExtraConfigProducer)
        consumer = worker.app.consumer
        thread = consumer._thread  # type: ignore[attr-defined]
        built = producer._new_producer(), thread._create_worker_consumer(worker.app.transport)
        for client in built:
            await client.stop()  # never started: releases what the constructor made
        return built

    aio_producer, aio_consumer = asyncio.run(build())
    assert aio_producer.client._client_id == "producer-x"  # type: ignore[attr-defined]
    assert aio_producer._max_request_size == 123456  # type: ignore[attr-defined]
    assert aio_consumer._client._client_id == "consumer-x"  # type: ignore[attr-defined]
    assert aio_consumer._max_poll_records == 7  # type: ignore[attr-defined]
    # What the extras do not name stays Faust's/streamproc's.
    assert aio_consumer._group_id == "extras-test"  # type: ignore[attr-defined]
    assert aio_consumer._enable_auto_commit is False  # type: ignore[attr-defined]


def test_without_extras_the_clients_are_fausts_own() -> None:
    settings = load_settings(app_id="plain-test")
    worker = create_worker(settings, model=FakeClassifier(), web_enabled=False)

    async def build() -> object:
        thread = worker.app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(worker.app.transport)
        await consumer.stop()
        return consumer

    aio_consumer = asyncio.run(build())
    assert aio_consumer._client._client_id.startswith("faust-")  # type: ignore[attr-defined]
    assert aio_consumer._max_poll_records == 512  # type: ignore[attr-defined]
