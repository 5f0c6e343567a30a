"""The at_least_once egress producer (librdkafka) against a real broker: every send is
acknowledged, in order per partition, with its headers; unkeyed outputs keep their input's
partition number modulo the topic's count; keyed ones land where Faust's (aiokafka's) producer —
and the Java client — would put them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streamproc.kafka import consume, ensure_topics
from streamproc.stream.egress import LibrdkafkaPublisher, producer_config

pytestmark = [pytest.mark.kafka]


def test_sends_are_acknowledged_in_order_with_headers_and_faust_compatible_partitions(
    kafka_conf: dict[str, str], unique: str
) -> None:
    output, dead = f"egress-out-{unique}", f"egress-dlq-{unique}"
    ensure_topics(kafka_conf, {output: 3, dead: 2})
    count = 300

    async def send_all() -> list[object]:
        publisher = LibrdkafkaPublisher(
            producer_config(kafka_conf, publish_timeout_s=30, client_id=f"egress-{unique}"),
            output_topic=output,
            dead_letter_topic=dead,
        )
        publisher.open()  # as the worker does once it is assigned partitions
        publisher.open()  # a no-op: one producer
        try:
            futures = []
            for i in range(count):
                headers = [("n", str(i).encode()), ("empty", None)]
                if i % 3 == 0:  # unkeyed, from input partition 5: wraps onto partition 5 % 2
                    futures.append(await publisher.send_dead_letter(None, b"%d" % i, 5, headers))
                else:
                    key = b"key-%d" % (i % 7)
                    futures.append(await publisher.send_prediction(key, b"%d" % i, None, headers))
            return await asyncio.wait_for(asyncio.gather(*futures), 60)
        finally:
            await publisher.close()

    results = asyncio.run(send_all())
    assert results == [None] * count  # every future resolved, none failed

    records = list(
        consume(
            kafka_conf,
            [output, dead],
            group_id=f"egress-check-{unique}",
            stop=lambda seen: len(seen) >= count,
            timeout_s=60,
        )
    )
    assert len(records) == count
    assert {r.partition for r in records if r.topic == dead} == {1}
    partitioner = DefaultPartitioner()
    for record in records:
        i = int(record.value or b"")
        assert record.headers["n"] == str(i).encode()
        if record.topic == output:
            assert record.key is not None
            assert record.partition == partitioner(record.key, [0, 1, 2], [0, 1, 2])
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(
            (record.offset, int(record.value or b""))
        )
    for placed in by_partition.values():
        in_log_order = [value for _, value in sorted(placed)]
        assert in_log_order == sorted(in_log_order)  # the send order, kept per partition
