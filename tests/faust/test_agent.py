"""The Faust agent in Faust's in-memory test mode (``agent.test_context()``), no broker."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamproc.settings import load_settings
from streamproc.stream.app import Worker, create_worker
from streamproc.testing import FakeClassifier


class Captured:
    """A publisher (the pipeline's narrow output interface) that records what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def _record(self, kind: str, key: Any, value: Any, partition: Any, headers: Any) -> Any:
        self.records.append(
            {
                "kind": kind,
                "key": key,
                "value": value,
                "partition": partition,
                "headers": dict(headers or []),
            }
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_prediction(self, key: Any, value: Any, partition: Any, headers: Any) -> Any:
        return self._record("prediction", key, value, partition, headers)

    async def send_dead_letter(self, key: Any, value: Any, partition: Any, headers: Any) -> Any:
        return self._record("dead_letter", key, value, partition, headers)


async def _no_broker() -> None:
    """Faust's in-memory test mode has no broker to declare topics on."""


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> tuple[Worker, Captured, FakeClassifier]:
    model = FakeClassifier(version="test-v1")
    w = create_worker(load_settings(app_id="agent-test"), model=model, web_enabled=False)
    captured = Captured()
    monkeypatch.setattr(w.output_topic, "maybe_declare", _no_broker)
    monkeypatch.setattr(w.dead_letter_topic, "maybe_declare", _no_broker)
    w.pipeline.publisher = captured
    return w, captured, model


async def _wait_for(captured: Captured, count: int, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(captured.records) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(captured.records)} records"
        await asyncio.sleep(0.01)


def test_agent_predicts_and_dead_letters(worker: tuple[Worker, Captured, FakeClassifier]) -> None:
    w, captured, model = worker

    async def scenario() -> None:
        async with w.agent.test_context() as agent:
            for i in range(20):
                await agent.put(
                    orjson.dumps({"id": f"e{i}", "text": f"hello {i}"}), key=f"k{i}".encode()
                )
            await agent.put(b"{not json", key=b"bad")
            await agent.put(b'{"id": "x", "text": 7}', key=b"bad2")
            await _wait_for(captured, 22)

    asyncio.run(scenario())
    predictions = [orjson.loads(r["value"]) for r in captured.records if r["kind"] == "prediction"]
    dead = [r for r in captured.records if r["kind"] == "dead_letter"]
    assert sorted(p["id"] for p in predictions) == sorted(f"e{i}" for i in range(20))
    assert all(p["model_version"] == "test-v1" for p in predictions)
    assert all(p["label"] == model.expected_label(f"hello {p['id'][1:]}") for p in predictions)
    assert {r["headers"]["streamproc-reason"] for r in dead} == {b"malformed_json", b"invalid_text"}
    by_id = {
        orjson.loads(r["value"])["id"]: r for r in captured.records if r["kind"] == "prediction"
    }
    assert by_id["e3"]["key"] == b"k3", "the output keeps the input key"
