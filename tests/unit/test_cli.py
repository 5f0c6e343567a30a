"""The CLI's contract with scripts: one-line errors, an exit status per failure family, --version,
and how ``produce`` reads files and ``tail`` prints records (no broker needed here)."""

from __future__ import annotations

import importlib.metadata
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streamproc.broker import free_port
from streamproc.errors import (
    ArtifactError,
    BrokerError,
    ConfigError,
    DataError,
    EventError,
    InferenceTimeout,
    RecordTooLarge,
    StreamprocError,
    exit_code,
)
from streamproc.kafka import ConsumedRecord, refused_everywhere
from streamproc.settings import load_settings
from streamproc.tools.produce import parse_event_lines
from streamproc.tools.tail import format_record, record_as_json


def _cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *args],
        env={**clean, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_error_family_has_its_own_exit_status() -> None:
    assert exit_code(ConfigError("x")) == 3
    assert exit_code(BrokerError("x")) == 4
    assert exit_code(RecordTooLarge("x")) == 4
    assert exit_code(ArtifactError("x")) == 5
    assert exit_code(InferenceTimeout("x")) == 5
    assert exit_code(DataError("x")) == 6
    assert exit_code(EventError("malformed_json")) == 6
    assert exit_code(StreamprocError("x")) == 1


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (("tail",), {"STREAMPROC_LATENCY_TARGET_MS": "soon"}, 3, "STREAMPROC_LATENCY_TARGET_MS"),
        (
            ("produce", "--text", "hi"),
            {"STREAMPROC_BOOTSTRAP_SERVERS": "127.0.0.1:{port}"},
            4,
            "no Kafka broker: 127.0.0.1:{port}: connection refused",
        ),
        (("model", "verify", "/no/such/artifact"), {}, 5, "/no/such/artifact"),
        (("produce", "--file", "/no/such/file.jsonl"), {}, 6, "/no/such/file.jsonl: no such file"),
    ],
    ids=["config", "broker", "artifact", "data"],
)
def test_failures_print_one_line_and_exit_with_their_family_status(
    args: tuple[str, ...], env: dict[str, str], status: int, message: str
) -> None:
    port = str(free_port())  # nothing listens there: refused at once, no 30 s wait
    done = _cli(*args, **{k: v.format(port=port) for k, v in env.items()})
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert message.format(port=port) in lines[0]


def test_usage_errors_keep_status_2() -> None:
    assert _cli("produce").returncode == 2  # no source of events
    assert _cli("produce", "--text", "a", "--file", "-").returncode == 2
    assert _cli("tail", "--dead-letters", "--topic", "t").returncode == 2


def test_help_documents_the_exit_statuses_and_version_matches_the_package() -> None:
    helped = _cli("--help")
    assert helped.returncode == 0
    for line in ("3 configuration", "4 broker", "5 model", "6 data", "130 interrupted"):
        assert line in helped.stdout
    version = _cli("--version")
    assert version.returncode == 0
    assert version.stdout.split()[-1] == importlib.metadata.version("streamproc")


def test_log_level_is_accepted_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROC_LOG_LEVEL", "INFO")
    assert load_settings().log_level == "info"
    monkeypatch.setenv("STREAMPROC_LOG_LEVEL", "Debug")
    assert load_settings().log_level == "debug"
    monkeypatch.setenv("STREAMPROC_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="STREAMPROC_LOG_LEVEL"):
        load_settings()


def test_refused_connections_are_detected_at_once_and_a_listener_is_not() -> None:
    import socket

    port = free_port()
    reason = refused_everywhere(f"127.0.0.1:{port}")
    assert reason == f"127.0.0.1:{port}: connection refused"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        # one server answering is enough for the Kafka client to try
        assert refused_everywhere(f"127.0.0.1:{port},127.0.0.1:{open_port}") is None


# --- produce: reading events -------------------------------------------------------------------


def _lines(text: bytes) -> io.BytesIO:
    return io.BytesIO(text)


def test_jsonl_events_keep_their_ids_keys_and_other_fields() -> None:
    events = parse_event_lines(
        _lines(
            b'{"id": "u-1", "key": "alice", "text": "who?", "lang": "en"}\n\n'
            b'{"text": "no id here"}\r\n'
        ),
        "events.jsonl",
        "auto",
    )
    assert events == [
        {"id": "u-1", "key": "alice", "text": "who?", "lang": "en"},
        {"text": "no id here"},
    ]


def test_format_is_sniffed_from_the_first_line_unless_given() -> None:
    assert parse_event_lines(_lines(b'{"text": "a"}\n'), "<stdin>", "auto") == [{"text": "a"}]
    assert parse_event_lines(_lines(b"plain text\n{not json\n"), "<stdin>", "auto") == [
        "plain text",
        "{not json",
    ]
    assert parse_event_lines(_lines(b'{"text": "a"}\n'), "x.txt", "lines") == ['{"text": "a"}']


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "fine"}\n{"text": \n', "events.jsonl:2: not JSON"),
        (b'{"text": "fine"}\n["text"]\n', "events.jsonl:2: a JSONL line must be an object"),
        (b'\n\n{"id": "x"}\n', "events.jsonl:3: needs a non-empty string 'text'"),
        (b'{"id": 7, "text": "a"}\n', "events.jsonl:1: 'id' must be a non-empty string"),
        (b'{"key": 7, "text": "a"}\n', "events.jsonl:1: 'key' must be a non-empty string"),
        (b"\n  \n", "events.jsonl: no events"),
    ],
)
def test_a_bad_line_is_reported_with_its_number(content: bytes, message: str) -> None:
    with pytest.raises(DataError) as info:
        parse_event_lines(_lines(content), "events.jsonl", "auto")
    assert str(info.value).startswith(message)


def test_plain_lines_must_be_utf8() -> None:
    with pytest.raises(DataError, match=r"^<stdin>:2: not UTF-8"):
        parse_event_lines(_lines(b"ok\ncaf\xc3\x28\n"), "<stdin>", "lines")


def test_an_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    done = _cli("produce", "--file", str(tmp_path))  # a directory
    assert done.returncode == 6
    assert done.stderr.strip() == f"error: {tmp_path}: cannot read (Is a directory)"
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"text": "a"}\n{"text": "b"\n')
    done = _cli("produce", "--file", str(bad))
    assert done.returncode == 6
    assert done.stderr.strip().startswith(f"error: {bad}:2: not JSON")


# --- tail: printing records --------------------------------------------------------------------


def _record(value: bytes | None, headers: dict[str, bytes] | None = None) -> ConsumedRecord:
    return ConsumedRecord("t", 1, 42, b"k\xff", value, headers or {}, 1_700_000_000_000)


def test_dead_letters_are_recognised_by_their_reason_header_and_show_the_detail() -> None:
    dead = _record(
        b'{"id": 1}',
        {
            "streamproc-reason": b"invalid_id",
            "streamproc-detail": b"id must be a string",
            "streamproc-source-topic": b"in",
            "streamproc-source-partition": b"3",
            "streamproc-source-offset": b"17",
        },
    )
    line = format_record(dead)
    assert line.startswith("invalid_id") and "in[3]@17" in line
    assert "id must be a string" in line
    prediction = _record(b'{"id": "q1", "label": "HUM", "score": 0.5, "model_version": "v1"}')
    assert "HUM" in format_record(prediction) and "v1" in format_record(prediction)
    assert "not a prediction" in format_record(_record(b'"just a string"'))


def test_json_output_is_one_parseable_object_per_record() -> None:
    doc = orjson.loads(record_as_json(_record(b'{"id": "q1"}', {"h": b"v"})))
    assert doc == {
        "topic": "t",
        "partition": 1,
        "offset": 42,
        "timestamp_ms": 1_700_000_000_000,
        "key": "k\\xff",
        "headers": {"h": "v"},
        "value": {"id": "q1"},
    }
    assert orjson.loads(record_as_json(_record(b"caf\xc3\x28")))["value"] == "caf\\xc3("
    assert orjson.loads(record_as_json(_record(None)))["value"] is None


def test_tail_follows_without_a_deadline_by_default() -> None:
    from streamproc.tools.tail import tail

    timeout = next(p for p in tail.params if p.name == "timeout")
    assert timeout.default is None  # it used to stop, silently, after 3600 s
