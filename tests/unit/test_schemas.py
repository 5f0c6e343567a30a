"""The published JSON Schemas agree with the codec: what decodes validates, what is emitted too."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import orjson
import pytest

from streamproc.errors import EventError
from streamproc.events import decode_event, encode_prediction
from streamproc.model.base import Prediction
from streamproc.tools.produce import bad_payloads


def _schema(name: str) -> dict:
    text = resources.files("streamproc").joinpath(f"resources/schemas/{name}").read_text()
    schema: dict = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_a_prediction_validates() -> None:
    event = decode_event(b'{"id": "a", "text": "hi", "ts": 5}', max_bytes=1000)
    value = encode_prediction(
        event,
        Prediction("x", 0.6, {"x": 0.6, "y": 0.4}),
        model_version="v1",
        batch_size=3,
        now_ms=10.0,
    )
    jsonschema.validate(orjson.loads(value), _schema("prediction.schema.json"))
    assert "labels" not in orjson.loads(value), "single-label outputs keep their old shape"


def test_a_multi_label_prediction_validates_and_lists_its_labels() -> None:
    event = decode_event(b'{"id": "a", "text": "why now"}', max_bytes=1000)
    prediction = Prediction(
        "question", 0.9, {"question": 0.9, "urgent": 0.8}, ("question", "urgent")
    )
    value = orjson.loads(encode_prediction(event, prediction, model_version="v1", batch_size=1))
    jsonschema.validate(value, _schema("prediction.schema.json"))
    assert value["labels"] == ["question", "urgent"]
    value["labels"] = ["question", "question"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, _schema("prediction.schema.json"))


@pytest.mark.parametrize(("reason", "payload"), bad_payloads())
def test_schema_and_codec_agree_on_bad_events(reason: str, payload: bytes) -> None:
    schema = _schema("input-event.schema.json")
    with pytest.raises(EventError):
        decode_event(payload, max_bytes=10_000)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return  # not JSON at all: nothing for the schema to say
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_a_good_event_validates() -> None:
    doc = {"id": "a", "text": "what is kafka?", "ts": 1.5, "extra": [1]}
    decode_event(orjson.dumps(doc), max_bytes=10_000)
    jsonschema.validate(doc, _schema("input-event.schema.json"))
