"""Our Faust subclasses: the app a worker runs, its topics, the records it consumes, and the
publisher that sends through Faust's producer.

- :class:`WorkerApp` builds our consumer (:class:`~streamproc.stream.consumer.WatermarkConsumer`,
  committing the pipeline's watermark, fed whole fetched batches) and producer, serves only our
  web routes, and drains the pipeline before offsets are committed on stop or revocation.
- :class:`DeclaringTopic` creates missing topics through the admin client, with the configured
  replication factor.
- :class:`ConsumedRecord` is a consumed message seen through the pipeline's
  :class:`~streamproc.stream.outputs.SourceRecord` protocol.
- :class:`FaustProducerPublisher` publishes through Faust's producer: exactly_once's
  transactional path, and at_least_once with ``STREAMPROC_EGRESS=faust``.

:func:`~streamproc.stream.app.create_worker` wires them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from streamproc.errors import RecordTooLarge
from streamproc.kafka import ensure_topics, stable_committed_offsets
from streamproc.settings import Settings
from streamproc.stream.clients import ExtraConfigProducer
from streamproc.stream.consumer import WatermarkConsumer
from streamproc.stream.egress import LibrdkafkaPublisher, TopicPublisher
from streamproc.stream.hot_reload import ModelSlot, close_model
from streamproc.stream.pipeline import BatchingPipeline

__all__ = ["ConsumedRecord", "DeclaringTopic", "FaustProducerPublisher", "WorkerApp"]


@dataclass(slots=True)
class ConsumedRecord:
    """A consumed record seen through the pipeline's :class:`SourceRecord` protocol."""

    event: Any  # faust.types.EventT from the agent's stream; None from batched ingress
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_s: float
    headers: Any

    @classmethod
    def from_event(cls, event: Any) -> ConsumedRecord:
        return cls.from_message(event.message, event)

    @classmethod
    def from_message(cls, message: Any, event: Any = None) -> ConsumedRecord:
        return cls(
            event,
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            message.timestamp,
            message.headers,
        )

    def ack(self) -> None:
        # Faust tracks stream events (wait_empty, its acked lists); batched records it never saw:
        # the pipeline's offset ledger is what commits follow either way.
        if self.event is not None:
            self.event.ack()


class DeclaringTopic(faust.Topic):
    """Faust's Topic, declared (created if missing) through the admin client so that the topics
    a worker creates get ``STREAMPROC_REPLICATION_FACTOR``: Faust asks only for a positive count,
    never for the broker's default (-1), and creates with 1 unless told."""

    async def declare(self) -> None:
        settings = getattr(self.app, "settings", None)
        if settings is None or not self.app.conf.topic_allow_declare:
            await super().declare()
            return
        partitions = self.partitions or self.app.conf.topic_partitions
        create = functools.partial(
            ensure_topics,
            settings.confluent_config(),
            dict.fromkeys(self.topics, partitions),
            replication_factor=settings.replication_factor,
        )
        await asyncio.get_running_loop().run_in_executor(None, create)


class WorkerApp(faust.App):
    """Faust's App, plus a graceful stop that drains the pipeline before offsets are committed.

    Faust's own stop waits for unacked messages only while the consumer is not yet stopping; by
    then our buffered events would be abandoned (and re-processed after a restart). So on stop we
    pause fetching, let the pipeline finish and acknowledge what it holds, commit, then hand over
    to Faust.
    """

    pipeline: BatchingPipeline | None = None
    settings: Settings | None = None  # set by create_worker: topics are declared with it
    egress: LibrdkafkaPublisher | None = None  # at_least_once's producer, closed after the drain
    model_slot: ModelSlot | None = None  # its model is closed after the drain

    drain_timeout_s: float = 30.0
    batched_ingress: bool = True  # False: Faust's per-event stream (kept for the benchmark)
    # STREAMPROC_AIOKAFKA_{CONSUMER,PRODUCER}_EXTRA_CONFIG (see stream/clients.py)
    consumer_extra_config: Mapping[str, Any] = {}
    producer_extra_config: Mapping[str, Any] = {}

    def _new_web(self) -> Any:
        """Faust's web server without its production index page at ``/`` (its router, table,
        graph and stats pages are off by settings, see create_worker): the port serves only our
        routes (/metrics, /healthz, /livez, /readyz, /dashboard/), nothing that lists the app."""
        from faust.web import drivers as web_drivers

        base = web_drivers.by_url(self.conf.web)

        class _OwnRoutesOnly(base):  # type: ignore[misc,valid-type]
            production_blueprints = ()

        return _OwnRoutesOnly(self)

    def _new_producer(self) -> Any:
        from faust.transport.drivers.aiokafka import Transport

        if not isinstance(self.transport, Transport):
            return super()._new_producer()  # e.g. Faust's in-memory test transport
        producer = ExtraConfigProducer(self.transport, loop=self.loop, beacon=self.beacon)
        producer.extra_config = self.producer_extra_config
        return producer

    def _new_consumer(self) -> Any:
        from faust.transport.drivers.aiokafka import Transport

        transport = self.transport
        if self.pipeline is None or not isinstance(transport, Transport):
            return super()._new_consumer()  # e.g. Faust's in-memory test transport
        consumer = WatermarkConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )
        pipeline = self.pipeline
        consumer.ledger = pipeline.offsets
        consumer.extra_config = self.consumer_extra_config
        settings = self.settings
        if settings is not None and settings.processing_guarantee == "exactly_once":
            conf, group = settings.confluent_config(), settings.app_id
            consumer.stable_offsets = lambda wanted: stable_committed_offsets(conf, group, wanted)
            consumer.send_lock = pipeline.send_lock
        if not self.batched_ingress:
            return consumer
        consumer.pending = lambda: 0 if pipeline.failed else pipeline.unsettled

        async def ingress(messages: Sequence[Any]) -> None:
            await pipeline.submit_many([ConsumedRecord.from_message(m) for m in messages])

        consumer.ingress = ingress
        return consumer

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.should_stop and self.pipeline is not None and self._consumer is not None:
            # A rebalance while we drain for a stop (another member joined or left). Faust would
            # close the consumer here: the drain's final commit then came after the revocation
            # and was discarded (the next owner re-did everything we had published), and the
            # closed client re-joined and heart-beat a coordinator it could not reach (the stop
            # hung). Instead finish and commit what we hold now, in the old generation; the fetch
            # stays paused through the re-join, and stopping the consumer leaves the group.
            await self._drain_and_commit()
            return
        await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if self.should_stop and self.pipeline is not None and self._consumer is not None:
            return  # stopping: nothing is fetched any more (see _on_partitions_revoked)
        await super()._on_partitions_assigned(assigned, generation_id)

    async def _drain_and_commit(self) -> None:
        """Stop fetching, finish and acknowledge what the pipeline holds, commit its watermark.

        Runs on stop, and again if a rebalance revokes our partitions during that drain."""
        assert self.pipeline is not None
        with contextlib.suppress(Exception):  # consumer may never have started
            assignment = self.consumer.assignment()
            self.consumer.stop_flow()
            self.consumer.pause_partitions(assignment)
        await self.pipeline.drain(self.drain_timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.consumer.commit(), self.drain_timeout_s)

    async def on_stop(self) -> None:
        if self.pipeline is not None and self._consumer is not None:
            await self._drain_and_commit()
        if self.egress is not None:
            await self.egress.close()
        if self.model_slot is not None:  # a model in a child process: stop the child
            # On the loop (the child's reader is the loop's); the child exits at once, having
            # nothing left to answer after the drain, or is killed if a call hung.
            close_model(self.model_slot())
        await super().on_stop()


class FaustProducerPublisher(TopicPublisher):
    """Publishes straight through Faust's producer (skipping ``Topic.send``'s per-message
    bookkeeping, which cost more than the model on small batches).

    exactly_once: every record goes into the producer transaction of its *input* partition.
    Faust commits input offsets of partition p in transaction ``{app id}-{group}-{p}``; its own
    ``TransactionManager.send`` derives the transaction from the output partition and needs the
    consumer's metadata for the output topic, which a consumer that does not subscribe to it
    lacks (it then silently sends outside any transaction). So we name the transaction ourselves
    and send to the same partition number of the (co-partitioned) output.
    """

    def __init__(self, app: faust.App, settings: Settings, *, transactional: bool) -> None:
        super().__init__(
            output_topic=settings.output_topic, dead_letter_topic=settings.dead_letter_topic
        )
        self._app = app
        self._input_topic = settings.input_topic
        self._transactional = transactional

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Any,
    ) -> Awaitable[Any]:
        transactional_id = None
        if self._transactional:
            assert partition is not None, "exactly_once sends are co-partitioned with the input"
            group = self._app.assignor.group_for_topic(self._input_topic)
            transactional_id = f"{self._app.conf.id}-{group}-{partition}"
            producer = self._app.consumer.transactions.producer
        else:
            producer = await self._app.maybe_start_producer()
            if partition is not None:

                async def count_partitions() -> int:
                    # aiokafka's metadata (waited for, up to the request timeout, if not known)
                    return len(await producer._ensure_producer().partitions_for(topic))

                partition = await self._wrapped(topic, partition, count_partitions)
        try:
            fut: Awaitable[Any] = await producer.send(
                topic, key, value, partition, None, headers, transactional_id=transactional_id
            )
        except Exception as exc:
            from aiokafka.errors import MessageSizeTooLargeError

            # The client refuses before sending (Faust wraps it): the same bytes never fit.
            if isinstance(exc.__cause__ or exc, MessageSizeTooLargeError):
                raise RecordTooLarge(f"{topic}: {exc.__cause__ or exc}") from exc
            raise
        return fut
