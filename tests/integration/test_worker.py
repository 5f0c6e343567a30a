"""The worker against the real broker: volume, ordering, bad input (fake model; the real model is
tested in test_worker_real_model.py)."""

from __future__ import annotations

import collections

import orjson
import pytest

from streamproc.events import DEAD_LETTER_REASONS
from streamproc.stream.app import create_worker
from streamproc.testing import FakeClassifier, running_worker
from streamproc.tools.produce import bad_payloads
from tests.helpers import collect, make_settings, per_key_sequences, produce_payloads, text_events

pytestmark = pytest.mark.kafka


def test_5000_events_over_4_partitions_exactly_once_in_order(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, latency_target_ms=100)
    events = text_events(5000)
    model = FakeClassifier(cost_s=0.002, cost_per_item_s=0.0001)
    with running_worker(lambda: create_worker(settings, model=model, web_enabled=False)):
        produce_payloads(settings, events)
        records = collect(settings, settings.output_topic, 5000, unique=unique)
        extra = collect(settings, settings.output_topic, 5001, unique=unique, timeout_s=3)

    ids = collections.Counter(orjson.loads(r.value)["id"] for r in records)
    assert len(ids) == 5000 and set(ids.values()) == {1}, "each id exactly once"
    assert len(extra) == 5000, "and nothing more"
    seq_of = {f"e-{i}": i for i in range(5000)}
    for key, seqs in per_key_sequences(records, seq_of).items():
        assert seqs == sorted(seqs), f"order kept for key {key!r}"
    assert max(model.batch_sizes) > 1, "a backlog of 5000 is batched"


def test_mixed_stream_bad_events_are_dead_lettered_and_good_ones_predicted(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, max_event_bytes=4096)
    good = text_events(300)
    bad = [(f"bad-{reason}".encode(), payload) for reason, payload in bad_payloads()]
    bad.append((b"bad-oversized", orjson.dumps({"id": "big", "text": "x" * 10_000})))
    bad.append((None, b'{"id": "nokey", "text": "\\u0000\\u0007 control chars are fine"}'))
    mixed: list[tuple[bytes | None, bytes]] = []
    for i, item in enumerate(good):
        mixed.append(item)
        if i % 25 == 0 and bad:
            mixed.append(bad.pop(0))
    mixed += bad
    with running_worker(lambda: create_worker(settings, model=FakeClassifier(), web_enabled=False)):
        produce_payloads(settings, mixed)
        predictions = collect(settings, settings.output_topic, 301, unique=unique)
        dead = collect(settings, settings.dead_letter_topic, 11, unique=unique)

    predicted_ids = {orjson.loads(r.value)["id"] for r in predictions}
    assert predicted_ids == {f"e-{i}" for i in range(300)} | {"nokey"}
    reasons = collections.Counter(r.headers["streamproc-reason"].decode() for r in dead)
    expected = {reason for reason, _ in bad_payloads()} | {"oversized"}
    assert set(reasons) == expected and set(reasons.values()) == {1}
    assert set(reasons) <= set(DEAD_LETTER_REASONS)
    originals = {key: value for key, value in mixed}
    for record in dead:
        assert record.value == originals[record.key], "original bytes kept"
        assert record.headers["streamproc-source-topic"].decode() == settings.input_topic
        assert int(record.headers["streamproc-source-offset"]) >= 0
