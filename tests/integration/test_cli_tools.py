"""``streamproc produce`` and ``streamproc tail`` against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streamproc.broker import free_port
from streamproc.errors import BrokerError
from streamproc.kafka import consume, consume_count, make_producer, make_ready_producer
from streamproc.settings import load_settings
from streamproc.tools.produce import produce_events
from tests.helpers import make_settings, topic_end_offsets

pytestmark = pytest.mark.kafka


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_produce_from_a_file_at_a_rate_then_tail(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=2)
    env = settings.to_env()
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(orjson.dumps({"text": f"line {i}"}).decode() + "\n" for i in range(7)))
    done = _cli(
        "produce",
        "--file",
        str(texts),
        "--count",
        "40",
        "--rate",
        "200",
        "--bad-every",
        "10",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 40 events" in done.stdout
    records = consume_count(
        settings.confluent_config(), settings.input_topic, 44, group_id=f"check-{unique}"
    )
    good = [orjson.loads(r.value) for r in records if r.key and not r.key.startswith(b"bad")]
    assert len(records) == 44 and len(good) == 40  # 40 events + one bad payload per 10
    assert {g["text"] for g in good} == {f"line {i}" for i in range(7)}
    assert all(isinstance(g["ts"], float) for g in good)

    # tail pretty-prints what is on the output topic (here: fake predictions we write ourselves)
    producer = make_producer(settings.confluent_config())
    for i in range(3):
        producer.produce(
            settings.output_topic,
            key=b"k",
            value=orjson.dumps(
                {
                    "id": f"x{i}",
                    "label": "HUM",
                    "score": 0.9,
                    "latency_ms": 12.5,
                    "batch_size": 4,
                    "model_version": "v9",
                }
            ),
        )
    producer.flush(10)
    shown = _cli("tail", "--from-beginning", "--count", "3", "--timeout", "60", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == 3 and all("HUM" in line and "v9" in line for line in lines)


def test_produce_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    done = _cli("produce", "--file", str(tmp_path / "nope.jsonl"), env={})
    assert done.returncode == 6  # data (errors.EXIT_CODES)
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.jsonl'}: no such file"]


def test_produce_keeps_the_users_ids_keys_and_fields_in_file_order(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=3)
    lines = [
        {"id": f"user-{i}", "key": f"acct-{i % 2}", "text": f"question {i}", "seq": i}
        for i in range(6)
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    done = _cli("produce", "--file", str(events), env=settings.to_env())
    assert done.returncode == 0, done.stderr
    assert "sent 6 events" in done.stdout  # the file once, not 1,000 cycled events
    records = consume_count(
        settings.confluent_config(), settings.input_topic, 6, group_id=f"check-{unique}"
    )
    got = {r.key: [] for r in records}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        doc = orjson.loads(record.value)
        assert doc.pop("ts") > 0  # stamped: it had none
        got[record.key].append(doc)
    assert got == {  # keyed by the user's key, every field kept, per-key order kept
        b"acct-0": [lines[0], lines[2], lines[4]],
        b"acct-1": [lines[1], lines[3], lines[5]],
    }


def test_produce_reads_stdin_and_text_options(kafka_bootstrap: str, unique: str) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    env = settings.to_env()
    piped = subprocess.run(
        [sys.executable, "-m", "streamproc", "produce", "--file", "-"],
        env={**os.environ, **env},
        input="first line\n\nsecond line\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    given = _cli("produce", "--text", "third", "--text", "fourth", env=env)
    assert given.returncode == 0, given.stderr
    records = consume_count(
        settings.confluent_config(), settings.input_topic, 4, group_id=f"check-{unique}"
    )
    texts = [orjson.loads(r.value)["text"] for r in sorted(records, key=lambda r: r.offset)]
    assert texts == ["first line", "second line", "third", "fourth"]


def test_a_bad_line_sends_nothing_and_names_the_line(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    events = tmp_path / "events.jsonl"
    events.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"text": oops}\n')
    done = _cli("produce", "--file", str(events), env=settings.to_env())
    assert done.returncode == 6
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {events}:3: not JSON (") and line.endswith("at column 10)")
    assert topic_end_offsets(settings) == {0: 0}


def test_progress_counts_what_the_broker_acknowledged(kafka_bootstrap: str, unique: str) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=2)
    acked: list[int] = []
    stats = produce_events(settings, ["a", "b"], count=300, progress=acked.append, bad_every=100)
    assert stats.sent == sum(acked) == 300  # the 3 bad payloads are not progress

    nobody = load_settings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    acked.clear()
    with pytest.raises(BrokerError, match="300 records were not acknowledged"):
        produce_events(nobody, ["a"], count=300, progress=acked.append, delivery_timeout_s=1)
    assert sum(acked) == 0  # it used to report 256 at the first send


def test_a_ready_producer_sends_its_first_event_without_waiting_for_its_id(
    kafka_conf: dict[str, str], unique: str
) -> None:
    topic = make_settings(kafka_conf["bootstrap.servers"], unique).input_topic
    # A fresh idempotent producer now and then sent nothing for 500 ms (librdkafka's timer for
    # asking its producer id again): the demo's first measured events showed p99 ~500 ms.
    waits = []
    for _ in range(6):
        producer = make_ready_producer(kafka_conf, topic)
        sent = time.monotonic()
        producer.produce(topic, b"x")
        assert producer.flush(10) == 0
        waits.append(time.monotonic() - sent)
    assert max(waits) < 0.4, waits


def test_a_ready_producer_for_a_broker_that_is_down_comes_back_at_its_deadline() -> None:
    started = time.monotonic()
    producer = make_ready_producer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}"}, "t", timeout_s=1
    )
    assert 0.9 < time.monotonic() - started < 5
    producer.produce("t", b"x")
    assert producer.flush(0.2) == 1  # still queued: its delivery timeout decides


def test_produce_to_a_broker_that_is_down_fails_at_once_in_one_line() -> None:
    port = free_port()
    started = time.monotonic()
    done = _cli(
        "produce", "--text", "hi", env={"STREAMPROC_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    )
    assert done.returncode == 4  # broker
    assert time.monotonic() - started < 15  # it used to wait 30 s for metadata
    assert done.stderr.strip().splitlines() == [
        f"error: no Kafka broker: 127.0.0.1:{port}: connection refused "
        "(STREAMPROC_BOOTSTRAP_SERVERS)"
    ]


def test_tail_any_topic_as_json_and_dead_letters_with_reason_and_detail(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    env = settings.to_env()
    producer = make_producer(settings.confluent_config())
    producer.produce(
        settings.dead_letter_topic,
        key=b"bad-1",
        value=b'{"id": 42, "text": "numeric id"}',
        headers=[
            ("streamproc-reason", b"invalid_id"),
            ("streamproc-detail", b"id must be a non-empty string"),
            ("streamproc-source-topic", settings.input_topic.encode()),
            ("streamproc-source-partition", b"0"),
            ("streamproc-source-offset", b"7"),
        ],
    )
    producer.produce(settings.output_topic, key=b"q1", value=b'{"id": "q1", "label": "HUM"}')
    assert producer.flush(10) == 0

    shown = _cli(
        "tail", "--topic", settings.dead_letter_topic, "--from-beginning", "--count", "1", env=env
    )
    assert shown.returncode == 0, shown.stderr
    line = shown.stdout.strip()
    assert line.startswith("invalid_id") and "id must be a non-empty string" in line
    assert f"{settings.input_topic}[0]@7" in line

    as_json = _cli("tail", "--json", "--from-beginning", "--no-follow", env=env)
    assert as_json.returncode == 0, as_json.stderr
    docs = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert [(d["topic"], d["key"], d["value"]) for d in docs] == [
        (settings.output_topic, "q1", {"id": "q1", "label": "HUM"})
    ]

    waited = _cli("tail", "--timeout", "3", env=env)
    assert waited.returncode == 0
    assert "stopped after --timeout 3 s (0 records)" in waited.stderr  # not silently
    # Starting at the end, it says what it does not show (the one prediction already there).
    assert f"showing new records on {settings.output_topic}; 1 already there" in waited.stderr


def test_following_keeps_no_record_it_has_handed_out(kafka_bootstrap: str, unique: str) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    produce_events(settings, ["x"], count=50, topic=settings.output_topic)
    records = consume(
        settings.confluent_config(),
        [settings.output_topic],
        group_id=f"tail-{unique}",
        timeout_s=None,
    )
    for _ in range(50):
        next(records)
    assert records.gi_frame is not None
    assert records.gi_frame.f_locals["seen"] == []  # it held all 50 (a follow never ends)
    records.close()
