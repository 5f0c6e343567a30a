"""The online path between the Faust agent and the model: buffer → batch → infer → publish → ack.

Three stages run concurrently on the event loop, so consuming, computing and producing overlap:

1. :meth:`BatchingPipeline.submit` (called by the agent per record) decodes and validates; every
   record joins the buffer in read order, a bad one carrying its dead-letter reason (bounded: a
   full buffer blocks the agent, which is Kafka back-pressure). Two bounds: ``max_buffered``
   records in the buffer, and ``max_buffered_bytes`` of raw payload held by records not settled
   yet (buffered, in inference or awaiting the broker: each keeps its payload until it settles).
   A record larger than the byte bound is still taken when nothing else is outstanding.
2. :meth:`BatchingPipeline._batch_loop` asks the :class:`~streamproc.stream.batching.BatchPolicy`
   how many buffered events to run and how long to wait for more, then runs ``predict_batch`` off
   the event loop: awaited from the model's child process (the default, see
   :mod:`streamproc.model.process`), or in the inference thread.
3. :meth:`BatchingPipeline._delivery_loop` hands each batch's outputs to the producer in order
   without waiting for the previous batch's acknowledgements (pipelined egress), and
   :meth:`BatchingPipeline._settle_loop` settles batches in order as the broker acknowledges
   them, in the :class:`~streamproc.stream.offsets.OffsetLedger`. The consumer commits the
   ledger's watermark — never an offset above a record whose outcome is not durable yet. A failed
   send stops new sends, and the failed record and every record sent after it are sent again, in
   order, with backoff, so one key's outputs never overtake each other. At-least-once.

Output records are built and handed to the producer by
:class:`~streamproc.stream.outputs.OutputSender`, which says what a refused send means (a
record too large is replaced, an error no retry can fix stops the worker). A record still
unacknowledged ``publish_timeout_s`` after its first send fails the pipeline with
:class:`~streamproc.errors.PublishError` too — the worker stops with that one line rather than
retry in silence.

A batch's model calls go through :class:`~streamproc.stream.model_calls.ModelCaller`: an event
whose inference raises, or hangs alone on two fresh model processes, is dead-lettered with
reason ``inference_error`` / ``inference_timeout``; nothing is dropped. A model process that
dies, or a model that is wedged, fails the batch loop
(:class:`~streamproc.errors.ModelProcessDied`, :class:`~streamproc.errors.InferenceTimeout`)
and nothing of the batch is acknowledged: the worker stops with an error and the group
re-delivers the batch from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.errors import EventError
from streamproc.events import TextEvent, decode_event, latency_origin
from streamproc.model.base import Prediction, TextClassifier
from streamproc.stream.batching import BatchPolicy
from streamproc.stream.hot_reload import close_model
from streamproc.stream.inference import InferenceThread
from streamproc.stream.lenient_records import invalid_header_key
from streamproc.stream.metrics import StreamMetrics
from streamproc.stream.model_calls import ModelCaller
from streamproc.stream.offsets import OffsetLedger
from streamproc.stream.outputs import Outgoing, OutputSender, Publisher, SourceRecord, refused
from streamproc.stream.publish_errors import PublishErrorKind, classify_publish_error
from streamproc.tracing import BatchTracer

__all__ = ["BatchingPipeline", "Publisher", "SourceRecord"]

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0


@dataclass(slots=True)
class _Buffered:
    record: SourceRecord
    event: TextEvent | None  # None: invalid, ``error`` says why (dead-lettered in read order)
    arrived: float  # monotonic clock when it entered the buffer
    origin_s: float  # when the event was produced: a plausible payload ts, else record timestamp
    error: EventError | None = None


class BatchingPipeline:
    """Adaptive micro-batching between a consumer and a model, with at-least-once delivery."""

    def __init__(
        self,
        *,
        model: Callable[[], TextClassifier],
        policy: BatchPolicy,
        publisher: Publisher,
        metrics: StreamMetrics,
        inference: InferenceThread,
        max_event_bytes: int,
        max_buffered: int,
        backlog: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_batches_in_flight: int = 4,
        transactional: bool = False,
        commit: Callable[[], Awaitable[Any]] | None = None,
        commit_interval_s: float = 1.0,
        on_failure: Callable[[BaseException], None] | None = None,
        inference_timeout_s: float | None = None,
        max_buffered_bytes: int | None = None,
        publish_timeout_s: float | None = None,
        topics: Mapping[str, str] | None = None,
        batch_tracer: BatchTracer | None = None,
    ) -> None:
        # exactly_once: Faust runs one producer transaction per partition number and commits the
        # input offsets of partition p inside transaction p, so every record we publish for an
        # input from partition p must go to partition p (topics are co-partitioned), and the
        # source record is acked as soon as its output is *in* the transaction: the commit then
        # makes both visible atomically, or neither.
        self._transactional = transactional
        # exactly_once: commits are made here, between batches, never while a batch is being
        # put into the transactions (Faust's own timer could commit half a batch's outputs).
        self._commit = commit
        self._commit_interval_s = commit_interval_s
        self._last_commit = 0.0
        self._model = model  # read once per batch: a hot reload switches between batches
        self._policy = policy
        self._metrics = metrics
        self._caller = ModelCaller(
            inference=inference, metrics=metrics, timeout_s=inference_timeout_s, clock=clock
        )
        self._outputs = OutputSender(
            publisher=publisher,
            metrics=metrics,
            max_event_bytes=max_event_bytes,
            transactional=transactional,
            publish_timeout_s=publish_timeout_s,
            topics=topics,
        )
        self._max_event_bytes = max_event_bytes
        self._batch_tracer = batch_tracer  # STREAMPROC_TRACING=otel: one span per batch
        self._max_buffered = max_buffered
        self._max_buffered_bytes = sys.maxsize if max_buffered_bytes is None else max_buffered_bytes
        self._unsettled_bytes = 0  # raw payload bytes of the records counted in _unsettled
        self._backlog = backlog
        self._clock = clock
        self._wall = wall_clock
        self._buffer: deque[_Buffered] = deque()
        self._grew = asyncio.Event()
        self._has_space = asyncio.Event()
        self._has_space.set()
        # Bounded: if delivery stalls (broker away), inference stops and then the agent blocks.
        self._outbox: asyncio.Queue[list[Outgoing] | None] = asyncio.Queue(max_batches_in_flight)
        # at_least_once: batches handed to the producer, oldest first, with their ack futures;
        # bounded so a stalled broker stops the delivery loop, then inference, then the agent.
        self._in_flight: deque[tuple[list[Outgoing], list[Awaitable[Any]], float]] = deque()
        self._in_flight_slots = asyncio.Semaphore(max_batches_in_flight)
        self._sent = asyncio.Event()
        self._send_lock = asyncio.Lock()  # held while a batch is being handed to the producer
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._unsettled = 0  # consumed records not yet acked (buffered, computing or publishing)
        # Last time work advanced: something settled, or records arrived at an idle pipeline.
        self._progress_at = clock()
        self._failure: BaseException | None = None  # a loop that died: surfaced to the agent
        self._on_failure = on_failure  # the worker stops (non-zero exit) rather than idle
        # Read → settled → committable, per partition: the consumer commits only its watermark.
        self.offsets = OffsetLedger()
        # id(record) -> the ledger epoch it was read in (exactly_once drops stale records).
        self._epochs: dict[int, int] = {}
        # exactly_once: held from a record's staleness check until its send returns, so the
        # consumer can abort a transaction with no send of a stale record still on its way in.
        self.send_lock = asyncio.Lock()
        self._batch_model: TextClassifier | None = None  # the model the batch in progress calls
        self._batch_ended = asyncio.Event()  # set (and replaced) each time a model call ends

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._batch_loop(), name="streamproc-batch-loop"),
                asyncio.create_task(self._delivery_loop(), name="streamproc-delivery-loop"),
                asyncio.create_task(self._settle_loop(), name="streamproc-settle-loop"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._on_loop_done)

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        # A dead loop would stall the worker while it keeps its partitions: record it (submit
        # raises it) and tell the owner, which stops the worker with an error so the group moves
        # the partitions and a restart resumes from the last commit.
        error = None if task.cancelled() else task.exception()
        if error is not None:
            if self._failure is None:
                self._failure = error
                log.critical("pipeline loop %s died", task.get_name(), exc_info=error)
                if self._on_failure is not None:
                    self._on_failure(error)
            self._grew.set()
            self._has_space.set()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Finish what is buffered and in flight (graceful shutdown), then stop the loops."""
        self._stopping = True
        self._grew.set()
        deadline = self._clock() + timeout_s
        while self._unsettled and self._failure is None and self._clock() < deadline:
            await asyncio.sleep(0.02)
        await self.stop()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # failures were logged
                await task

    async def retire(self, model: TextClassifier) -> None:
        """Close a model that was swapped out of the slot, once no batch calls it any more.

        The batch in progress read the slot before the swap and may still call the old model
        (a failed batch is retried in halves), so :func:`~streamproc.stream.hot_reload.close_model`
        (a child process's model stops its child) waits for that batch's model calls to end."""
        while self._batch_model is model:
            await self._batch_ended.wait()
        await asyncio.get_running_loop().run_in_executor(None, close_model, model)

    @property
    def publisher(self) -> Publisher:
        return self._outputs.publisher

    @publisher.setter
    def publisher(self, publisher: Publisher) -> None:  # tests swap in a fake
        self._outputs.publisher = publisher

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def started(self) -> bool:
        """The loops were started and not stopped (they may have failed: see :attr:`failed`)."""
        return bool(self._tasks)

    def stalled_for(self) -> float:
        """Seconds records have been outstanding with nothing settling; 0 when none are."""
        if not self._unsettled:
            return 0.0
        return max(0.0, self._clock() - self._progress_at)

    @property
    def failed(self) -> bool:
        """A loop died: nothing will settle any more (the agent raises on its next submit)."""
        return self._failure is not None

    @property
    def inference_hung(self) -> bool:
        """A model call timed out and has still not returned: it holds the inference thread
        (which the interpreter would wait for at exit)."""
        return self._caller.hung

    @property
    def unsettled_bytes(self) -> int:
        """Raw payload bytes of the :attr:`unsettled` records (what ``max_buffered_bytes``
        bounds)."""
        return self._unsettled_bytes

    @property
    def unsettled(self) -> int:
        """Records taken from the consumer whose outcome the broker has not acknowledged yet."""
        return self._unsettled

    # -- stage 1: decode and buffer ----------------------------------------------------------
    async def submit(self, record: SourceRecord) -> None:
        """Take one consumed record (Faust's per-event stream path; tests)."""
        await self.submit_many((record,))

    async def submit_many(self, records: Sequence[SourceRecord]) -> None:
        """Take a fetched batch of records in read order; blocks while the buffer is full
        (back-pressure). One metrics and controller update per call, not per record.

        Cancellation-safe (the consumer cancels it when a rebalance suspends fetching): a record
        is registered in the ledger only as it enters the buffer, so one not taken yet is simply
        read again from the committed offset."""
        if self._failure is not None:
            raise RuntimeError("the batching pipeline failed") from self._failure
        taken = 0
        started = self._clock()
        try:
            for record in records:
                size = len(record.value or b"")
                if self._no_room_for(size):
                    self._note_arrivals(taken)
                    taken = 0
                    while self._no_room_for(size) and self._failure is None:
                        self._has_space.clear()
                        self._grew.set()  # the buffer cannot grow now: run what it holds
                        await self._has_space.wait()
                    if self._failure is not None:
                        raise RuntimeError("the batching pipeline failed") from self._failure
                self._buffer.append(self._accept(record, size))
                taken += 1
        finally:
            self._note_arrivals(taken)
            self._metrics.record_stage("ingress", self._clock() - started)

    def _no_room_for(self, size: int) -> bool:
        """Whether a record of ``size`` payload bytes must wait: the buffer holds
        ``max_buffered`` records, or its bytes would take the unsettled ones past
        ``max_buffered_bytes`` (unless nothing is unsettled: one record, however large, is
        always taken, so an oversized one cannot block the worker)."""
        if len(self._buffer) >= self._max_buffered:
            return True
        return self._unsettled > 0 and self._unsettled_bytes + size > self._max_buffered_bytes

    def _accept(self, record: SourceRecord, size: int) -> _Buffered:
        epoch = self.offsets.read((record.topic, record.partition), record.offset)
        if self._transactional:
            self._epochs[id(record)] = epoch
        if not self._unsettled:  # idle until now: the stall clock starts here
            self._progress_at = self._clock()
        self._unsettled += 1
        self._unsettled_bytes += size
        try:
            bad_key = invalid_header_key(record.headers) if record.headers else None
            if bad_key is not None:
                raise EventError("invalid_header", f"header key {bad_key!r} is not UTF-8")
            event: TextEvent | None = decode_event(record.value, max_bytes=self._max_event_bytes)
            failure = None
        except EventError as error:
            # Buffered like any event: a dead letter never overtakes earlier records of its
            # partition, so outputs and settlements follow read order in both guarantees.
            event, failure = None, error
        ts_ms = event.ts_ms if event is not None else None
        record_ms = record.timestamp_s * 1000.0 if record.timestamp_s else None
        origin_ms, _ = latency_origin(ts_ms, record_ms)  # a ts in seconds is not trusted
        origin_s = origin_ms / 1000.0 if origin_ms is not None else self._wall()
        return _Buffered(record, event, self._clock(), origin_s, failure)

    def _note_arrivals(self, count: int) -> None:
        if count:
            self._metrics.record_consumed(count)
            self._policy.record_arrivals(count=count, now=self._clock())
            self._grew.set()

    # -- stage 2: batch and infer ------------------------------------------------------------
    async def _batch_loop(self) -> None:
        while True:
            while not self._buffer:
                self._grew.clear()
                await self._grew.wait()
            now = self._clock()
            oldest_age = max(0.0, self._wall() - self._buffer[0].origin_s)
            decision = self._policy.decide(
                now=now, buffered=len(self._buffer), lag=self._backlog(), oldest_age_s=oldest_age
            )
            waited = await self._wait_for(decision.size, decision.wait_s)
            batch = [self._buffer.popleft() for _ in range(min(decision.size, len(self._buffer)))]
            self._metrics.set_buffered(len(self._buffer))
            self._metrics.set_unsettled_bytes(self._unsettled_bytes)
            self._has_space.set()
            model = self._batch_model = self._model()
            tracer = self._batch_tracer
            span = tracer.start([i.record for i in batch], model.version) if tracer else None
            # Model time is measured where the model runs (inference thread or child process):
            # the hand-off and GIL waits around it would otherwise inflate the cost model the
            # controller sizes batches by.
            try:
                predictions, failed, inference_s = await self._predict(model, batch)
            finally:
                self._batch_model = None
                self._batch_ended.set()
                self._batch_ended = asyncio.Event()
            if predictions:
                self._policy.record_batch(
                    size=len(batch), duration_s=inference_s, now=self._clock()
                )
            self._metrics.record_batch(
                size=len(batch),
                wait_s=waited,
                inference_s=inference_s,
                target_size=decision.size,
                model_version=model.version,  # the batch's, even if a reload swapped meanwhile
            )
            outgoing = self._encode(batch, predictions, failed, model.version)
            if tracer is not None:
                tracer.end(span, dead_letters=len(batch) - len(predictions))
            await self._outbox.put(outgoing)

    async def _wait_for(self, size: int, wait_s: float) -> float:
        """Wait until ``size`` events are buffered or ``wait_s`` passed; return the time waited."""
        if wait_s <= 0 or len(self._buffer) >= size or self._stopping:
            return 0.0
        start = self._clock()
        deadline = start + wait_s
        # A blocked submitter (a bound reached) clears _has_space: no more will come, run now.
        while len(self._buffer) < size and not self._stopping and self._has_space.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._grew.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), remaining)
        return self._clock() - start

    async def _predict(
        self, model: TextClassifier, batch: list[_Buffered]
    ) -> tuple[dict[int, Prediction], dict[int, EventError], float]:
        """The valid events' outcomes by batch index (see :class:`ModelCaller`)."""
        valid = [i for i, item in enumerate(batch) if item.event is not None]
        texts = [batch[i].event.text for i in valid]  # type: ignore[union-attr]
        predictions, failed, seconds = await self._caller.predict(
            model, texts, [batch[i].record for i in valid]
        )
        return (
            {valid[j]: p for j, p in predictions.items()},
            {valid[j]: e for j, e in failed.items()},
            seconds,
        )

    def _encode(
        self,
        batch: list[_Buffered],
        predictions: dict[int, Prediction],
        failed: dict[int, EventError],
        version: str,
    ) -> list[Outgoing]:
        now = self._wall()
        outgoing = []
        for index, item in enumerate(batch):
            if item.event is None or index in failed:
                error = item.error or failed[index]
                outgoing.append(self._outputs.dead_letter(item.record, error))
                continue
            outgoing.append(
                self._outputs.prediction(
                    item.record,
                    item.event,
                    predictions[index],
                    model_version=version,
                    batch_size=len(batch),
                    origin_s=item.origin_s,  # arrival, for a record with no timestamp at all
                    now_s=now,
                )
            )
        return outgoing

    # -- stage 3: publish, confirm, ack --------------------------------------------------------
    async def _delivery_loop(self) -> None:
        while True:
            if self._commit is None or not self._outbox.empty():
                outgoing = await self._outbox.get()
            else:  # exactly_once: an idle worker must still commit its open transactions
                try:
                    outgoing = await asyncio.wait_for(self._outbox.get(), self._commit_interval_s)
                except TimeoutError:
                    await self._maybe_commit()
                    continue
            if outgoing is None:
                return
            if self._transactional:
                self._record_published(await self._deliver_in_transaction(outgoing))
                continue
            await self._in_flight_slots.acquire()  # released when the batch is settled
            async with self._send_lock:
                started = self._clock()
                futures = await self._outputs.send_in_order(outgoing)
                self._in_flight.append((outgoing, futures, self._clock()))
                self._metrics.record_stage("publish", self._clock() - started)
                self._metrics.set_outbox(self._unacknowledged())
            self._sent.set()

    def _unacknowledged(self) -> int:
        """Outputs handed to the producer that the broker has not acknowledged yet."""
        return sum(len(outgoing) for outgoing, _, _ in self._in_flight)

    async def _settle_loop(self) -> None:
        """at_least_once: settle batches in the order they were sent, as the broker acks them."""
        while True:
            while not self._in_flight:
                self._sent.clear()
                await self._sent.wait()
            outgoing, futures, sent_at = self._in_flight[0]
            results = await asyncio.gather(*futures, return_exceptions=True)
            if any(isinstance(result, BaseException) for result in results):
                await self._resend_in_order(results)  # settles every batch in flight
                self._metrics.set_outbox(self._unacknowledged())
                continue
            self._in_flight.popleft()
            self._metrics.set_outbox(self._unacknowledged())
            self._metrics.record_stage("ack", self._clock() - sent_at)
            self._settle(outgoing)
            self._record_published(outgoing)
            self._in_flight_slots.release()

    async def _resend_in_order(self, head_results: list[Any]) -> None:
        """A send failed: stop sending, then send the failed record and every record sent after
        it again, in order, until the broker acknowledges them all; settle everything in flight.

        Records after the failed one may have been acknowledged already: they are sent again
        (duplicates, at-least-once) so that no output overtakes an earlier one of its key."""
        async with self._send_lock:  # the delivery loop cannot hand over a new batch meanwhile
            batches = list(self._in_flight)
            results = [head_results] + [
                await asyncio.gather(*futures, return_exceptions=True)
                for _, futures, _ in batches[1:]
            ]
            items = [item for outgoing, _, _ in batches for item in outgoing]
            first_sent = [sent_at for outgoing, _, sent_at in batches for _ in outgoing]
            flat = [result for batch_results in results for result in batch_results]
            delay = _RETRY_FIRST_S
            while True:
                first = next(
                    (i for i, result in enumerate(flat) if isinstance(result, BaseException)),
                    None,
                )
                if first is None:
                    break
                error = flat[first]
                kind = classify_publish_error(error)
                if kind is PublishErrorKind.FATAL:
                    raise self._outputs.failure(items[first], error) from error
                if kind is PublishErrorKind.RECORD:  # the same bytes can never be sent
                    items[first] = self._outputs.replacement(items[first], error)
                elif (
                    self._outputs.publish_timeout_s is not None
                    and self._clock() - first_sent[first] >= self._outputs.publish_timeout_s
                ):
                    raise self._outputs.failure(items[first], error, timed_out=True) from error
                else:  # the broker may accept it later (it is back, or its limits were raised)
                    self._metrics.record_publish_retry(len(items) - first)
                    log.warning(
                        "record %d of %d in flight not acknowledged by the broker (%r); retrying "
                        "it and the %d sent after it, in order, in %.1fs",
                        first + 1,
                        len(items),
                        error,
                        len(items) - first - 1,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                futures = await self._outputs.send_in_order(items, first)
                flat[first:] = await asyncio.gather(*futures, return_exceptions=True)
            start = 0
            for outgoing, _, _ in batches:
                outgoing[:] = items[start : start + len(outgoing)]  # with any replacements
                start += len(outgoing)
                self._in_flight.popleft()
                self._settle(outgoing)
                self._record_published(outgoing)
                self._in_flight_slots.release()

    def _record_published(self, outgoing: list[Outgoing]) -> None:
        latencies = [o.latency_s for o in outgoing if o.kind == "prediction"]
        if latencies:
            self._metrics.record_predictions(latencies)

    def _settle(self, outgoing: list[Outgoing], *, stale: bool = False) -> None:
        """Count ``outgoing``'s source records as done. ``stale``: they are dropped unpublished
        (exactly_once, read again since): counted out, never settled in the ledger."""
        self._progress_at = self._clock()
        for item in outgoing:
            for record in item.settles:
                if not stale:
                    self.offsets.settle((record.topic, record.partition), record.offset)
                self._epochs.pop(id(record), None)
                record.ack()  # Faust's own bookkeeping (wait_empty on rebalance and stop)
                self._unsettled -= 1
                self._unsettled_bytes -= len(record.value or b"")
        self._has_space.set()  # bytes were freed (a submitter may wait on the byte bound)

    def _stale(self, item: Outgoing) -> bool:
        """exactly_once: whether a source record of ``item`` was read in an epoch the ledger
        has left (its partition is read again from the committed offset after a rebalance):
        its output would join the transaction a second time, beside the re-read record's."""
        return any(
            not self.offsets.current((r.topic, r.partition), self._epochs.get(id(r), -1))
            for r in item.settles
        )

    async def _deliver_in_transaction(self, outgoing: list[Outgoing]) -> list[Outgoing]:
        """exactly_once: put each record into its open transaction and ack its source at once;
        returns what was sent.

        The ack follows its send with no await in between, so whenever Faust commits, the
        transaction holds exactly the outputs of the offsets it commits: both become visible
        together, or (if the worker dies first) neither. A failed send cannot be retried inside
        a transaction: it is raised, the worker restarts, and the aborted inputs are read again.

        A record whose partition went back to its committed offset since it was read (a
        rebalance that kept the partition after a commit failed; the consumer aborts that
        transaction) is *stale*: it is dropped unpublished, and its re-read copy publishes it.
        """
        futures = []
        sent: list[Outgoing] = []
        for item in outgoing:
            async with self.send_lock:
                if self._stale(item):  # read again since the rebalance: that copy publishes it
                    log.info("not publishing %s: its partition is being read again", item.where)
                    self._settle([item], stale=True)
                    continue
                item, future = await self._outputs.send(item)
            sent.append(item)
            futures.append(future)
            if refused(future):  # nothing after it may join the transaction
                break
            self._settle([item])
        if (
            self._commit is not None
            and self._clock() - self._last_commit >= self._commit_interval_s
        ):
            self._last_commit = self._clock()
            await self._commit()
        results = await asyncio.gather(*futures, return_exceptions=True)
        for item, result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                if classify_publish_error(result) is PublishErrorKind.FATAL:
                    raise self._outputs.failure(item, result) from result
                raise result
        return sent

    async def _maybe_commit(self) -> None:
        if (
            self._commit is not None
            and self._clock() - self._last_commit >= self._commit_interval_s
        ):
            self._last_commit = self._clock()
            await self._commit()
