"""The at_least_once egress producer (librdkafka): its configuration, and what a record it cannot
deliver or cannot send looks like to the pipeline. No broker: a closed port stands for one that
is away."""

from __future__ import annotations

import asyncio
import socket

import pytest
from confluent_kafka import KafkaError

from streamproc.errors import RecordTooLarge
from streamproc.settings import Settings
from streamproc.stream.egress import DeliveryError, LibrdkafkaPublisher, producer_config
from streamproc.stream.publish_errors import PublishErrorKind, classify_publish_error


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_publisher(
    extra: dict[str, object], *, publish_timeout_s: float
) -> LibrdkafkaPublisher:
    """A publisher whose broker is a closed port (outputs to ``out``, dead letters to ``dlq``)."""
    connection = {"bootstrap.servers": f"127.0.0.1:{_closed_port()}", **extra}
    return LibrdkafkaPublisher(
        producer_config(connection, publish_timeout_s=publish_timeout_s, client_id="test"),
        output_topic="out",
        dead_letter_topic="dlq",
    )


def test_producer_config_keeps_the_guarantees_and_lets_the_user_override_tuning() -> None:
    settings = Settings(
        bootstrap_servers="kafka:9092",
        kafka_extra_config={"linger.ms": 7, "compression.type": "lz4"},
        publish_timeout_s=12.5,
    )
    conf = producer_config(settings.confluent_config(), publish_timeout_s=12.5, client_id="w")
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["partitioner"] == "murmur2_random"  # the Java client's key -> partition
    assert conf["message.timeout.ms"] == 12_500  # unacknowledged this long: the publish timeout
    assert conf["bootstrap.servers"] == "kafka:9092"
    assert conf["linger.ms"] == 7 and conf["compression.type"] == "lz4"  # the user's extras win
    assert conf["client.id"] == "w"


def test_a_record_the_broker_never_acknowledges_fails_with_a_retriable_timeout() -> None:
    async def scenario() -> BaseException | None:
        publisher = _unreachable_publisher({"log_level": 0}, publish_timeout_s=0.5)
        try:
            future = await publisher.send_prediction(b"k", b"{}", None, [("h", b"v")])
            await asyncio.wait_for(asyncio.gather(future, return_exceptions=True), 10)
            return future.exception()  # type: ignore[attr-defined,no-any-return]
        finally:
            await publisher.close(timeout_s=0.1)

    error = asyncio.run(scenario())
    assert isinstance(error, DeliveryError)
    assert error.error.code() == KafkaError._MSG_TIMED_OUT
    # The pipeline retries it until STREAMPROC_PUBLISH_TIMEOUT_S after its first send, then stops.
    assert classify_publish_error(error) is PublishErrorKind.RETRY


def test_a_record_over_the_client_size_limit_is_refused_at_once_as_too_large() -> None:
    async def scenario() -> None:
        publisher = _unreachable_publisher({"message.max.bytes": 1000}, publish_timeout_s=1)
        try:
            with pytest.raises(RecordTooLarge, match="dlq"):
                await publisher.send_dead_letter(None, b"x" * 5000, None, [])
        finally:
            await publisher.close(timeout_s=0.1)

    asyncio.run(scenario())
