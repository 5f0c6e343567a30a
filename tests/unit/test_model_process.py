"""The model in a child process (STREAMPROC_MODEL_ISOLATION=process): same answers, its failures
reported, its death fatal, and no child left behind."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.errors import ArtifactError, InferenceTimeout, ModelError, ModelProcessDied
from streamproc.model.base import Prediction
from streamproc.model.process import ProcessClassifier
from streamproc.settings import Settings
from streamproc.stream.batching import FixedBatchPolicy
from streamproc.stream.hot_reload import open_model
from streamproc.testing import FakeClassifier
from tests.fixtures.pipeline import FakePublisher, Record, event, make_pipeline


def _refuse(message: str) -> FakeClassifier:
    raise ArtifactError(message)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def served() -> ProcessClassifier:
    model = ProcessClassifier.start(
        functools.partial(FakeClassifier, version="fake-7", labels=("a", "b", "c"), fail_on="bad")
    )
    yield model
    model.close()


def test_the_child_answers_as_the_model_would_in_process(served: ProcessClassifier) -> None:
    local = FakeClassifier(version="fake-7", labels=("a", "b", "c"))
    texts = [f"text {i}" for i in range(20)] + ["Où est la gare ? 東京", "\udcff lone surrogate"]
    assert served.pid != os.getpid()
    identity = (served.version, tuple(served.labels), served.max_tokens)
    assert identity == ("fake-7", ("a", "b", "c"), 64)
    assert served.predict_batch(texts) == local.predict_batch(texts)

    async def twice() -> tuple[list, float]:
        return await served.predict_batch_async(texts)

    predictions, seconds = asyncio.run(twice())
    assert predictions == local.predict_batch(texts)
    assert 0.0 <= seconds < 5.0


def test_a_batch_the_model_raises_on_is_a_model_error_and_the_child_keeps_serving(
    served: ProcessClassifier,
) -> None:
    with pytest.raises(ModelError, match="RuntimeError: poisoned batch"):
        served.predict_batch(["good", "bad"])
    assert [p.label for p in served.predict_batch(["good"])] == [
        FakeClassifier(labels=("a", "b", "c")).expected_label("good")
    ]


def test_a_load_failure_is_raised_again_with_its_type_and_message() -> None:
    with pytest.raises(ArtifactError, match="no such version v9"):
        ProcessClassifier.start(functools.partial(_refuse, "no such version v9"))


def test_a_killed_child_fails_the_call_in_flight_and_every_later_one(
    served: ProcessClassifier,
) -> None:
    async def scenario() -> None:
        os.kill(served.pid, signal.SIGKILL)
        with pytest.raises(ModelProcessDied, match="SIGKILL"):
            await served.predict_batch_async(["after the kill"])
        with pytest.raises(ModelProcessDied, match="SIGKILL"):
            await served.predict_batch_async(["and again"])

    asyncio.run(scenario())


def test_close_lets_the_child_exit_and_later_calls_are_refused() -> None:
    model = ProcessClassifier.start(functools.partial(FakeClassifier, cost_s=0.2))
    pid = model.pid

    async def scenario() -> None:
        call = asyncio.ensure_future(model.predict_batch_async(["slow"]))
        await asyncio.sleep(0.05)
        model.close()  # the call in flight is given up, the child stops after answering it
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(scenario())
    assert not _alive(pid)
    with pytest.raises(ModelError, match="closed"):
        model.predict_batch(["too late"])
    model.close()  # idempotent


@pytest.mark.parametrize("state", ["idle", "stuck in a call"])
def test_the_child_exits_when_the_worker_is_killed(tmp_path: Path, state: str) -> None:
    # Idle, the child sees its socket close; stuck in a model call it reads nothing, and its
    # parent-watch thread ends it.
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        from streamproc.model.process import ProcessClassifier
        from tests.unit.test_model_process import HangingFake
        model = ProcessClassifier.start(HangingFake)
        if {state == "stuck in a call"}:
            threading.Thread(target=model.predict_batch, args=(["hang"],), daemon=True).start()
            time.sleep(0.3)
        print(model.pid, flush=True)
        time.sleep(60)
        """
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        child = int(worker.stdout.readline())  # type: ignore[union-attr]
        assert _alive(child)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the model process outlived its worker"
    finally:
        worker.kill()


def test_a_dead_model_process_stops_the_pipeline_and_settles_nothing_it_held() -> None:
    model = ProcessClassifier.start(functools.partial(FakeClassifier, cost_s=0.3))
    records = [Record(i, event(i)) for i in range(3)]
    failures: list[BaseException] = []
    publisher = FakePublisher()

    async def scenario() -> None:
        pipeline, inference = make_pipeline(
            model=model,  # type: ignore[arg-type]
            publisher=publisher,
            policy=FixedBatchPolicy(size=3, window_s=0.0),
            on_failure=failures.append,
        )
        pipeline.start()
        await pipeline.submit_many(records)
        await asyncio.sleep(0.1)  # the batch is in the child
        os.kill(model.pid, signal.SIGKILL)
        for _ in range(200):
            if pipeline.failed:
                break
            await asyncio.sleep(0.01)
        await pipeline.drain(timeout_s=2)
        inference.close()
        assert pipeline.offsets.committable(("in", 0)) in (None, 0)

    try:
        asyncio.run(scenario())
    finally:
        model.close()
    assert len(failures) == 1 and isinstance(failures[0], ModelProcessDied)
    assert not any(r.acked for r in records)
    assert publisher.predictions == [] and publisher.dead_letters == [], "nothing dead-lettered"


def test_the_pipeline_serves_a_model_process_and_measures_the_model_in_the_child() -> None:
    model = ProcessClassifier.start(functools.partial(FakeClassifier, cost_s=0.02))
    publisher = FakePublisher()
    records = [Record(i, event(i)) for i in range(40)]

    async def scenario() -> float:
        pipeline, inference = make_pipeline(model=model, publisher=publisher)  # type: ignore[arg-type]
        pipeline.start()
        await pipeline.submit_many(records)
        await pipeline.drain(timeout_s=20)
        inference.close()
        registry = pipeline._metrics.registry
        model_s = registry.get_sample_value(
            "streamproc_inference_seconds_sum", {"model_version": "fake-1"}
        )
        call_s = registry.get_sample_value("streamproc_stage_seconds_sum", {"stage": "model_call"})
        batches = registry.get_sample_value(
            "streamproc_inference_seconds_count", {"model_version": "fake-1"}
        )
        assert model_s >= 0.02 * batches * 0.9  # the child's own time: the model's cost
        assert call_s >= model_s  # the wait for it includes the hand-off both ways
        return model_s

    try:
        asyncio.run(scenario())
    finally:
        model.close()
    assert all(r.acked for r in records)
    assert sorted(orjson.loads(orjson.dumps(p))["id"] for p in publisher.predictions) == sorted(
        f"id-{i}" for i in range(40)
    )


def test_a_retired_model_is_closed_only_after_the_batch_calling_it() -> None:
    old = ProcessClassifier.start(functools.partial(FakeClassifier, cost_s=0.3))
    new = FakeClassifier(version="fake-2")
    slot = {"model": old}
    records = [Record(i, event(i)) for i in range(2)]
    publisher = FakePublisher()

    async def scenario() -> None:
        pipeline, inference = make_pipeline(
            model=old,  # type: ignore[arg-type]
            publisher=publisher,
            policy=FixedBatchPolicy(size=1, window_s=0.0),
        )
        pipeline._model = lambda: slot["model"]
        pipeline.start()
        await pipeline.submit(records[0])
        await asyncio.sleep(0.05)  # the old model is computing the first batch
        slot["model"] = new
        await pipeline.retire(old)  # waits for that batch, then stops the child
        assert records[0].acked or publisher.predictions, "the old model's batch finished"
        await pipeline.submit(records[1])
        await pipeline.drain(timeout_s=5)
        inference.close()

    asyncio.run(scenario())
    assert not _alive(old.pid)
    assert [p["model_version"] for p in publisher.predictions] == ["fake-1", "fake-2"]


def test_settings_choose_where_the_model_runs() -> None:
    served = open_model(Settings(model="artifact:builtin:trec"))
    try:
        assert isinstance(served.model, ProcessClassifier)
        assert served.model.runtime == "onnxruntime"
        assert served.model.predict_batch(["Who discovered America?"])[0].label == "HUM"
    finally:
        served.model.close()
    in_thread = open_model(Settings(model="artifact:builtin:trec", model_isolation="thread"))
    assert not isinstance(in_thread.model, ProcessClassifier)
    assert in_thread.model.predict_batch(["Who discovered America?"])[0].label == "HUM"


class HangingFake(FakeClassifier):
    """Hangs (never returns) on a batch holding a text that starts with ``hang``."""

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        if any(text.startswith("hang") for text in texts):
            threading.Event().wait()
        return super().predict_batch(texts)


def _run_with_hangs(
    texts: list[str], *, batch: int, model_class: type[FakeClassifier] = HangingFake
) -> tuple[Any, ...]:
    """Run ``texts`` through a pipeline whose model (``model_class``) runs in a child process
    with a 0.5 s inference timeout: (pipeline, publisher, records, failures, restarted)."""
    model = ProcessClassifier.start(model_class)
    first_pid = model.pid
    records = [Record(i, event(i, text)) for i, text in enumerate(texts)]
    publisher = FakePublisher()
    failures: list[BaseException] = []

    async def scenario() -> Any:
        pipeline, inference = make_pipeline(
            model=model,  # type: ignore[arg-type]
            publisher=publisher,
            policy=FixedBatchPolicy(size=batch, window_s=0.05),
            on_failure=failures.append,
            inference_timeout_s=0.5,
        )
        pipeline.start()
        await pipeline.submit_many(records)
        await pipeline.drain(timeout_s=20)
        inference.close()
        return pipeline

    try:
        pipeline = asyncio.run(scenario())
    finally:
        model.close()
    return pipeline, publisher, records, failures, first_pid != model.pid


def test_an_event_that_hangs_alone_is_dead_lettered_and_the_rest_predicted() -> None:
    texts = [f"text {i}" for i in range(6)]
    texts[3] = "hang forever"
    pipeline, publisher, records, failures, restarted = _run_with_hangs(texts, batch=6)
    assert not failures and not pipeline.failed
    assert restarted, "the hung model process was replaced"
    assert sorted(p["id"] for p in publisher.predictions) == [f"id-{i}" for i in (0, 1, 2, 4, 5)]
    [(value, headers)] = publisher.dead_letters
    assert orjson.loads(value)["id"] == "id-3"
    assert headers["streamproc-reason"] == b"inference_timeout"
    assert all(r.acked for r in records)
    registry = pipeline._metrics.registry
    # the batch, then the event alone in two fresh processes
    assert registry.get_sample_value("streamproc_inference_timeouts_total") == 3


def test_a_second_hang_before_any_success_means_a_wedged_model_and_stops_the_pipeline() -> None:
    texts = ["text 0", "hang 1", "hang 2", "text 3"]
    _, publisher, records, failures, _ = _run_with_hangs(texts, batch=4)
    assert len(failures) == 1 and isinstance(failures[0], InferenceTimeout)
    assert "in[0] 2..2 (1)" in str(failures[0])  # the second one alone is the suspect
    assert publisher.dead_letters == [] and publisher.predictions == []
    assert not any(r.acked for r in records)


def test_poison_events_apart_are_each_dead_lettered() -> None:
    texts = ["hang 0", "text 1", "hang 2", "text 3"]
    _, publisher, records, failures, _ = _run_with_hangs(texts, batch=4)
    assert not failures
    assert sorted(orjson.loads(value)["id"] for value, _ in publisher.dead_letters) == [
        "id-0",
        "id-2",
    ]
    assert sorted(p["id"] for p in publisher.predictions) == ["id-1", "id-3"]
    assert all(r.acked for r in records)


class FlakyHang(FakeClassifier):
    """The second call in each process hangs, whatever the texts (a flaky runtime, not a poison
    event): a fresh process answers the same call."""

    calls = 0

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        FlakyHang.calls += 1
        if FlakyHang.calls == 2:
            threading.Event().wait()
        return super().predict_batch(texts)


def test_a_hang_that_does_not_repeat_on_the_same_event_dead_letters_nothing() -> None:
    texts = [f"text {i}" for i in range(8)]
    _, publisher, _, failures, restarted = _run_with_hangs(texts, batch=2, model_class=FlakyHang)
    assert restarted and not failures and publisher.dead_letters == []
    assert sorted(p["id"] for p in publisher.predictions) == [f"id-{i}" for i in range(8)]
