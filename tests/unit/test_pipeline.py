"""The batching pipeline without Kafka: a fake publisher that acknowledges (or fails) sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from streamproc.errors import InferenceTimeout, PublishError, RecordTooLarge
from streamproc.stream.batching import AdaptiveBatchController, FixedBatchPolicy
from streamproc.stream.metrics import StreamMetrics
from streamproc.stream.model_calls import describe_offsets
from streamproc.stream.pipeline import BatchingPipeline
from streamproc.stream.publish_errors import PublishErrorKind, classify_publish_error
from streamproc.testing import FakeClassifier
from tests.fixtures.pipeline import (
    FakePublisher,
    PipelineFactory,
    Record,
    event,
    make_pipeline,
    run_pipeline,
)


def test_every_event_is_predicted_and_acked_after_its_delivery() -> None:
    log: list[str] = []
    records = [Record(i, event(i), log=log) for i in range(300)]
    publisher = FakePublisher()
    publisher.log = log
    model = FakeClassifier()
    pipeline = asyncio.run(run_pipeline(records, model=model, publisher=publisher))
    assert sorted(p["id"] for p in publisher.predictions) == sorted(f"id-{i}" for i in range(300))
    assert all(r.acked for r in records)
    assert pipeline.unsettled == 0
    for i in range(300):  # the ack of a record always follows the send of its prediction
        assert log.index(f"sent id-{i}") < log.index(f"ack {i}")
    for p in publisher.predictions:
        assert p["label"] == model.expected_label(f"text {p['id'].split('-')[1]}")
    assert max(model.batch_sizes) > 1, "a burst of 300 events should be batched"


def test_every_prediction_names_its_source_record_in_headers() -> None:
    records = [Record(i, event(i), partition=i % 3) for i in range(50)]
    publisher = FakePublisher()
    asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    sources = {
        prediction["id"]: headers
        for prediction, headers in zip(
            publisher.predictions, publisher.prediction_headers, strict=True
        )
    }
    for record in records:
        assert sources[f"id-{record.offset}"] == {
            "streamproc-source-topic": record.topic.encode(),
            "streamproc-source-partition": str(record.partition).encode(),
            "streamproc-source-offset": str(record.offset).encode(),
        }
    assert set(publisher.predictions[0]) == {  # the payload schema is unchanged
        "id", "label", "score", "probabilities", "model_version", "batch_size", "ts",
        "predicted_at", "latency_ms", "latency_from",
    }  # fmt: skip


def test_a_poison_event_is_dead_lettered_alone() -> None:
    records = [Record(i, event(i, "poison" if i == 7 else None)) for i in range(40)]
    publisher = FakePublisher()
    asyncio.run(
        run_pipeline(
            records,
            model=FakeClassifier(fail_on="poison"),
            publisher=publisher,
            policy=FixedBatchPolicy(size=16, window_s=0.05),
        )
    )
    assert len(publisher.predictions) == 39
    assert len(publisher.dead_letters) == 1
    value, headers = publisher.dead_letters[0]
    assert value == records[7].value
    assert headers["streamproc-reason"] == b"inference_error"
    assert headers["streamproc-source-offset"] == b"7"
    assert all(r.acked for r in records)


def test_bad_events_go_to_the_dead_letter_topic_with_their_reason() -> None:
    records = [
        Record(0, event(0)),
        Record(1, b"{nope"),
        Record(2, b'{"id": "x", "text": ""}'),
        Record(3, event(3)),
    ]
    publisher = FakePublisher()
    asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    reasons = sorted(h["streamproc-reason"] for _, h in publisher.dead_letters)
    assert reasons == [b"empty_text", b"malformed_json"]
    assert [p["id"] for p in publisher.predictions] == ["id-0", "id-3"]
    assert all(r.acked for r in records)


def test_a_dead_letter_takes_its_place_in_read_order_and_never_passes_the_watermark() -> None:
    # at_least_once: a bad record used to be dead-lettered (and acked) ahead of valid records
    # still in inference; the commit then passed them. Now it settles in read order.
    log: list[str] = []
    records = [Record(i, event(i), log=log) for i in range(20)]
    records.append(Record(20, b"{bad", log=log))
    publisher = FakePublisher()
    publisher.log = log
    watermarks: list[int | None] = []

    model = FakeClassifier(cost_s=0.01)

    def watch(pipeline: BatchingPipeline) -> None:
        model.on_batch = lambda texts: watermarks.append(pipeline.offsets.committable(("in", 0)))

    pipeline = asyncio.run(
        run_pipeline(
            records,
            model=model,
            publisher=publisher,
            policy=FixedBatchPolicy(size=4, window_s=0.01),
            before_start=watch,
        )
    )
    acks = [line for line in log if line.startswith("ack")]
    assert acks == [f"ack {i}" for i in range(21)], "settled in read order"
    assert log.index("ack 20") > log.index("sent id-19")
    assert len(publisher.dead_letters) == 1
    assert watermarks and all(w is not None and w < 20 for w in watermarks), watermarks
    assert pipeline.offsets.committable(("in", 0)) == 21


def test_failed_sends_are_retried_and_nothing_is_acked_before_success() -> None:
    log: list[str] = []
    records = [Record(i, event(i), log=log) for i in range(10)]
    publisher = FakePublisher(fail_first=15)
    publisher.log = log
    asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    ids = [p["id"] for p in publisher.predictions]
    assert set(ids) == {f"id-{i}" for i in range(10)}
    assert publisher.attempts > 15
    assert all(r.acked for r in records)
    for i in range(10):  # acked only after its prediction was acknowledged
        assert log.index(f"sent id-{i}") < log.index(f"ack {i}")
    # A failed record is sent again together with everything sent after it, in order, so the
    # copies written last are in input order (per-key order holds; earlier copies: duplicates).
    assert ids[-10:] == [f"id-{i}" for i in range(10)]


def test_batches_are_sent_before_earlier_ones_are_acknowledged() -> None:
    # Pipelined egress: the broker's acknowledgements are slow; sends of later batches must not
    # wait for them, and settlement still follows batch order.
    class SlowAcks(FakePublisher):
        def __init__(self) -> None:
            super().__init__()
            self.unacked_at_send: list[int] = []
            self.pending: list[asyncio.Future[Any]] = []

        async def _settle(self, on_success: Any) -> asyncio.Future[Any]:
            self.unacked_at_send.append(sum(not f.done() for f in self.pending))
            on_success()
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.05, fut.set_result, None)
            self.pending.append(fut)
            return fut

    log: list[str] = []
    records = [Record(i, event(i), log=log) for i in range(64)]
    publisher = SlowAcks()
    publisher.log = log
    outbox: list[int] = []

    def watch_outbox(pipeline: BatchingPipeline) -> None:
        gauge = pipeline._metrics.set_outbox
        pipeline._metrics.set_outbox = lambda n: (outbox.append(n), gauge(n))[1]  # type: ignore[method-assign]

    pipeline = asyncio.run(
        run_pipeline(
            records,
            model=FakeClassifier(),
            publisher=publisher,
            policy=FixedBatchPolicy(size=8, window_s=0.0),
            before_start=watch_outbox,
        )
    )
    assert max(publisher.unacked_at_send) > 8, "a later batch was sent while earlier were unacked"
    assert [line for line in log if line.startswith("ack")] == [f"ack {i}" for i in range(64)]
    # The outbox gauge saw more than one batch awaiting acknowledgement, and ends empty.
    assert max(outbox) > 8 and outbox[-1] == 0
    assert pipeline._metrics.registry.get_sample_value("streamproc_outbox_records") == 0


@pytest.mark.parametrize("max_buffered", [1, 4])
def test_a_full_buffer_applies_back_pressure(max_buffered: int) -> None:
    records = [Record(i, event(i), partition=i % 3) for i in range(50)]
    publisher = FakePublisher()
    model = FakeClassifier(cost_s=0.001)
    asyncio.run(run_pipeline(records, model=model, publisher=publisher, max_buffered=max_buffered))
    assert len(publisher.predictions) == 50
    assert max(model.batch_sizes) <= max_buffered


def test_a_lone_event_is_not_delayed(pipeline_factory: PipelineFactory) -> None:
    async def scenario() -> float:
        publisher = FakePublisher()
        pipeline = pipeline_factory(
            publisher=publisher,
            policy=AdaptiveBatchController(latency_target_s=0.5, max_size=64),
            max_buffered=100,
        )
        pipeline.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await pipeline.submit(Record(0, event(0)))
        while not publisher.predictions:
            await asyncio.sleep(0.001)
        elapsed = loop.time() - start
        await pipeline.drain()
        return elapsed

    # With no lag the controller must not wait to fill a batch (target 0.5 s would be visible).
    assert asyncio.run(scenario()) < 0.1


def test_a_dead_loop_is_raised_into_the_agent_not_swallowed(
    pipeline_factory: PipelineFactory,
) -> None:
    async def scenario() -> None:
        def broken_backlog() -> int:
            raise ValueError("lag source exploded")

        pipeline = pipeline_factory(
            policy=FixedBatchPolicy(size=1, window_s=0.0), max_buffered=10, backlog=broken_backlog
        )
        pipeline.start()
        await pipeline.submit(Record(0, event(0)))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="pipeline failed"):
            await pipeline.submit(Record(1, event(1)))
        await pipeline.stop()

    asyncio.run(scenario())


def test_exactly_once_mode_keeps_order_copartitions_and_commits_between_batches(
    pipeline_factory: PipelineFactory,
) -> None:
    log: list[str] = []
    commits: list[int] = []

    class OrderedPublisher(FakePublisher):
        async def send_prediction(
            self,
            key: bytes | None,
            value: bytes,
            partition: int | None,
            headers: list[tuple[str, bytes | None]],
        ) -> Any:
            log.append(f"pred p{partition} {orjson.loads(value)['id']}")
            return await super().send_prediction(key, value, partition, headers)

        async def send_dead_letter(
            self,
            key: bytes | None,
            value: bytes | None,
            partition: int | None,
            headers: list[tuple[str, bytes]],
        ) -> Any:
            log.append(f"dead p{partition} {value!r}")
            return await super().send_dead_letter(key, value, partition, headers)

    async def commit() -> None:
        commits.append(len(log))

    async def scenario() -> None:
        pipeline = pipeline_factory(
            publisher=OrderedPublisher(),
            policy=FixedBatchPolicy(size=8, window_s=0.01),
            max_buffered=100,
            transactional=True,
            commit=commit,
            commit_interval_s=0.02,
        )
        pipeline.start()
        for i in range(20):
            value = b"{bad" if i == 10 else event(i)
            await pipeline.submit(Record(i, value, partition=3, key=f"k{i}".encode()))
        await pipeline.drain(timeout_s=10)

    asyncio.run(scenario())
    assert len(log) == 20
    assert all(" p3 " in entry for entry in log), "co-partitioned with the input, keys or not"
    assert log[10] == "dead p3 b'{bad'", "the dead letter did not overtake earlier events"
    assert [e.split()[-1] for e in log[:10]] == [f"id-{i}" for i in range(10)]
    assert commits, "exactly_once commits from the delivery loop"


def test_exactly_once_drops_records_read_before_their_partition_went_back() -> None:
    # A rebalance kept the partition after its commit failed: the consumer rewinds the ledger and
    # seeks back to the committed offset. Records read before (here: in the model) must not be
    # published next to their re-read copies: the transaction would hold both.
    computing, release = threading.Event(), threading.Event()
    model = FakeClassifier()

    def hold_the_first_batch(texts: Sequence[str]) -> None:
        if not release.is_set():
            computing.set()
            release.wait(10)

    model.on_batch = hold_the_first_batch
    publisher = FakePublisher()

    async def scenario() -> BatchingPipeline:
        pipeline, inference = make_pipeline(
            model=model,
            publisher=publisher,
            policy=FixedBatchPolicy(size=4, window_s=0.0),
            max_buffered=100,
            transactional=True,
        )
        pipeline.start()
        old = [Record(i, event(i), partition=1) for i in range(4)]
        await pipeline.submit_many(old)
        await asyncio.to_thread(computing.wait, 10)
        async with pipeline.send_lock:  # what the consumer holds while it aborts
            pipeline.offsets.rewind(("in", 1))
        again = [Record(i, event(i), partition=1) for i in range(4)]
        await pipeline.submit_many(again)
        release.set()
        await pipeline.drain(timeout_s=10)
        inference.close()
        assert all(r.acked for r in old + again), "stale records are counted out, not held"
        return pipeline

    pipeline = asyncio.run(scenario())
    ids = [p["id"] for p in publisher.predictions]
    assert sorted(ids) == [f"id-{i}" for i in range(4)], f"each record published once: {ids}"
    assert pipeline.offsets.committable(("in", 1)) == 4
    assert pipeline.unsettled == 0 and pipeline.unsettled_bytes == 0


def test_a_hung_model_call_times_out_fails_the_pipeline_and_settles_nothing_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A model call that never returns (nor raises) used to stall the worker forever while it
    # kept its partitions. Now it fails the pipeline after the timeout, naming the suspects.
    release = threading.Event()
    model = FakeClassifier()

    def hang_on_the_second_batch(texts: Sequence[str]) -> None:
        if "text 5" in texts:
            release.wait(30)

    model.on_batch = hang_on_the_second_batch
    records = [Record(i, event(i), partition=2) for i in range(10)]
    failures: list[BaseException] = []

    async def scenario() -> BatchingPipeline:
        pipeline, inference = make_pipeline(
            model=model,
            publisher=FakePublisher(),
            policy=FixedBatchPolicy(size=5, window_s=0.0),
            max_buffered=100,
            on_failure=failures.append,
            inference_timeout_s=0.3,
        )
        pipeline.start()
        started = asyncio.get_running_loop().time()
        await pipeline.submit_many(records)  # all buffered before the first batch is taken
        while not pipeline.failed and asyncio.get_running_loop().time() - started < 10:
            await asyncio.sleep(0.01)
        elapsed = asyncio.get_running_loop().time() - started
        assert pipeline.failed, "the hung call was not timed out"
        assert elapsed < 5
        assert pipeline.inference_hung, "the call is still running in the inference thread"
        with pytest.raises(RuntimeError, match="pipeline failed"):
            await pipeline.submit(Record(10, event(10), partition=2))
        await pipeline.drain(timeout_s=5)  # returns at once: nothing will settle any more
        release.set()
        inference.close()
        return pipeline

    with caplog.at_level(logging.CRITICAL, logger="streamproc.stream.pipeline"):
        pipeline = asyncio.run(scenario())
    assert len(failures) == 1 and isinstance(failures[0], InferenceTimeout)
    assert "in[2] 5..9 (5)" in str(failures[0])
    assert "in[2] 5..9 (5)" in caplog.text, "the suspects' offsets are logged"
    assert [r.acked for r in records] == [True] * 5 + [False] * 5
    assert pipeline.offsets.committable(("in", 2)) == 5, "no commit passes the hung batch"
    assert pipeline.unsettled == 5
    assert not pipeline.inference_hung, "the call returned once released"
    registry = pipeline._metrics.registry
    assert registry.get_sample_value("streamproc_inference_timeouts_total") == 1
    assert registry.get_sample_value("streamproc_inference_errors_total") == 0


def test_a_model_that_raises_timeout_error_itself_is_an_ordinary_inference_error() -> None:
    # Only the pipeline's own deadline means "hung"; a TimeoutError from inside the model (a
    # remote call, say) is bisected and dead-lettered like any exception.
    class TimesOut(FakeClassifier):
        def predict_batch(self, texts: Sequence[str]) -> list[Any]:
            if "text 3" in texts:
                raise TimeoutError("upstream timed out")
            return super().predict_batch(texts)

    records = [Record(i, event(i)) for i in range(8)]
    publisher = FakePublisher()
    pipeline = asyncio.run(
        run_pipeline(
            records,
            model=TimesOut(),
            publisher=publisher,
            policy=FixedBatchPolicy(size=8, window_s=0.01),
            inference_timeout_s=5.0,
        )
    )
    assert len(publisher.predictions) == 7
    assert [h["streamproc-reason"] for _, h in publisher.dead_letters] == [b"inference_error"]
    assert all(r.acked for r in records) and not pipeline.failed


def test_describe_offsets_groups_by_partition_in_first_seen_order() -> None:
    records = [Record(7, None, 1), Record(3, None, 0), Record(9, None, 1), Record(4, None, 0)]
    assert describe_offsets(records) == "in[1] 7..9 (2), in[0] 3..4 (2)"
    assert describe_offsets([]) == ""


def test_the_stall_clock_runs_only_while_records_are_outstanding_and_unsettled() -> None:
    # What /readyz reads: how long records have been outstanding with nothing settling.
    release = threading.Event()
    model = FakeClassifier()

    def stuck_until_released(texts: Sequence[str]) -> None:
        release.wait(10)

    model.on_batch = stuck_until_released

    async def scenario() -> None:
        pipeline, inference = make_pipeline(
            model=model, publisher=FakePublisher(), policy=FixedBatchPolicy(size=4, window_s=0)
        )
        assert not pipeline.started
        pipeline.start()
        assert pipeline.started and pipeline.stalled_for() == 0.0
        await asyncio.sleep(0.3)  # idle for a while: not a stall, and not counted later
        await pipeline.submit_many([Record(i, event(i)) for i in range(3)])
        assert pipeline.stalled_for() < 0.1, "the clock starts when records arrive, not before"
        await asyncio.sleep(0.3)  # the model is stuck: nothing settles
        assert pipeline.unsettled == 3
        assert pipeline.stalled_for() >= 0.29
        release.set()
        while pipeline.unsettled:
            await asyncio.sleep(0.01)
        assert pipeline.stalled_for() == 0.0
        await pipeline.drain(timeout_s=5)
        assert not pipeline.started
        inference.close()

    asyncio.run(scenario())


def sized_event(i: int, size: int) -> bytes:
    """An event whose raw payload is exactly ``size`` bytes."""
    value = event(i, "x")
    return event(i, "x" * (size - len(value) + 1))


@pytest.mark.parametrize("max_buffered_bytes", [1000, 2500])
def test_a_byte_bound_applies_back_pressure(max_buffered_bytes: int) -> None:
    # 40 payloads of 500 bytes: the count bound (1000) alone would take them all at once; the
    # byte bound holds what is unsettled (buffered, computing, publishing) to its bytes.
    records = [Record(i, sized_event(i, 500)) for i in range(40)]
    assert {len(r.value or b"") for r in records} == {500}
    publisher = FakePublisher()
    model = FakeClassifier(cost_s=0.001)
    seen: list[int] = []

    async def scenario() -> BatchingPipeline:
        pipeline, inference = make_pipeline(
            model=model, publisher=publisher, max_buffered_bytes=max_buffered_bytes
        )
        pipeline.start()
        for start in range(0, 40, 8):  # fetched batches of 8, as the consumer hands them over
            await asyncio.wait_for(pipeline.submit_many(records[start : start + 8]), 10)
            seen.append(pipeline.unsettled_bytes)
        await pipeline.drain(timeout_s=20)
        inference.close()
        return pipeline

    pipeline = asyncio.run(scenario())
    assert len(publisher.predictions) == 40
    assert all(r.acked for r in records)
    assert max(seen) <= max_buffered_bytes, seen
    assert max(model.batch_sizes) <= max_buffered_bytes // 500
    assert pipeline.unsettled_bytes == 0


def test_a_record_larger_than_the_byte_bound_is_taken_alone_never_deadlocks() -> None:
    records = [
        Record(0, sized_event(0, 100)),
        Record(1, sized_event(1, 100)),
        Record(2, sized_event(2, 5000)),  # 10x the bound
        Record(3, sized_event(3, 100)),
    ]
    publisher = FakePublisher()
    model = FakeClassifier(cost_s=0.001)
    unsettled_before: list[int] = []

    async def scenario() -> None:
        pipeline, inference = make_pipeline(
            model=model,
            publisher=publisher,
            policy=FixedBatchPolicy(size=8, window_s=0.01),
            max_buffered_bytes=500,
        )
        pipeline.start()
        for record in records:
            await asyncio.wait_for(pipeline.submit(record), 10)  # no deadlock
            unsettled_before.append(pipeline.unsettled)
        await pipeline.drain(timeout_s=10)
        inference.close()

    asyncio.run(scenario())
    assert [p["id"] for p in publisher.predictions] == [f"id-{i}" for i in range(4)]
    assert all(r.acked for r in records)
    assert unsettled_before[2] == 1, "the oversized record waited until it was alone"
    assert 1 in model.batch_sizes


class RefusingPublisher(FakePublisher):
    """Acknowledges everything except what ``refuse(kind, value)`` returns an error for: raised
    at once by the send (``raise_now``, like the producer's own size check) or via the future
    (like the broker's answer)."""

    def __init__(self, refuse: Any, *, raise_now: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.raise_now = raise_now

    async def _refusable(self, kind: str, value: bytes | None, on_success: Any) -> Any:
        error = self.refuse(kind, value)
        if error is None:
            return await self._settle(on_success)
        self.attempts += 1
        if self.raise_now:
            raise error
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_exception(error)
        return fut

    async def send_prediction(
        self,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes | None]],
    ) -> Any:
        out = orjson.loads(value)
        return await self._refusable(
            "prediction", value, lambda: (self.predictions.append(out), self.log.append(out["id"]))
        )

    async def send_dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes]],
    ) -> Any:
        return await self._refusable(
            "dead_letter", value, lambda: self.dead_letters.append((value, dict(headers)))
        )


def _fail_pipeline(records: list[Record], publisher: FakePublisher, **options: Any) -> Any:
    """Run ``records`` through a pipeline expected to fail; return (its failure, the metrics)."""
    metrics = StreamMetrics()

    async def scenario() -> BaseException | None:
        pipeline, inference = make_pipeline(
            policy=FixedBatchPolicy(size=4, window_s=0.0),
            publisher=publisher,
            metrics=metrics,
            max_buffered=100,
            topics={"prediction": "out", "dead_letter": "dlq"},
            **options,
        )
        pipeline.start()
        for record in records:
            with contextlib.suppress(RuntimeError):  # raised once the pipeline failed
                await pipeline.submit(record)
        for _ in range(400):
            if pipeline.failed:
                break
            await asyncio.sleep(0.01)
        await pipeline.stop()
        inference.close()
        return pipeline._failure

    return asyncio.run(scenario()), metrics


def _failures(metrics: StreamMetrics, outcome: str) -> float:
    return (
        metrics.registry.get_sample_value("streamproc_publish_failures_total", {"outcome": outcome})
        or 0.0
    )


def test_a_publish_no_retry_can_fix_stops_the_pipeline_with_one_clear_line() -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    records = [Record(i, event(i) if i != 5 else b"{bad") for i in range(10)]
    publisher = RefusingPublisher(
        lambda kind, _: TopicAuthorizationFailedError("dlq") if kind == "dead_letter" else None
    )
    failure, metrics = _fail_pipeline(records, publisher, publish_timeout_s=60)
    assert isinstance(failure, PublishError), failure
    message = str(failure)
    assert "\n" not in message
    assert "dead letter of in[0]@5 to topic dlq" in message
    assert "TopicAuthorizationFailedError" in message
    assert publisher.attempts <= 12, "not retried"
    assert [r.acked for r in records[:4]] == [True] * 4, "the batch before it settled"
    assert not any(r.acked for r in records[5:]), "nothing from the failed record on settles"
    assert _failures(metrics, "stopped") == 1


def test_a_record_unacknowledged_past_the_publish_timeout_stops_the_pipeline() -> None:
    records = [Record(i, event(i)) for i in range(4)]
    publisher = RefusingPublisher(lambda kind, _: ConnectionError("broker unreachable"))
    failure, metrics = _fail_pipeline(records, publisher, publish_timeout_s=0.3)
    assert isinstance(failure, PublishError), failure
    assert "prediction of in[0]@0 to topic out: not acknowledged within 0.3s" in str(failure)
    assert "STREAMPROC_PUBLISH_TIMEOUT_S" in str(failure)
    assert metrics.registry.get_sample_value("streamproc_publish_retries_total") >= 4
    assert not any(r.acked for r in records)


@pytest.mark.parametrize("raise_now", [True, False])
def test_a_prediction_too_large_to_publish_is_dead_lettered_truncated(raise_now: bool) -> None:
    from aiokafka.errors import CorruptRecordException

    long_text = "y" * 9_000  # under max_event_bytes (10,000), still cut for the dead letter
    payloads = [event(0), event(1, long_text), event(2)]
    records = [Record(i, value) for i, value in enumerate(payloads)]

    def refuse(kind: str, value: bytes | None) -> BaseException | None:
        if kind != "prediction" or b"id-1" not in (value or b""):
            return None
        return RecordTooLarge("out: too large") if raise_now else CorruptRecordException()

    publisher = RefusingPublisher(refuse, raise_now=raise_now)
    pipeline = asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    ids = [p["id"] for p in publisher.predictions]  # id-2 twice when re-sent after id-1's
    assert ids[0] == "id-0" and ids[-1] == "id-2" and set(ids) == {"id-0", "id-2"}
    [(value, headers)] = publisher.dead_letters
    assert headers["streamproc-reason"] == b"publish_failed"
    assert headers["streamproc-source-offset"] == b"1"
    assert "streamproc-truncated-from" not in headers, "it fit: not cut"
    assert value == payloads[1]
    assert all(r.acked for r in records)
    assert pipeline.offsets.committable(("in", 0)) == 3
    assert _failures(pipeline._metrics, "dead_lettered") == 1


def test_publish_errors_are_classified_through_their_causes() -> None:
    from aiokafka import errors as kafka_errors

    def wrapped(error: BaseException) -> BaseException:
        try:
            raise RuntimeError("Error while sending") from error  # as Faust's ProducerSendError
        except RuntimeError as outer:
            return outer

    fatal = kafka_errors.TopicAuthorizationFailedError("t")
    assert classify_publish_error(wrapped(fatal)) is PublishErrorKind.FATAL
    assert classify_publish_error(PublishError("x")) is PublishErrorKind.FATAL
    assert classify_publish_error(RecordTooLarge("x")) is PublishErrorKind.RECORD
    # A bug (a send with the wrong arguments) is not a broker that is away: never retried.
    bug = TypeError("send_prediction() takes 4 positional arguments but 5 were given")
    assert classify_publish_error(bug) is PublishErrorKind.FATAL
    for retriable in (
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.UnknownTopicOrPartitionError(),
        kafka_errors.MessageSizeTooLargeError(),  # the broker's limit: an operator can raise it
        ConnectionError("broker unreachable"),
    ):
        assert classify_publish_error(wrapped(retriable)) is PublishErrorKind.RETRY, retriable


def test_librdkafka_delivery_errors_are_classified_by_code() -> None:
    from confluent_kafka import KafkaError

    from streamproc.stream.egress import DeliveryError

    def kind(code: int, *, fatal: bool = False) -> PublishErrorKind:
        return classify_publish_error(DeliveryError(KafkaError(code, fatal=fatal)))

    for code in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
    ):
        assert kind(code) is PublishErrorKind.FATAL, code
    # librdkafka's own fatal errors (e.g. the idempotent producer's sequence lost), whatever code
    assert kind(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True) is PublishErrorKind.FATAL
    assert kind(KafkaError.INVALID_MSG) is PublishErrorKind.RECORD  # the broker: corrupt
    for code in (
        KafkaError._MSG_TIMED_OUT,  # unacknowledged for message.timeout.ms = the publish timeout
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.MSG_SIZE_TOO_LARGE,  # the broker's limit: an operator can raise it
        KafkaError._TRANSPORT,
    ):
        assert kind(code) is PublishErrorKind.RETRY, code


def test_a_record_whose_header_key_is_not_utf8_is_dead_lettered() -> None:
    # aiokafka's reader (made lenient, stream/lenient_records.py) hands such a key over with
    # its bytes as lone surrogates.
    records = [Record(0, event(0)), Record(1, event(1), headers=[("\udcffkey", b"v")])]
    records.append(Record(2, event(2), headers=[("naïve", b"ok")]))
    publisher = FakePublisher()
    asyncio.run(run_pipeline(records, model=FakeClassifier(), publisher=publisher))
    assert [p["id"] for p in publisher.predictions] == ["id-0", "id-2"]
    [(value, headers)] = publisher.dead_letters
    assert headers["streamproc-reason"] == b"invalid_header"
    assert headers["\\xffkey"] == b"v"
    assert value == records[1].value
    assert all(r.acked for r in records)


def test_an_implausible_ts_does_not_age_the_buffer_for_the_controller() -> None:
    """A producer's ts in seconds (read as 1970) or days ahead must not make the buffer look
    decades old (or newer than now) to the batching controller: the Kafka timestamp is used."""
    import time

    ages: list[float] = []

    class Recording(AdaptiveBatchController):
        def decide(self, *, oldest_age_s: float, **kwargs: Any) -> Any:
            ages.append(oldest_age_s)
            return super().decide(oldest_age_s=oldest_age_s, **kwargs)

    now = time.time()
    payloads = [
        orjson.dumps({"id": "seconds", "text": "a", "ts": now}),  # seconds, not milliseconds
        orjson.dumps({"id": "future", "text": "b", "ts": (now + 86_400) * 1000}),
        orjson.dumps({"id": "ancient", "text": "c", "ts": 1.0}),
    ]
    records = [Record(i, p, timestamp_s=now) for i, p in enumerate(payloads)]
    publisher = FakePublisher()
    asyncio.run(
        run_pipeline(
            records,
            model=FakeClassifier(),
            publisher=publisher,
            policy=Recording(latency_target_s=0.1, max_size=32),
        )
    )
    assert len(publisher.predictions) == 3 and ages
    assert all(0.0 <= age < 5.0 for age in ages), ages
    assert {p["latency_from"] for p in publisher.predictions} == {"kafka_timestamp"}
