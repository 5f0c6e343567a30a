"""Helpers shared by the integration and reliability tests (real broker, unique names)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streamproc.kafka import ConsumedRecord, consume, ensure_topics, make_producer, watermarks
from streamproc.settings import Settings, load_settings
from streamproc.tools.worker_process import WorkerProcess as BaseWorkerProcess


def make_settings(
    bootstrap: str, unique: str, *, partitions: int = 4, **overrides: Any
) -> Settings:
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
    ensure_topics(
        settings.confluent_config(),
        {
            settings.input_topic: partitions,
            settings.output_topic: partitions,
            settings.dead_letter_topic: partitions,
        },
    )
    return settings


def produce_payloads(
    settings: Settings, payloads: Sequence[tuple[bytes | None, bytes]], *, partition_of: Any = None
) -> None:
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


def text_events(
    n: int, *, prefix: str = "e", texts: Sequence[str] | None = None
) -> list[tuple[bytes, bytes]]:
    """``n`` good events with ids ``prefix-i``, a per-key sequence number and a send time."""
    now = time.time() * 1000.0
    out = []
    for i in range(n):
        text = (
            texts[i % len(texts)]
            if texts
            else f"event {i}: what is the capital of country {i % 97}?"
        )
        key = f"key-{i % 64}".encode()
        out.append((key, orjson.dumps({"id": f"{prefix}-{i}", "text": text, "ts": now, "seq": i})))
    return out


def collect(
    settings: Settings,
    topic: str,
    count: int,
    *,
    unique: str,
    timeout_s: float = 180.0,
    idle_s: float | None = None,
) -> list[ConsumedRecord]:
    """Read ``topic`` from the beginning until ``count`` records (or the timeout)."""
    return list(
        consume(
            settings.confluent_config(),
            [topic],
            group_id=f"collect-{unique}-{time.monotonic_ns()}",
            stop=lambda seen: len(seen) >= count,
            timeout_s=timeout_s,
            idle_s=idle_s,
        )
    )


def per_key_sequences(
    records: Sequence[ConsumedRecord], seq_of: dict[str, int]
) -> dict[bytes, list[int]]:
    """For each output key, the input sequence numbers in output order."""
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        out = orjson.loads(record.value or b"")
        sequences[record.key or b""].append(seq_of[out["id"]])
    return sequences


class WorkerProcess(BaseWorkerProcess):
    """A worker in its own process: ``tests.worker_proc`` (the fake model) or, with
    ``real_model``, ``streamproc worker``; its log is ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        log_dir: Any,
        real_model: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        super().__init__(
            settings,
            Path(log_dir) / f"{name}.log",
            module=("streamproc", "worker") if real_model else ("tests.worker_proc",),
            env=env,
            cwd=_ROOT,
        )

    def wait_for_file(self, path: Any, timeout_s: float = 60.0) -> None:
        """Wait until the worker creates ``path`` (e.g. ``FAKE_STARTED_FILE``); fail with its
        log's tail if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists(), self.log_tail()


_ROOT = Path(__file__).resolve().parents[1]


def collect_ids(
    settings: Settings,
    expected: set[str],
    *,
    unique: str,
    timeout_s: float = 180.0,
    settle_s: float = 3.0,
) -> list[ConsumedRecord]:
    """Read the output topic until every expected id arrived (duplicates included), then keep
    reading ``settle_s`` more seconds so late duplicates are counted too."""
    seen: set[str] = set()
    records: list[ConsumedRecord] = []
    deadline = None

    def done(_: list[ConsumedRecord]) -> bool:
        nonlocal deadline
        if deadline is None and expected <= seen:
            deadline = time.monotonic() + settle_s
        return deadline is not None and time.monotonic() >= deadline

    for record in consume(
        settings.confluent_config(),
        [settings.output_topic],
        group_id=f"ids-{unique}-{time.monotonic_ns()}",
        stop=done,
        timeout_s=timeout_s,
    ):
        records.append(record)
        seen.add(orjson.loads(record.value or b"{}").get("id", ""))
    return records


class LiveCollector:
    """Consumes a topic in a background thread while a test injects faults."""

    def __init__(
        self, settings: Settings, topic: str, *, unique: str, read_committed: bool = False
    ) -> None:
        import threading

        self.records: list[ConsumedRecord] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        conf = settings.confluent_config()
        if read_committed:  # see only records of committed transactions (exactly_once)
            conf["isolation.level"] = "read_committed"
        group = f"live-{unique}-{time.monotonic_ns()}"

        def run() -> None:
            for record in consume(conf, [topic], group_id=group, timeout_s=3600,
                                  stop=lambda _: self._stop.is_set()):  # fmt: skip
                with self._lock:
                    self.records.append(record)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def ids(self) -> list[str]:
        with self._lock:
            return [orjson.loads(r.value or b"{}").get("id", "") for r in self.records]

    def wait_for(self, predicate: Any, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return False

    def wait_for_ids(self, expected: set[str], timeout_s: float = 180.0) -> bool:
        return self.wait_for(lambda c: expected <= set(c.ids()), timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def committed_offsets(settings: Settings) -> dict[int, int]:
    """The consumer group's committed offset per input partition (-1001 = none yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.confluent_config(), "group.id": settings.app_id})
    try:
        parts = [TopicPartition(settings.input_topic, p) for p in range(settings.input_partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=30)}
    finally:
        consumer.close()


def topic_end_offsets(settings: Settings, *, timeout_s: float = 10.0) -> dict[int, int]:
    """The input topic's log-end offset per partition."""
    marks = watermarks(settings.confluent_config(), settings.input_topic, timeout_s=timeout_s)
    return {partition: high for partition, (_, high) in marks.items()}
