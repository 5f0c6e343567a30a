"""The worker: one Faust agent per process, wired to the batching pipeline (:func:`create_worker`).

input topic ──consumer (fetched batches)──▶ BatchingPipeline ──▶ output topic (predictions)
                                                   └──────────▶ dead-letter topic (bytes + reason)

The consumer (:class:`~streamproc.stream.consumer.WatermarkConsumer`) hands each fetched batch to
the pipeline in one call; the agent subscribes the input topic, declares the output topics and
owns the pipeline's lifetime (its per-event stream is the path only under Faust's in-memory test
transport, or with ``batched_ingress=False``).

Faust owns the consumer group, partition assignment and rebalances. What is committed is the
pipeline's: it settles a source record only after the broker acknowledged its prediction (or
dead-letter record), and the consumer (:class:`~streamproc.stream.consumer.WatermarkConsumer`)
commits the ledger's per-partition watermark, so a commit never passes an event whose outcome
could still be lost. The Faust subclasses this wires together live in
:mod:`streamproc.stream.faust_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP, AgentT, TopicT

from streamproc.errors import ArtifactError, InferenceTimeout
from streamproc.kafka import (
    check_co_partitioning,
    ensure_topics,
    partition_counts,
)
from streamproc.model.base import TextClassifier
from streamproc.settings import Settings
from streamproc.stream import lenient_records
from streamproc.stream.batching import AdaptiveBatchController, BatchPolicy
from streamproc.stream.consumer import WatermarkConsumer
from streamproc.stream.egress import LibrdkafkaPublisher, producer_config
from streamproc.stream.faust_app import (
    ConsumedRecord,
    DeclaringTopic,
    FaustProducerPublisher,
    WorkerApp,
)
from streamproc.stream.hot_reload import (
    ArtifactWatcher,
    ModelSlot,
    ServedModel,
    open_model,
)
from streamproc.stream.inference import InferenceThread
from streamproc.stream.metrics import StreamMetrics
from streamproc.stream.pipeline import BatchingPipeline
from streamproc.tracing import open_batch_tracer

__all__ = ["Worker", "check_topic_layout", "create_worker", "ensure_worker_topics"]

log = logging.getLogger(__name__)


def ensure_worker_topics(settings: Settings) -> None:
    """Create the worker's input, output and dead-letter topics that are missing
    (``STREAMPROC_INPUT_PARTITIONS`` partitions each, ``STREAMPROC_REPLICATION_FACTOR``)."""
    count = settings.input_partitions
    ensure_topics(
        settings.confluent_config(),
        {
            settings.input_topic: count,
            settings.output_topic: count,
            settings.dead_letter_topic: count,
        },
        replication_factor=settings.replication_factor,
    )


def check_topic_layout(settings: Settings) -> None:
    """exactly_once: every output topic has at least as many partitions as the input (outputs go
    to their input's partition number); raises :class:`ConfigError` naming the topics and
    counts. at_least_once needs nothing: unkeyed outputs wrap around a smaller topic."""
    if settings.processing_guarantee != "exactly_once":
        return
    names = [settings.input_topic, settings.output_topic, settings.dead_letter_topic]
    counts = partition_counts(settings.confluent_config(), names)
    present = [name for name in names if name in counts]
    if settings.input_topic in counts:
        outputs = {name: counts[name] for name in present if name != settings.input_topic}
        check_co_partitioning((settings.input_topic, counts[settings.input_topic]), outputs)


@dataclass
class Worker:
    """Everything one worker process runs, exposed for the CLI and tests."""

    app: faust.App
    settings: Settings
    metrics: StreamMetrics
    slot: ModelSlot
    pipeline: BatchingPipeline
    policy: BatchPolicy
    input_topic: TopicT
    output_topic: TopicT
    dead_letter_topic: TopicT
    agent: AgentT


def create_worker(
    settings: Settings,
    *,
    model: TextClassifier | None = None,
    policy: BatchPolicy | None = None,
    metrics: StreamMetrics | None = None,
    web_enabled: bool = True,
    batched_ingress: bool = True,
) -> Worker:
    """Build the Faust app and its pipeline.

    ``model`` given: serve it (tests, fakes). Otherwise load ``<model_dir>/CURRENT`` and watch it
    for hot reloads; an unknown or invalid artifact fails fast with :class:`ArtifactError`.
    ``batched_ingress=False`` feeds the pipeline through Faust's per-event stream instead of
    whole fetched batches (slower; the benchmark measures both).
    """
    metrics = metrics or StreamMetrics()
    lenient_records.install()  # a header key that is not UTF-8 must not stall a partition
    watcher: ArtifactWatcher | None = None
    served: ServedModel | None = None
    if model is None:
        served = open_model(settings)
        model, watcher = served.model, served.watcher
        log.info(
            "serving model %s (runtime %s), STREAMPROC_MODEL=%s, hot reload %s",
            model.version,
            getattr(model, "runtime", "custom"),
            settings.model,
            f"from {watcher.model_dir}/CURRENT" if watcher else "off",
        )
    slot = ModelSlot(model)
    metrics.set_model_version(model.version)
    policy = policy or AdaptiveBatchController.from_settings(settings)
    exactly_once = settings.processing_guarantee == "exactly_once"

    app = WorkerApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=settings.faust_broker_credentials(),
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee=settings.processing_guarantee,
        # exactly_once: the pipeline commits between batches itself (see pipeline.py).
        broker_commit_interval=3600.0 if exactly_once else settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 10,
        topic_partitions=settings.input_partitions,
        topic_disable_leader=True,  # we have no tables: no leader topic needed
        consumer_auto_offset_reset="earliest",
        web_enabled=web_enabled,
        # Faust's own pages (/router/, /table/, /graph/, the stats at /) are not ours to serve.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        producer_linger_ms=1,
        # Faust's default (20 min) is also how long a send to a missing topic waits for its
        # metadata: the pipeline retries sends itself, up to this long (then the worker stops).
        producer_request_timeout=settings.publish_timeout_s,
        stream_buffer_maxsize=max(1024, settings.max_buffered_events),
        broker_max_poll_records=max(500, settings.max_batch_size * 2),
        loghandlers=[],
        Topic=DeclaringTopic,
    )
    app.settings = settings
    input_topic = app.topic(
        settings.input_topic,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.input_partitions,
    )
    output_topic = app.topic(
        settings.output_topic,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.input_partitions,
    )
    # As many partitions as the input: exactly_once needs the dead letters co-partitioned too.
    dead_letter_topic = app.topic(
        settings.dead_letter_topic,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.input_partitions,
    )
    inference = InferenceThread(settings.model_threads)

    def current_backlog() -> int:
        consumer = app.consumer
        return pipeline.offsets.backlog(_assigned(consumer), lambda tp: _highwater(consumer, tp))

    publisher: LibrdkafkaPublisher | FaustProducerPublisher
    if exactly_once or settings.egress == "faust":
        publisher = FaustProducerPublisher(app, settings, transactional=exactly_once)
    else:
        publisher = app.egress = LibrdkafkaPublisher(
            producer_config(
                settings.confluent_config(),
                publish_timeout_s=settings.publish_timeout_s,
                client_id=f"{settings.app_id}-egress",
            ),
            output_topic=settings.output_topic,
            dead_letter_topic=settings.dead_letter_topic,
        )
    pipeline = BatchingPipeline(
        model=slot,
        policy=policy,
        publisher=publisher,
        metrics=metrics,
        inference=inference,
        max_event_bytes=settings.max_event_bytes,
        max_buffered=settings.max_buffered_events,
        max_buffered_bytes=settings.max_buffered_bytes,
        backlog=current_backlog,
        transactional=exactly_once,
        commit=(lambda: app.consumer.commit()) if exactly_once else None,
        commit_interval_s=settings.commit_interval_s,
        # Crashing the app stops the worker: `streamproc worker` exits 1 with the reason.
        on_failure=lambda exc: _fail(app, pipeline, exc),
        inference_timeout_s=settings.inference_timeout_s,
        publish_timeout_s=settings.publish_timeout_s,
        topics={"prediction": settings.output_topic, "dead_letter": settings.dead_letter_topic},
        batch_tracer=open_batch_tracer(settings.tracing),
    )

    app.pipeline = pipeline
    app.model_slot = slot if served is not None else None  # a model given is the caller's
    app.batched_ingress = batched_ingress
    app.consumer_extra_config = settings.aiokafka_consumer_extra_config
    app.producer_extra_config = settings.aiokafka_producer_extra_config

    @app.agent(input_topic, name="predict")
    async def predict(stream: Any) -> None:
        # We publish through the producer directly: declare (create if missing) our topics.
        await output_topic.maybe_declare()
        await dead_letter_topic.maybe_declare()
        if exactly_once:  # a layout that cannot hold stops the worker before anything is read
            try:
                await asyncio.get_running_loop().run_in_executor(None, check_topic_layout, settings)
            except Exception as exc:
                log.critical("%s", exc)
                _fail(app, pipeline, exc)
                return
        pipeline.start()
        try:
            # Real Kafka: records arrive through the consumer's batched ingress, not this stream.
            async for event in stream.noack().events():
                await pipeline.submit(ConsumedRecord.from_event(event))
        finally:
            await pipeline.drain()

    @app.timer(interval=1.0)
    async def report_lag() -> None:
        consumer = app.consumer
        assigned = _assigned(consumer)
        lags = pipeline.offsets.lag(assigned, lambda tp: _highwater(consumer, tp))
        for (topic, partition), lag in lags.items():
            metrics.set_lag(topic, partition, lag)
        metrics.set_buffered(pipeline.buffered)
        metrics.set_unsettled_bytes(pipeline.unsettled_bytes)

    if watcher is not None:
        reload_watcher = watcher

        @app.timer(interval=settings.model_poll_interval_s)
        async def hot_reload() -> None:
            loop = asyncio.get_running_loop()
            serving = slot().version
            try:
                new_model = await loop.run_in_executor(None, reload_watcher.poll, serving)
            except ArtifactError as exc:
                metrics.record_model_reload(ok=False)
                log.error("refused new model artifact, still serving %s: %s", serving, exc)
                return
            if new_model is not None:
                old_model = slot.swap(new_model)  # on the loop: takes effect at the next batch
                metrics.set_model_version(new_model.version)
                metrics.record_model_reload(ok=True)
                log.info("hot reload: now serving model %s (was %s)", new_model.version, serving)
                await pipeline.retire(old_model)  # a child process stops once nothing calls it

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _after_rebalance(sender: Any, **kwargs: Any) -> None:
        _freeze_startup_heap()
        if isinstance(publisher, LibrdkafkaPublisher):
            publisher.open()  # connected before the first event, not at it
        assigned = set(_assigned(app.consumer))
        for tp in pipeline.offsets.partitions():
            if tp not in assigned:
                pipeline.offsets.forget(tp)
                metrics.forget_partition(*tp)

    if web_enabled:
        from streamproc.stream.dashboard import Readiness, assess_readiness, register_web

        def readiness() -> Readiness:
            return assess_readiness(
                started=pipeline.started,
                failed=pipeline.failed,
                assigned_partitions=len(_assigned(app.consumer)),
                outstanding=pipeline.unsettled,
                buffered=pipeline.buffered,
                stalled_for_s=pipeline.stalled_for(),
                stall_after_s=settings.ready_stall_s,
                missing_topics=_missing_topics(app.consumer),
            )

        def model_info() -> dict[str, Any]:
            about = served.describe() if served else {"spec": "given", "hot_reload": None}
            return {"version": slot().version, **about}

        register_web(app, metrics, readiness=readiness, model_info=model_info)

    return Worker(
        app,
        settings,
        metrics,
        slot,
        pipeline,
        policy,
        input_topic,
        output_topic,
        dead_letter_topic,
        predict,
    )


_background_tasks: set[asyncio.Task[Any]] = set()
_heap_frozen = False


def _freeze_startup_heap() -> None:
    """Move every object alive once the worker is up (Faust, aiokafka, the model) out of the
    cyclic GC's reach, once per process.

    A full collection scans every tracked object; measured in a serving worker at 250 ev/s they
    paused the event loop 30–64 ms, a pause every in-flight event pays. Frozen objects are never
    scanned again, so later collections only walk what was allocated since (``gc.freeze``).
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def _fail(app: faust.App, pipeline: BatchingPipeline, error: BaseException) -> None:
    """The pipeline failed: stop the worker with an error (``streamproc worker`` exits 1)."""
    if isinstance(error, InferenceTimeout):
        _exit_without_waiting_for_a_hung_model(pipeline)
    _background(app.crash(error))


def _exit_without_waiting_for_a_hung_model(pipeline: BatchingPipeline) -> None:
    """Make sure a model call that never returns cannot keep the process alive.

    The inference thread is not a daemon: at exit the interpreter joins it (``concurrent.futures``
    does, and then ``threading`` does), so a hung call would keep the stopped worker alive
    forever. Once the worker has stopped and the interpreter starts joining threads, this hook
    (``threading``'s pre-join hooks run newest first, so before that join) exits at once with
    status 1 if the call is still running, after flushing the logs.
    """

    def exit_now_if_hung() -> None:
        if pipeline.inference_hung:
            log.critical("a timed-out model call is still running: exiting without it")
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(1)

    register = getattr(threading, "_register_atexit", None)  # CPython ≥ 3.9
    if register is not None:
        with contextlib.suppress(RuntimeError):  # the interpreter is already shutting down
            register(exit_now_if_hung)


def _background(coro: Any) -> None:
    """Run ``coro`` on the loop, keeping a reference until it is done."""
    task = asyncio.ensure_future(coro)
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)


def _assigned(consumer: Any) -> list[tuple[str, int]]:
    try:
        return [(tp.topic, tp.partition) for tp in consumer.assignment()]
    except Exception:  # consumer not started yet (or in Faust's in-memory test mode)
        return []


def _missing_topics(consumer: Any) -> frozenset[str]:
    if isinstance(consumer, WatermarkConsumer):
        return consumer.topics_missing_from_metadata()
    return frozenset()  # Faust's in-memory test transport: no metadata


def _highwater(consumer: Any, tp: tuple[str, int]) -> int | None:

    try:
        high = consumer.highwater(TP(*tp))
    except Exception:  # not assigned any more, or no fetch yet
        return None
    return int(high) if high is not None else None
