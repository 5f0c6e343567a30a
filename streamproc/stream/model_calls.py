"""One batch's model calls, made safe for the stream: a failure or a hang takes down only the
event that causes it, and a model that cannot be trusted any more stops the worker.

:class:`ModelCaller` is stage 2 of :class:`~streamproc.stream.pipeline.BatchingPipeline` minus the
batching: given a batch's texts, it returns a prediction or a dead-letter reason for each.

- A call that raises is split in halves and retried, down to single texts; a text that still
  fails alone gets reason ``inference_error``. A model process that dies
  (:class:`~streamproc.errors.ModelProcessDied`) is not the texts' fault: it propagates.
- A call that does not return within ``timeout_s`` is taken as hung. A model that can be
  restarted (a model process) is restarted and the batch's texts run one by one: a text that
  hangs alone on two fresh processes gets reason ``inference_timeout`` (a poison event must not
  stop its partition forever); another such text before any call succeeds means the model itself
  is wedged. A thread cannot be interrupted, and a wedged model cannot be trusted: then the
  records of the call are logged as suspects and :class:`~streamproc.errors.InferenceTimeout`
  is raised, so the worker stops and the group re-delivers the batch from the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from streamproc.errors import EventError, InferenceTimeout, ModelProcessDied
from streamproc.model.base import Prediction, TextClassifier
from streamproc.stream.inference import InferenceThread
from streamproc.stream.metrics import StreamMetrics

__all__ = ["BatchOutcome", "ModelCaller", "RecordPosition", "describe_offsets"]

log = logging.getLogger(__name__)


class RecordPosition(Protocol):
    """Where a record was read (what the logs name)."""

    topic: str
    partition: int
    offset: int


def describe_offsets(records: Sequence[RecordPosition]) -> str:
    """Where ``records`` came from, per partition in first-seen order: ``topic[p] first..last (n)``.

    Offsets of one partition in a batch ascend (read order) but need not be contiguous (bad
    records never reach the model; other partitions interleave), hence the count."""
    spans: dict[tuple[str, int], list[int]] = {}
    for record in records:
        span = spans.setdefault((record.topic, record.partition), [record.offset, record.offset, 0])
        span[0] = min(span[0], record.offset)
        span[1] = max(span[1], record.offset)
        span[2] += 1
    return ", ".join(
        f"{topic}[{partition}] {first}..{last} ({count})"
        for (topic, partition), (first, last, count) in spans.items()
    )


class _CallTimedOut(Exception):
    """A model call passed the inference timeout (the caller decides what that means)."""


class _ModelCall:
    """One model call, run in the inference thread: returns the result and the seconds the model
    itself took, and says (``finished``, set in that thread) whether the call has returned."""

    __slots__ = ("finished",)

    def __init__(self) -> None:
        self.finished = False

    def __call__(
        self, fn: Callable[[list[str]], list[Prediction]], texts: list[str]
    ) -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            result = fn(texts)
        finally:
            self.finished = True
        return result, time.perf_counter() - started


BatchOutcome = tuple[dict[int, Prediction], dict[int, EventError], float]
"""Predictions by text index, texts that failed alone (→ their dead-letter reason), and the
seconds the model itself spent (measured where it runs, so hand-off and GIL waits stay out of
the cost model the batching controller sizes batches by)."""


class ModelCaller:
    """Calls the model for one batch at a time (see the module docstring)."""

    def __init__(
        self,
        *,
        inference: InferenceThread,
        metrics: StreamMetrics,
        timeout_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inference = inference
        self._metrics = metrics
        self._timeout_s = timeout_s  # None: no deadline
        self._clock = clock
        self._hung_call: _ModelCall | None = None  # a call that timed out (it may still return)
        self._hung_alone = False  # a text hung alone, and no model call succeeded since

    @property
    def hung(self) -> bool:
        """A model call timed out and has still not returned: it holds the inference thread
        (which the interpreter would wait for at exit)."""
        return self._hung_call is not None and not self._hung_call.finished

    async def predict(
        self, model: TextClassifier, texts: Sequence[str], records: Sequence[RecordPosition]
    ) -> BatchOutcome:
        """Every text's prediction or dead-letter reason; ``records[i]`` is where ``texts[i]``
        was read (named in logs and errors)."""
        predictions: dict[int, Prediction] = {}
        failed: dict[int, EventError] = {}
        model_s = 0.0
        pending = [list(range(len(texts)))] if texts else []
        restart = getattr(model, "restart", None)
        hung_once: set[int] = set()  # texts that hung alone once (each gets a second process)
        while pending:
            indices = pending.pop()
            try:
                result, seconds = await self._call(model, [texts[i] for i in indices])
                model_s += seconds
                if len(result) != len(indices):
                    raise RuntimeError(
                        f"model returned {len(result)} predictions for {len(indices)}"
                    )
            except _CallTimedOut:
                self._metrics.record_inference_timeout()
                where = [records[i] for i in indices]
                if restart is None or (len(indices) == 1 and self._hung_alone):
                    raise self._wedged(where) from None
                alone = len(indices) == 1
                log.warning(
                    "inference timeout: model call on %d events (%s) did not return within %gs; "
                    "restarting the model process%s",
                    len(indices),
                    describe_offsets(where),
                    self._timeout_s,
                    "" if alone else " and running them one by one",
                )
                await restart()
                if not alone:
                    pending += [[i] for i in reversed(indices)]
                elif indices[0] not in hung_once:  # a hang that is not the text's repeats
                    hung_once.add(indices[0])
                    pending.append(indices)
                else:  # hung alone on two fresh processes: this text is the poison
                    self._hung_alone = True  # until a call succeeds: another one is fatal
                    failed[indices[0]] = EventError(
                        "inference_timeout",
                        f"the model did not answer this event alone within "
                        f"{self._timeout_s:g}s, twice, each time in a fresh process",
                    )
                continue
            except ModelProcessDied:
                raise  # not the texts' fault: the pipeline fails, the worker stops
            except Exception as exc:  # a model failure must never kill the worker
                self._metrics.record_inference_error()
                log.warning("inference failed on %d events: %r", len(indices), exc)
                if len(indices) == 1:
                    detail = f"{type(exc).__name__}: {exc}"[:500]
                    failed[indices[0]] = EventError("inference_error", detail)
                else:  # bisect: a poison text only takes itself down
                    middle = len(indices) // 2
                    pending += [indices[middle:], indices[:middle]]
                continue
            self._hung_alone = False
            predictions.update(zip(indices, result, strict=True))
        return predictions, failed, model_s

    async def _call(self, model: TextClassifier, texts: list[str]) -> tuple[Any, float]:
        """One ``predict_batch`` call, within the timeout: awaited on the loop for a model in a
        child process (:class:`~streamproc.model.process.ProcessClassifier`), else run in the
        inference thread. Raises :class:`_CallTimedOut` past the deadline."""
        call = _ModelCall()
        in_child = getattr(model, "predict_batch_async", None)
        deadline = asyncio.timeout(self._timeout_s)
        started = self._clock()
        try:
            async with deadline:
                if in_child is not None:
                    result = await in_child(texts)
                else:
                    result = await self._inference.run(call, model.predict_batch, texts)
            self._metrics.record_stage("model_call", self._clock() - started)
            return result
        except TimeoutError:
            if not deadline.expired():
                raise  # the model itself raised TimeoutError: an ordinary inference error
        if in_child is None:
            self._hung_call = call  # a thread cannot be interrupted: it may never return
        raise _CallTimedOut

    def _wedged(self, records: Sequence[RecordPosition]) -> InferenceTimeout:
        """The fatal timeout: neither a thread's call nor a wedged model can be taken back, so
        the worker stops (which stops a model process). Nothing of this batch (or anything read
        after it) was acknowledged, so no commit passes it."""
        message = (
            f"model call on {len(records)} events did not return within "
            f"{self._timeout_s:g}s (STREAMPROC_INFERENCE_TIMEOUT_S); suspects: "
            f"{describe_offsets(records)}; nothing from them on is acknowledged or committed"
        )
        log.critical("inference timeout: %s", message)
        return InferenceTimeout(message)
