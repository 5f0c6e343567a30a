"""``streamproc verify`` against the real broker, on records written by hand: it must catch a loss,
a duplicate, an aborted transaction's records (invisible), a transaction left hanging and an
output of an aborted input record; and an exactly_once worker over transactional input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamproc.kafka import make_producer
from streamproc.settings import Settings
from tests.helpers import WorkerProcess, make_settings, produce_payloads, text_events
from tests.verification import judge, wait_until_committed_to_end

pytestmark = pytest.mark.kafka


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", "verify", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _source(settings: Settings, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("streamproc-source-topic", settings.input_topic.encode()),
        ("streamproc-source-partition", str(partition).encode()),
        ("streamproc-source-offset", str(offset).encode()),
    ]


def _publish(producer: Producer, settings: Settings, partition: int, offsets: list[int]) -> None:
    """Predictions for these input offsets, to the output partition of the same number."""
    for offset in offsets:
        producer.produce(
            settings.output_topic,
            key=b"k",
            value=b"{}",
            partition=partition,
            headers=_source(settings, partition, offset),
        )


def _commit(settings: Settings, offsets: dict[int, int]) -> None:
    consumer = Consumer({**settings.confluent_config(), "group.id": settings.app_id})
    try:
        tps = [TopicPartition(settings.input_topic, p, o) for p, o in offsets.items()]
        consumer.commit(offsets=tps, asynchronous=False)
    finally:
        consumer.close()


def _inputs(settings: Settings, per_partition: int) -> None:
    payloads = [(b"k", b"{}")] * (2 * per_partition)
    produce_payloads(settings, payloads, partition_of=lambda i: i % 2)


def test_verify_catches_a_loss_and_a_duplicate_and_passes_once_they_are_gone(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=2)
    _inputs(settings, 8)
    producer = make_producer(settings.confluent_config())
    _publish(producer, settings, 0, [0, 1, 2, 2, 3])  # 2 twice
    producer.produce(  # 4 was dead-lettered
        settings.dead_letter_topic, value=b"bad", partition=0, headers=_source(settings, 0, 4)
    )
    _publish(producer, settings, 1, list(range(8)))
    assert producer.flush(30) == 0
    _commit(settings, {0: 7, 1: 8})  # the group passed 5 and 6, which have no outcome

    done = _cli(settings, "--json")
    assert done.returncode == 1, done.stderr
    verdict = orjson.loads(done.stdout)
    assert (verdict["lost"], verdict["duplicated"], verdict["pending"]) == (2, 1, 1)
    assert verdict["partitions"][0]["lost_offsets"] == [5, 6]
    assert verdict["dead_letters"] == 1
    assert verdict["violations"] == ["lost: 2 committed input records were never published"]

    human = _cli(settings, "--guarantee", "exactly_once", "--transaction-wait", "2")
    assert human.returncode == 1, human.stderr
    assert "exactly_once VIOLATED" in human.stdout
    assert "lost offsets: 5, 6" in human.stdout
    assert "duplicated: 1 extra copies" in human.stdout

    _commit(settings, {0: 5, 1: 8})  # the group moves back: 5..7 are pending, not lost
    again = _cli(settings)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("at_least_once holds")


def test_exactly_once_reads_committed_transactions_only_and_flags_one_left_open(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(
        kafka_bootstrap, unique, partitions=2, processing_guarantee="exactly_once"
    )
    _inputs(settings, 5)
    group = Consumer({**settings.confluent_config(), "group.id": settings.app_id})
    producer = Producer(
        {**settings.confluent_config(), "transactional.id": f"tx-{unique}", "log_level": 3}
    )
    producer.init_transactions(30)

    def transaction(partition: int, offsets: list[int], *, commit: bool) -> None:
        producer.begin_transaction()
        _publish(producer, settings, partition, offsets)
        if commit:  # the outputs and the input offsets after them, atomically
            position = [TopicPartition(settings.input_topic, partition, offsets[-1] + 1)]
            producer.send_offsets_to_transaction(position, group.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            producer.abort_transaction(30)

    try:
        transaction(0, [0, 1, 2], commit=True)
        transaction(0, [3, 4], commit=False)  # a crash: aborted, invisible to read_committed
        transaction(0, [3, 4], commit=True)
        transaction(1, [0, 1, 2, 3, 4], commit=True)
        verdict = judge(settings, transaction_wait_s=2)
        assert verdict.holds, verdict.summary()
        assert (verdict.predictions, verdict.duplicated, verdict.pending) == (10, 0, 0)

        producer.begin_transaction()  # left open: read_committed readers stop before it
        _publish(producer, settings, 1, [4])
        producer.flush(30)
        hung = _cli(settings, "--json", "--transaction-wait", "2")
        assert hung.returncode == 1, hung.stderr
        doc = orjson.loads(hung.stdout)
        assert doc["hanging"] == [f"{settings.output_topic}[1]"]
        assert doc["duplicated"] == 0, "the open transaction's record is not read"
        producer.abort_transaction(30)
    finally:
        group.close()


def _transactional_inputs(
    settings: Settings, unique: str, events: list[tuple[bytes, bytes]], *, size: int
) -> int:
    """``events`` in transactions of ``size`` records, alternating between the two input
    partitions; every other pair of transactions is aborted. Then one plain record per partition,
    so the group's committed offset can reach each partition's end. Returns the records a
    read_committed reader sees."""
    producer = Producer(
        {**settings.confluent_config(), "transactional.id": f"in-{unique}", "log_level": 3}
    )
    producer.init_transactions(30)
    visible = 0
    for n, start in enumerate(range(0, len(events), size)):
        producer.begin_transaction()
        for key, value in events[start : start + size]:
            producer.produce(settings.input_topic, key=key, value=value, partition=n % 2)
        producer.flush(30)
        if (n // 2) % 2:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            visible += len(events[start : start + size])
    produce_payloads(settings, text_events(2, prefix="tail"), partition_of=lambda i: i)
    return visible + 2


def test_verify_flags_an_output_of_an_aborted_input_record(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(
        kafka_bootstrap, unique, partitions=2, processing_guarantee="exactly_once"
    )
    # Partition 0: records 0-1 (committed, marker 2), 3-4 (aborted, marker 5), 6-7 (committed,
    # marker 8), then the plain record 9.
    _transactional_inputs(settings, unique, text_events(8), size=2)
    producer = make_producer(settings.confluent_config())
    _publish(producer, settings, 0, [0, 1, 6, 7, 9])
    _publish(producer, settings, 1, [0, 1, 6, 7, 9])
    assert producer.flush(30) == 0
    _commit(settings, {0: 10, 1: 10})
    assert judge(settings, transaction_wait_s=2).holds

    _publish(producer, settings, 0, [3])  # what a worker reading read_uncommitted would do
    assert producer.flush(30) == 0
    verdict = judge(settings, transaction_wait_s=2)
    assert (verdict.aborted_read, verdict.phantom) == (1, 0)
    assert any(v.startswith("aborted data read: 1") for v in verdict.violations), verdict.violations


def test_an_exactly_once_worker_never_publishes_an_aborted_input_record(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """A producer upstream writes the input in transactions and aborts some: the worker reads
    read_committed, so none of their records is predicted, and nothing is lost or doubled."""
    settings = make_settings(
        kafka_bootstrap, unique, partitions=2, processing_guarantee="exactly_once"
    )
    visible = _transactional_inputs(settings, unique, text_events(48), size=6)
    worker = WorkerProcess(settings, name="w", log_dir=tmp_path)
    try:
        assert wait_until_committed_to_end(settings), worker.log_tail()
    finally:
        worker.stop()
    verdict = judge(settings, transaction_wait_s=5)
    assert verdict.holds, verdict.summary()
    assert (verdict.predictions, verdict.aborted_read, verdict.lost) == (visible, 0, 0)
    assert visible == 26  # 24 of the 48 events were in aborted transactions, plus 2 plain


def test_verify_fails_in_one_line_when_a_topic_does_not_exist(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    done = _cli(settings, "--output-topic", f"missing-{unique}", "--timeout", "10")
    assert done.returncode == 4  # a broker-side failure (see `streamproc --help`)
    assert done.stderr.startswith("error: cannot read topic missing-"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
