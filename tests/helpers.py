"""Helpers shared by the integration and reliability tests (real broker, unique names)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from streamproc.kafka import ConsumedRecord, consume, ensure_topics, make_producer
from streamproc.settings import Settings, load_settings


def make_settings(bootstrap: str, unique: str, *, partitions: int = 4, **overrides: Any) -> Settings:
    """Settings with this test's own topics and consumer group; the topics are created."""
    settings = load_settings(
        bootstrap_servers=bootstrap,
        app_id=f"app-{unique}",
        input_topic=f"in-{unique}",
        output_topic=f"out-{unique}",
        dead_letter_topic=f"dlq-{unique}",
        input_partitions=partitions,
        **overrides,
    )
    ensure_topics(settings.confluent_config(), {
        settings.input_topic: partitions, settings.output_topic: partitions,
        settings.dead_letter_topic: 1,
    })  # fmt: skip
    return settings


def produce_payloads(settings: Settings, payloads: Sequence[tuple[bytes | None, bytes]],
                     *, partition_of: Any = None) -> None:  # fmt: skip
    """Send raw (key, value) payloads; ``partition_of(i)`` pins record i to a partition."""
    producer = make_producer(settings.confluent_config())
    for i, (key, value) in enumerate(payloads):
        kwargs = {} if partition_of is None else {"partition": partition_of(i)}
        while True:
            try:
                producer.produce(settings.input_topic, key=key, value=value, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def text_events(n: int, *, prefix: str = "e", texts: Sequence[str] | None = None
                ) -> list[tuple[bytes, bytes]]:  # fmt: skip
    """``n`` good events with ids ``prefix-i``, a per-key sequence number and a send time."""
    now = time.time() * 1000.0
    out = []
    for i in range(n):
        text = texts[i % len(texts)] if texts else f"event {i}: what is the capital of country {i % 97}?"
        key = f"key-{i % 64}".encode()
        out.append((key, orjson.dumps({"id": f"{prefix}-{i}", "text": text, "ts": now, "seq": i})))
    return out


def collect(settings: Settings, topic: str, count: int, *, unique: str,
            timeout_s: float = 180.0, idle_s: float | None = None) -> list[ConsumedRecord]:  # fmt: skip
    """Read ``topic`` from the beginning until ``count`` records (or the timeout)."""
    return list(consume(
        settings.confluent_config(), [topic], group_id=f"collect-{unique}-{time.monotonic_ns()}",
        stop=lambda seen: len(seen) >= count, timeout_s=timeout_s, idle_s=idle_s,
    ))  # fmt: skip


def per_key_sequences(records: Sequence[ConsumedRecord], seq_of: dict[str, int]) -> dict[bytes, list[int]]:
    """For each output key, the input sequence numbers in output order."""
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        out = orjson.loads(record.value or b"")
        sequences[record.key or b""].append(seq_of[out["id"]])
    return sequences
