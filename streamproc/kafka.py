"""A thin layer over confluent-kafka for the CLI tools, benchmarks and tests.

The worker itself talks to Kafka through Faust (aiokafka); everything around it — creating
topics, producing load, tailing results — uses librdkafka, which moves hundreds of thousands of
small messages a second from one Python process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamproc.errors import BrokerError, ConfigError

__all__ = [
    "ConsumedRecord",
    "check_co_partitioning",
    "consume",
    "consume_count",
    "ensure_topics",
    "make_producer",
    "make_ready_producer",
    "partition_counts",
    "refused_everywhere",
    "require_reachable",
    "watermarks",
]


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int


def ensure_topics(
    conf: Mapping[str, Any],
    topics: Mapping[str, int],
    *,
    replication_factor: int = -1,
    timeout_s: float = 30.0,
) -> None:
    """Create the topics (name -> partition count) that do not exist yet; wait until visible.

    ``replication_factor`` -1 lets the broker apply its ``default.replication.factor``
    (CreateTopics v4+, brokers >= 2.4). A topic that exists already is used as it is, whatever
    its partition count."""
    admin = AdminClient(dict(conf))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerError(
            f"no Kafka broker answered at {conf.get('bootstrap.servers')} within "
            f"{timeout_s:.0f}s ({exc.args[0].str() if exc.args else exc})"
        ) from None
    wanted = {name: n for name, n in topics.items() if name not in existing}
    if wanted:
        new_topics = [
            NewTopic(name, num_partitions=n, replication_factor=replication_factor)
            for name, n in wanted.items()
        ]
        for name, future in admin.create_topics(new_topics, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(f"could not create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout_s).topics
        if all(
            name in metadata
            and not metadata[name].error
            and len(metadata[name].partitions) >= wanted.get(name, 1)
            for name in topics
        ):
            return
        time.sleep(0.2)
    raise BrokerError(f"topics {sorted(topics)} not visible after {timeout_s:.0f}s")


def refused_everywhere(bootstrap_servers: str, *, timeout_s: float = 2.0) -> str | None:
    """Why no bootstrap server can be reached, when that is certain; else None.

    Certain: every server's name does not resolve or its port refuses TCP connections. A server
    that accepts, or does not answer within ``timeout_s`` (filtered, slow), leaves it to the
    Kafka client to decide."""
    reasons = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:9092
        try:
            addresses = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:  # DNS temporarily failing: not certain
                return None
            reasons.append(f"{server.strip()}: cannot resolve {host}")
            continue
        for family, kind, proto, _, address in addresses:
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(timeout_s)
                    sock.connect(address)
                return None
            except ConnectionRefusedError:
                continue
            except OSError:
                return None
        reasons.append(f"{server.strip()}: connection refused")
    return "; ".join(reasons)


def require_reachable(bootstrap_servers: str) -> None:
    """Fail at once with one line when no broker can be there (for the CLI tools; a worker waits
    for its broker instead). Otherwise the Kafka clients' own timeouts apply."""
    reason = refused_everywhere(bootstrap_servers)
    if reason:
        raise BrokerError(f"no Kafka broker: {reason} (STREAMPROC_BOOTSTRAP_SERVERS)")


def partition_counts(
    conf: Mapping[str, Any], topics: Iterable[str], *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Topic -> partition count, for the topics that exist (missing ones are left out)."""
    admin = AdminClient(dict(conf))
    try:
        metadata = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise BrokerError(f"could not read topic metadata: {exc}") from None
    return {
        name: len(metadata[name].partitions)
        for name in topics
        if name in metadata and not metadata[name].error
    }


def check_co_partitioning(input_topic: tuple[str, int], outputs: Mapping[str, int]) -> None:
    """exactly_once: the outputs of input partition p go to partition p of every output topic
    (the transaction of p holds them with p's offsets), so each output needs at least as many
    partitions as the input. Raises :class:`ConfigError` naming the topics and counts."""
    name, count = input_topic
    short = {topic: n for topic, n in outputs.items() if n < count}
    if short:
        listed = ", ".join(f"{topic} has {n}" for topic, n in short.items())
        raise ConfigError(
            f"exactly_once publishes the outputs of input partition p to partition p of each "
            f"output topic, but the input topic {name} has {count} partitions and {listed}: "
            f"give every output topic at least {count} partitions "
            f"(kafka-topics --alter --partitions {count}), or use at_least_once"
        )


def stable_committed_offsets(
    conf: Mapping[str, Any],
    group: str,
    wanted: Mapping[str, list[int]],
    *,
    timeout_s: float = 10.0,
) -> dict[tuple[str, int], int | None]:
    """``group``'s committed offsets of ``wanted`` ({topic: partitions}) once pending
    transactional commits are settled: librdkafka's read_committed OffsetFetch sets
    ``require_stable`` (KIP-447), which aiokafka's cannot. None: nothing committed. Asking does
    not join the group. Raises KafkaException if the broker does not answer in time, or answers
    an error for a partition."""
    consumer = Consumer(
        {
            **dict(conf),
            "group.id": group,  # never subscribes: reads the group's offsets, never joins it
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    try:
        parts = [TopicPartition(t, p) for t, partitions in wanted.items() for p in partitions]
        answer = consumer.committed(parts, timeout=timeout_s)
    finally:
        consumer.close()
    for tp in answer:
        if tp.error:
            raise KafkaException(tp.error)
    return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in answer}


def make_producer(conf: Mapping[str, Any], **extra: Any) -> Producer:
    """A librdkafka producer tuned for throughput with low delay (idempotent, acks=all)."""
    return Producer(
        {
            "linger.ms": 2,
            "enable.idempotence": True,
            "acks": "all",
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 3,  # errors only: "coordinator load in progress" retries are routine
            **dict(conf),
            **extra,
        }
    )


def make_ready_producer(
    conf: Mapping[str, Any], topic: str, *, timeout_s: float = 10.0, **extra: Any
) -> Producer:
    """``make_producer``, returned once it can send to ``topic`` without waiting: it holds the
    topic's metadata and its idempotent producer id.

    A fresh librdkafka producer (2.16) drops its bootstrap connection as soon as it learns the
    broker's node id; when that happens before it asked for a producer id, it asks again only on
    a 500 ms timer. Events stamped and sent meanwhile wait that long: a stall that belongs to the
    sender's start, not to the pipeline, and that latency measurements must not see. librdkafka's
    statistics (every 50 ms) report the id's state. Past ``timeout_s`` (a broker that is down) the
    producer is returned as it is: its delivery timeout reports what it cannot send.
    """
    assigned = threading.Event()

    def on_stats(stats: str) -> None:
        if not assigned.is_set() and holds_producer_id(stats):
            assigned.set()

    producer = make_producer(conf, **{**extra, "statistics.interval.ms": 50, "stats_cb": on_stats})
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(KafkaException):
        producer.list_topics(topic, timeout=timeout_s)
    while not assigned.is_set() and time.monotonic() < deadline:
        producer.poll(0.01)  # serves the statistics callback
    return producer


def holds_producer_id(stats: str) -> bool:
    """Whether a librdkafka statistics report (JSON) shows a producer that needs no producer id
    before sending: an idempotent one that holds it, or one that is not idempotent."""
    idempotence = orjson.loads(stats).get("eos")
    return idempotence is None or idempotence.get("idemp_state") == "Assigned"


def consume(
    conf: Mapping[str, Any],
    topics: Iterable[str],
    *,
    group_id: str,
    stop: Callable[[list[ConsumedRecord]], bool] | None = None,
    timeout_s: float | None = 60.0,
    idle_s: float | None = None,
    from_beginning: bool = True,
) -> Generator[ConsumedRecord, None, None]:
    """Yield records until ``stop(seen)`` holds, ``timeout_s`` passes (None: never), or ``idle_s``
    of silence. Records are kept in ``seen`` only when there is a ``stop`` to look at them."""
    consumer = Consumer(
        {
            **dict(conf),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.partition.eof": False,
        }
    )
    consumer.subscribe(list(topics))
    seen: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout_s if timeout_s is not None else float("inf")
    last_record = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if stop is not None and stop(seen):
                return
            if idle_s is not None and time.monotonic() - last_record > idle_s:
                return
            # What is fetched already, at once; else wait for the next record. (consume() with a
            # timeout waits for all num_messages or the whole timeout: at 300 ev/s that held
            # every record ~100 ms, which the soak reported as worker latency.)
            batch = consumer.consume(num_messages=1000, timeout=0)
            if not batch:
                first = consumer.poll(0.2)
                batch = [first] if first is not None else []
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerError(f"consume failed: {error}")
                record = ConsumedRecord(
                    topic=str(msg.topic()),
                    partition=int(msg.partition() or 0),
                    offset=int(msg.offset() or 0),
                    key=_as_bytes(msg.key()),
                    value=_as_bytes(msg.value()),
                    headers=_headers(msg.headers()),
                    timestamp_ms=msg.timestamp()[1],
                )
                if stop is not None:
                    seen.append(record)
                last_record = time.monotonic()
                yield record
    finally:
        consumer.close()


def watermarks(
    conf: Mapping[str, Any], topic: str, *, timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """Partition -> (low, high) watermark offsets of ``topic`` now; {} for a topic that does not
    exist. What it holds is ``high - low`` records per partition; ``high`` is the log end."""
    consumer = Consumer(
        {**dict(conf), "group.id": "streamproc-watermarks", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in metadata.partitions
        }
    finally:
        consumer.close()


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _headers(raw: Any) -> dict[str, bytes]:
    return {str(key): _as_bytes(value) or b"" for key, value in (raw or [])}


def consume_count(
    conf: Mapping[str, Any], topic: str, count: int, *, group_id: str, timeout_s: float = 120.0
) -> list[ConsumedRecord]:
    """Read until ``count`` records arrived (or the timeout passed); returns what arrived."""
    return list(
        consume(
            conf,
            [topic],
            group_id=group_id,
            timeout_s=timeout_s,
            stop=lambda seen: len(seen) >= count,
        )
    )
