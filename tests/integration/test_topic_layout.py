"""Topics the worker creates (replication factor) and the partition layout it needs, against a
real broker."""

from __future__ import annotations

import collections
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from streamproc.errors import BrokerError, ConfigError
from streamproc.kafka import ensure_topics
from streamproc.settings import load_settings
from streamproc.stream.app import check_topic_layout, ensure_worker_topics
from tests.helpers import (
    WorkerProcess,
    collect_ids,
    make_settings,
    produce_payloads,
)

pytestmark = [pytest.mark.kafka]


def test_topics_get_the_brokers_default_replication_or_the_one_asked_for(
    kafka_bootstrap: str, unique: str
) -> None:
    conf = {"bootstrap.servers": kafka_bootstrap}
    ensure_topics(conf, {f"rf-default-{unique}": 2})  # -1: the broker's default (1 here)
    metadata = AdminClient(conf).list_topics(timeout=10).topics[f"rf-default-{unique}"]
    assert [len(p.replicas) for p in metadata.partitions.values()] == [1, 1]
    # The setting reaches the worker's topics: this single broker cannot hold 2 replicas.
    settings = load_settings(
        bootstrap_servers=kafka_bootstrap,
        input_topic=f"rf-in-{unique}",
        output_topic=f"rf-out-{unique}",
        dead_letter_topic=f"rf-dlq-{unique}",
        replication_factor=2,
    )
    with pytest.raises(BrokerError, match="replication factor"):
        ensure_worker_topics(settings)


def test_exactly_once_refuses_to_start_when_an_output_has_fewer_partitions(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {f"out-{unique}": 2})
    settings = make_settings(
        kafka_bootstrap, unique, partitions=4, processing_guarantee="exactly_once"
    )
    expected = f"the input topic in-{unique} has 4 partitions and out-{unique} has 2"
    with pytest.raises(ConfigError, match=expected):
        check_topic_layout(settings)
    produce_payloads(settings, [(None, orjson.dumps({"id": "x", "text": "hello"}))])
    worker = WorkerProcess(settings, name="eos-layout", log_dir=tmp_path)
    try:
        code = worker.wait(60)
    except Exception:
        worker.stop()
        raise AssertionError(f"the worker started anyway:\n{worker.log_tail()}") from None
    log = worker.log_path.read_text(errors="replace")
    assert code != 0 and expected in log, log[-3000:]
    # at_least_once needs no such layout
    check_topic_layout(settings.model_copy(update={"processing_guarantee": "at_least_once"}))


def test_unkeyed_outputs_wrap_onto_a_smaller_output_topic_in_input_order(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    # at_least_once keeps an unkeyed output on its input's partition number: with fewer output
    # partitions that partition does not exist (aiokafka refused every such send, forever).
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {f"out-{unique}": 1})
    settings = make_settings(kafka_bootstrap, unique, partitions=4)
    n = 400
    events = [(None, orjson.dumps({"id": f"e-{i}", "text": f"text {i}"})) for i in range(n)]
    produce_payloads(settings, events, partition_of=lambda i: i % 4)
    worker = WorkerProcess(settings, name="wrap", log_dir=tmp_path)
    try:
        records = collect_ids(settings, {f"e-{i}" for i in range(n)}, unique=unique, timeout_s=60)
    finally:
        worker.stop()
    ids = [orjson.loads(r.value or b"")["id"] for r in records]
    assert set(ids) == {f"e-{i}" for i in range(n)}, worker.log_tail()
    assert len(ids) == n, "no send was refused and retried (no duplicates)"
    per_input = collections.defaultdict(list)
    for i in ids:
        per_input[int(i.split("-")[1]) % 4].append(int(i.split("-")[1]))
    for partition, seq in per_input.items():
        assert seq == sorted(seq), f"input partition {partition} out of order"
