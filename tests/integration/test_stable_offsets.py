"""KIP-447 against the real broker: offsets committed inside a transaction that has not settled
are invisible to a plain OffsetFetch (what aiokafka, hence Faust, sends: a worker taking the
partition over would resume before them and publish their records again), while
``stable_committed_offsets`` (librdkafka, require_stable) waits until they settle."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamproc.kafka import stable_committed_offsets
from tests.helpers import make_settings

pytestmark = [pytest.mark.kafka]


def test_offsets_of_an_unsettled_transaction_are_read_only_once_it_settles(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    conf, group, topic = settings.confluent_config(), settings.app_id, settings.input_topic
    producer = Producer({**conf, "transactional.id": f"tx-{unique}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(settings.output_topic, b"an output of offsets 0-4", partition=0)
    member = Consumer({**conf, "group.id": group})  # the group's metadata, not joined
    producer.send_offsets_to_transaction(
        [TopicPartition(topic, 0, 5)], member.consumer_group_metadata(), 30
    )
    member.close()

    # Pending: a plain fetch (no require_stable) answers as if nothing were committed ...
    plain = Consumer({**conf, "group.id": group, "isolation.level": "read_uncommitted"})
    try:
        assert plain.committed([TopicPartition(topic, 0)], timeout=10)[0].offset < 0
    finally:
        plain.close()
    # ... and the stable read does not answer while the transaction is open.
    with pytest.raises(KafkaException):
        stable_committed_offsets(conf, group, {topic: [0]}, timeout_s=3)

    # Settling it while a stable read waits: that read answers the transaction's offset.
    answers: list[dict[tuple[str, int], int | None]] = []
    reader = threading.Thread(
        target=lambda: answers.append(stable_committed_offsets(conf, group, {topic: [0]}))
    )
    reader.start()
    time.sleep(1.0)
    producer.commit_transaction(30)
    reader.join(30)
    assert answers == [{(topic, 0): 5}]
