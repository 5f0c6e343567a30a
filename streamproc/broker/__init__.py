"""A real, local Apache Kafka broker for development, tests and the demo — no Docker needed.

Apache publishes the broker to Maven Central (``org.apache.kafka:kafka_2.13``). We resolve those
jars with Maven once into a cache, format KRaft storage and run a single-node combined
broker+controller on 127.0.0.1 with the machine's JDK::

    broker = LocalBroker()            # free ports, a temporary data directory
    broker.start()                    # returns once a client's metadata request succeeds
    broker.bootstrap_servers          # '127.0.0.1:PORT'
    broker.stop()                     # SIGTERM, then SIGKILL after a grace period

Where a Docker engine answers, :func:`kafka_for_tests` prefers testcontainers' ``KafkaContainer``.
From the shell: ``streamproc broker start|stop|status|fetch`` (:mod:`streamproc.broker.command`;
see ``deploy/kafka/README.md``). The jars: :mod:`~streamproc.broker.jars`; the broker process:
:mod:`~streamproc.broker.local`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from streamproc.broker.jars import DEFAULT_KAFKA_VERSION, ensure_kafka_jars
from streamproc.broker.local import LocalBroker, free_port
from streamproc.errors import BrokerError
from streamproc.settings import tool_environment

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "LocalBroker",
    "configured_or_local_broker",
    "ensure_kafka_jars",
    "free_port",
    "kafka_for_tests",
]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def configured_or_local_broker(settings: Any) -> Iterator[tuple[str, LocalBroker | None]]:
    """The cluster ``STREAMPROC_BOOTSTRAP_SERVERS`` names when it was set (``settings``, a
    :class:`~streamproc.settings.Settings`, knows), else a :class:`LocalBroker` started here and
    stopped on exit: ``(bootstrap servers, the local broker or None)``. What ``demo``, ``bench``
    and ``soak`` run against."""
    if "bootstrap_servers" in settings.model_fields_set:
        yield settings.bootstrap_servers, None
        return
    with LocalBroker() as broker:
        yield broker.bootstrap_servers, broker


@contextlib.contextmanager
def kafka_for_tests() -> Iterator[str]:
    """Yield bootstrap servers of a real broker for a test session.

    ``KAFKA_BOOTSTRAP_SERVERS`` if set → testcontainers ``KafkaContainer`` if a Docker engine
    answers → the Maven-fetched jar broker → :class:`BrokerError`. Never a mock, never a skip.
    """
    tools = tool_environment()
    if tools.test_bootstrap_servers:
        yield tools.test_bootstrap_servers
        return
    if tools.test_docker and _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    try:
        broker = LocalBroker(version=tools.kafka_version or DEFAULT_KAFKA_VERSION)
        broker.start()
    except BrokerError as exc:
        raise BrokerError(
            f"no Kafka broker for the tests: KAFKA_BOOTSTRAP_SERVERS is unset, no Docker engine "
            f"answers, and the local jar broker failed: {exc}"
        ) from exc
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()
