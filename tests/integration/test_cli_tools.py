"""``streamproc produce`` and ``streamproc tail`` against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streamproc.kafka import consume_count
from tests.helpers import make_settings

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
    from streamproc.kafka import make_producer

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
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.jsonl'}: no such file"]
