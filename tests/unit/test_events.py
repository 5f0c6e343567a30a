from __future__ import annotations

import orjson
import pytest

from streamproc.errors import EventError
from streamproc.events import (
    DEAD_LETTER_REASONS,
    TextEvent,
    dead_letter_headers,
    decode_event,
    encode_prediction,
    latency_origin,
)
from streamproc.model.base import Prediction
from streamproc.tools.produce import bad_payloads

LIMIT = 1024


def test_valid_event_decodes() -> None:
    event = decode_event(
        b'{"id": "a1", "text": "hello", "ts": 1700000000000, "extra": 1}', max_bytes=LIMIT
    )
    assert event == TextEvent(id="a1", text="hello", ts_ms=1700000000000.0)


def test_ts_is_optional() -> None:
    assert decode_event(b'{"id": "a", "text": "t"}', max_bytes=LIMIT).ts_ms is None


@pytest.mark.parametrize(("reason", "payload"), bad_payloads())
def test_every_bad_kind_has_its_reason(reason: str, payload: bytes) -> None:
    with pytest.raises(EventError) as info:
        decode_event(payload, max_bytes=LIMIT)
    assert info.value.reason == reason
    assert reason in DEAD_LETTER_REASONS
    # The dead letter's streamproc-detail header: never empty, so an operator reading the topic
    # (kcat, tail --dead-letters) learns what was wrong without decoding the payload.
    assert info.value.detail.strip(), f"{reason} has no detail"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty_payload"),
        (b'{"id": "a", "text": "' + b"x" * 2000 + b'"}', "oversized"),
        (b'{"id": "", "text": "t"}', "invalid_id"),
        (b'{"id": "a", "text": null}', "invalid_text"),
        (b'{"id": "a", "text": ["list"]}', "invalid_text"),
        (b'{"id": "a", "text": "t", "ts": true}', "invalid_ts"),
        (b'{"id": "a", "text": "t", "ts": -5}', "invalid_ts"),
        # nested deeper than orjson's limit (1024): rejected before any type check
        (b'{"id": "a", "text": ' + b"[" * 5000 + b"]" * 5000 + b"}", "malformed_json"),
        (b'{"id": "a", "text": "\\ud800"}', "malformed_json"),  # lone surrogate
        (b"\xff\xfe\x00", "invalid_utf8"),
        (b"42", "not_an_object"),
    ],
)
def test_edge_cases(payload: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as info:
        decode_event(payload, max_bytes=LIMIT * 16 if reason != "oversized" else LIMIT)
    assert info.value.reason == reason


def test_prediction_encoding_carries_version_batch_and_latency() -> None:
    event = TextEvent("x", "text", 1000.0)
    pred = Prediction("pos", 0.75, {"pos": 0.75, "neg": 0.25})
    out = orjson.loads(
        encode_prediction(event, pred, model_version="v2", batch_size=8, now_ms=1012.5)
    )
    assert out == {
        "id": "x",
        "label": "pos",
        "score": 0.75,
        "probabilities": {"pos": 0.75, "neg": 0.25},
        "model_version": "v2",
        "batch_size": 8,
        "ts": 1000.0,
        "predicted_at": 1012.5,
        "latency_ms": 12.5,
        "latency_from": "ts",
    }


def test_without_ts_latency_starts_at_the_kafka_record_timestamp() -> None:
    event = TextEvent("x", "text", None)
    pred = Prediction("pos", 0.75, {"pos": 0.75, "neg": 0.25})
    out = orjson.loads(
        encode_prediction(
            event, pred, model_version="v2", batch_size=1, now_ms=1030.0, record_timestamp_ms=1000.0
        )
    )
    assert (out["ts"], out["latency_ms"], out["latency_from"]) == (None, 30.0, "kafka_timestamp")
    bare = orjson.loads(encode_prediction(event, pred, model_version="v2", batch_size=1))
    assert (bare["latency_ms"], bare["latency_from"]) == (None, None)


def test_dead_letter_headers_keep_originals_and_name_the_reason() -> None:
    headers = dict(
        dead_letter_headers(
            EventError("empty_text", "blank"),
            topic="in",
            partition=3,
            offset=17,
            original=[("trace", b"abc")],
        )
    )
    assert headers["trace"] == b"abc"
    assert headers["streamproc-reason"] == b"empty_text"
    assert headers["streamproc-source-partition"] == b"3"
    assert headers["streamproc-source-offset"] == b"17"


def test_incoming_streamproc_headers_cannot_spoof_the_reason_and_nulls_stay_null() -> None:
    headers = dead_letter_headers(
        EventError("malformed_json", "bad"),
        topic="in",
        partition=0,
        offset=5,
        original=[
            ("streamproc-reason", b"looks_fine"),
            (b"streamproc-source-offset", b"999"),
            ("trace", None),
        ],
    )
    assert [v for k, v in headers if k == "streamproc-reason"] == [b"malformed_json"]
    assert [v for k, v in headers if k == "streamproc-source-offset"] == [b"5"]
    assert ("original-streamproc-reason", b"looks_fine") in headers
    assert ("original-streamproc-source-offset", b"999") in headers
    assert ("trace", None) in headers


@pytest.mark.parametrize(
    ("ts_ms", "record_ms", "expected"),
    [
        (1_000_000_000_000.0, 1_000_000_005_000.0, (1_000_000_000_000.0, "ts")),  # 5 s skew: ok
        (1_000_000_000.0, 1_000_000_005_000.0, (1_000_000_005_000.0, "kafka_timestamp")),  # ts in s
        (2_000_000_000_000.0, 1_000_000_005_000.0, (1_000_000_005_000.0, "kafka_timestamp")),
        (None, 1_000_000_005_000.0, (1_000_000_005_000.0, "kafka_timestamp")),
        (1_000_000_000_000.0, None, (1_000_000_000_000.0, "ts")),
        (None, None, (None, None)),
    ],
)
def test_latency_starts_at_a_plausible_ts_else_the_record_timestamp(
    ts_ms: float | None, record_ms: float | None, expected: tuple[float | None, str | None]
) -> None:
    assert latency_origin(ts_ms, record_ms) == expected
