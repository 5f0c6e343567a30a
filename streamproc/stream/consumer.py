"""Faust's Kafka consumer, with batched ingress and a commit that is the pipeline's watermark.

**Batched ingress.** Faust (0.15.3, pinned) hands each fetched record to its conductor one by
one, each inside ``wait_first(callback, suspend_flow.wait())`` (tasks and cancellations per
record), then through the stream's nested async generators: that per-record path, not Kafka nor
the model, capped a worker. This consumer keeps Faust's fetch (``getmany``: stale generations and
paused partitions are filtered there) and hands each fetched batch to the pipeline in one call,
still inside ``wait_first`` so a rebalance can interrupt it. The agent's stream stays the path
for Faust's in-memory test transport.

**Commits.** Faust decides what to commit from the offsets acked so far: the first run of
consecutive acked offsets. It checks that run against the last commit only when that commit is a
truthy offset, so in a fresh group (or after a revocation) a record acked ahead of earlier ones
makes it commit past them (faust-streaming #606). This consumer commits the
:class:`~streamproc.stream.offsets.OffsetLedger` watermark instead: every offset below it is
settled. Every commit goes through ``_filter_committable_offsets`` — the periodic commit, the
commit on rebalance and on stop, and exactly_once's transactional commits — so overriding that
one method covers them all. ``tests/reliability/test_commit_order.py`` proves it against a real
broker.

**A committed offset the broker does not show yet.** Faust seeks every assigned partition to its
committed offset after each rebalance, the partitions this worker keeps included. Under
exactly_once, offsets are committed inside a transaction: the broker answers the commit once it
has logged its decision, and writes the markers that make the offsets visible afterwards — so a
seek right after our own commit could read the previous offset (Kafka's KIP-447: aiokafka's
OffsetFetch cannot ask for stable offsets) and re-process, and publish again, everything the
transaction had just committed (the fault matrix: 50 records of a partition its worker never
lost). This consumer remembers the offsets it committed and resumes each partition from the
later of the broker's answer and its own. A partition taken over from another worker has the
same race with that worker's last transaction, so under exactly_once the consumer also asks
librdkafka, whose read_committed OffsetFetch requires stable offsets (the broker answers only
once pending transactional commits are settled), and takes the latest of the three.

**A subscribed topic missing from metadata.** The group leader's assignor skips a topic its
metadata lacks ("Ignoring missing topic") and assigns nothing; aiokafka re-joins when its
metadata for the subscribed topics changes, but refreshes that metadata only every
``metadata_max_age_ms`` (5 min) when it owns no partitions to fetch. A broker restarted after a
crash answers metadata without the topics for a moment, so the group settled with every member
idle for minutes (the fault matrix's SIGKILL-broker cells: the leader had joined while the broker
was down, its refreshes had all failed, and it assigned as soon as the broker answered). So the
group leader refreshes the metadata before it assigns if a subscribed topic is missing from it,
and the consumer thread refreshes it every ``MISSING_TOPIC_REFRESH_S`` while one is: once the
topic is back, aiokafka's own snapshot check makes the leader re-join and assign it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, Message
from mode import Service

from streamproc.stream.clients import ExtraConfigConsumerThread
from streamproc.stream.offsets import OffsetLedger

__all__ = [
    "MISSING_TOPIC_REFRESH_S",
    "WatermarkConsumer",
    "missing_topics",
    "resume_position",
]

log = logging.getLogger(__name__)

#: How often the metadata is refreshed while a subscribed topic is missing from it.
MISSING_TOPIC_REFRESH_S = 2.0
#: The longest the group leader waits for a metadata refresh before it assigns.
PRE_ASSIGNMENT_REFRESH_S = 5.0


def missing_topics(
    subscribed: Iterable[str], partitions_for_topic: Callable[[str], set[int] | None]
) -> set[str]:
    """The subscribed topics that the metadata knows no partition of (absent, or errored)."""
    return {topic for topic in subscribed if not partitions_for_topic(topic)}


def resume_position(fetched: int | None, own: int | None) -> int | None:
    """Where a partition resumes after a seek: the broker's committed offset (None or negative:
    none), unless this worker committed a later one itself (whose transaction markers the broker
    may not have written yet)."""
    if own is not None and (fetched is None or own > fetched):
        return own
    return fetched


class _TopicWatchingConsumerThread(ExtraConfigConsumerThread):
    """Faust's consumer thread, plus a metadata refresh while a subscribed topic is missing, and
    one before the group leader assigns partitions if a subscribed topic is missing then."""

    #: Subscribed topics missing from the metadata at the last look (read by ``/readyz``).
    topics_missing: frozenset[str] = frozenset()

    async def on_start(self) -> None:
        await super().on_start()
        coordinator = getattr(self._consumer, "_coordinator", None)
        if not isinstance(coordinator, GroupCoordinator):
            return
        perform_assignment = coordinator._perform_assignment

        # A leader whose metadata lacks the topic (its refreshes failed while the broker was
        # away, and the broker is back) would assign nothing; with exactly_once, Faust's
        # transaction manager then fails on the next revocation (KeyError in group_for_topic)
        # and the worker stops. The JoinGroup just answered: the broker is reachable.
        async def refresh_then_assign(response: Any) -> Any:
            await self._refresh_metadata_if_topics_missing()
            return await perform_assignment(response)

        coordinator._perform_assignment = refresh_then_assign

    async def _refresh_metadata_if_topics_missing(self) -> None:
        consumer = self._consumer
        subscription = consumer._subscription.subscription if consumer else None
        if consumer is None or subscription is None:
            return
        client = consumer._client
        if missing_topics(subscription.topics, client.cluster.partitions_for_topic):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.force_metadata_update(), PRE_ASSIGNMENT_REFRESH_S)

    @Service.task
    async def _refresh_metadata_while_topics_missing(self) -> None:
        reported: frozenset[str] = frozenset()
        while not self.should_stop:
            await self.sleep(MISSING_TOPIC_REFRESH_S)
            consumer = self._consumer
            subscription = consumer._subscription.subscription if consumer else None
            if consumer is None or subscription is None:
                continue
            client = consumer._client
            missing = frozenset(
                missing_topics(subscription.topics, client.cluster.partitions_for_topic)
            )
            self.topics_missing = missing
            if missing and missing != reported:
                log.warning(
                    "subscribed topics missing from the metadata: %s; refreshing it every %g s",
                    sorted(missing),
                    MISSING_TOPIC_REFRESH_S,
                )
            elif reported and not missing:
                log.info("subscribed topics back in the metadata: %s", sorted(reported))
            reported = missing
            if missing:
                # Not awaited: the next round looks again; a refresh that fails is retried then.
                client.force_metadata_update()


class WatermarkConsumer(AIOKafkaConsumer):
    """Feeds fetched batches to ``ingress`` and commits ``ledger.committable(tp)``."""

    # Set by the app before the consumer starts.
    ledger: OffsetLedger | None = None
    ingress: Callable[[Sequence[Message]], Awaitable[None]] | None = None
    pending: Callable[[], int] = staticmethod(lambda: 0)  # records read, not settled yet
    # exactly_once: the pipeline's lock around each transactional send (see _restart_...).
    send_lock: asyncio.Lock | None = None
    extra_config: Mapping[str, Any] = {}  # STREAMPROC_AIOKAFKA_CONSUMER_EXTRA_CONFIG
    # exactly_once: {topic: [partitions]} -> {(topic, partition): stable committed offset or None}
    stable_offsets: Callable[[Mapping[str, list[int]]], Mapping[tuple[str, int], int | None]] | None
    stable_offsets = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The highest offset this worker committed per partition (the broker may lag behind it).
        self._own_commits: dict[TP, int] = {}

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        if not self.in_transaction or self.ledger is None or self.send_lock is None:
            return await self._commit_now(offsets, start_new_transaction)
        # exactly_once: Faust computed ``offsets`` before this call, then commits one transaction
        # after another, each a few broker round trips. Meanwhile the pipeline went on sending
        # into the transactions not committed yet, so a transaction could commit outputs of
        # offsets past the one it committed: whoever read the partition next from there
        # published them again (the fault matrix's sigkill-broker duplicates). Under the
        # pipeline's send lock nothing joins a transaction, and the offsets are read again.
        # A partition the ledger no longer has (revoked, or read again since) is left out.
        async with self.send_lock:
            current = self._filter_committable_offsets(offsets)
            if not current:
                return False
            return await self._commit_now(current, start_new_transaction)

    async def _commit_now(self, offsets: Mapping[TP, int], start_new_transaction: bool) -> bool:
        assignment = self.assignment()
        ours = {tp: offset for tp, offset in offsets.items() if tp in assignment}
        did_commit = await super()._commit_offsets(offsets, start_new_transaction)
        if did_commit and not self.app.should_stop:  # a fenced commit crashes the app
            for tp, offset in ours.items():
                self._own_commits[tp] = max(offset, self._own_commits.get(tp, offset))
        return did_commit

    async def _stable_committed(self, tps: Iterable[TP]) -> Mapping[tuple[str, int], int | None]:
        """exactly_once: the group's committed offsets once pending transactions are settled
        (KIP-447, through librdkafka); {} if not configured or not answered (logged)."""
        if self.stable_offsets is None:
            return {}
        wanted: dict[str, list[int]] = {}
        for tp in tps:
            wanted.setdefault(tp.topic, []).append(tp.partition)
        try:
            return await asyncio.to_thread(self.stable_offsets, wanted)
        except Exception as exc:  # the seek goes on with what aiokafka and we know
            log.warning("stable committed offsets not read (%s); resuming without them", exc)
            return {}

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = dict(await super().seek_to_committed())
        stable = await self._stable_committed(committed)
        for tp, fetched in committed.items():
            own = self._own_commits.get(tp)
            settled = stable.get((tp.topic, tp.partition))
            answer = fetched if fetched is not None and fetched >= 0 else None
            position = resume_position(resume_position(answer, settled), own)
            if position is not None and position != answer:
                log.info(
                    "%s: resuming at %d, not at the committed offset the broker answered (%s): "
                    "once pending transactions settle it is %s; this worker last committed %s",
                    tp,
                    position,
                    fetched,
                    settled,
                    own,
                )
                await self._seek(tp, position)
                committed[tp] = position
            if self.in_transaction and position is not None:
                await self._restart_transaction_if_read_again(tp, position, own)
        return committed

    async def _restart_transaction_if_read_again(
        self, tp: TP, position: int, own: int | None
    ) -> None:
        """exactly_once: ``tp`` resumes at ``position``; if records from there on were read
        before, they are read (and published) again, so what was made of them must go.

        Seen in the fault matrix (a paused broker): the commit at a rebalance failed, the
        partition stayed with this worker, its transaction stayed open holding the outputs of
        offsets past the committed one, Faust's ``begin_transaction`` on it failed with a
        warning, and the re-read records were published into the same transaction a second
        time — one duplicate visible to read_committed readers. So: the records read before
        become stale in the ledger at once (the pipeline drops them unpublished), and the open
        transaction is aborted and begun anew when everything in it is read again, that is when
        ``position`` is at most this worker's last commit (the transaction only holds outputs
        of offsets from there on).
        """
        ledger = self.ledger
        if ledger is None:
            return
        read_up_to = ledger.next_offset((tp.topic, tp.partition))
        if read_up_to is None or position >= read_up_to:
            return
        ledger.rewind((tp.topic, tp.partition))  # from now on the pipeline drops those records
        producer = self.app.producer
        tids = self.transactions._tps_to_transactional_ids({tp})  # type: ignore[attr-defined]
        for tid in sorted(tids):
            client = getattr(producer, "_transaction_producers", {}).get(tid)
            txn = getattr(client, "_txn_manager", None)
            if txn is None or not txn.is_in_transaction() or txn.is_empty_transaction():
                continue
            if own is None or position > own:
                log.warning(
                    "%s: read again from %d, but transaction %s holds outputs this worker cannot "
                    "place (its last commit: %s); left open",
                    tp,
                    position,
                    tid,
                    own,
                )
                continue
            log.warning(
                "%s: read again from its committed offset %d: aborting the open transaction %s "
                "(its outputs are published again from the re-read records)",
                tp,
                position,
                tid,
            )
            # A send already past its staleness check finishes first (into this transaction).
            async with self.send_lock or contextlib.nullcontext():
                await producer.abort_transaction(tid)
                await producer.begin_transaction(tid)

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        # Faust's thread + the extra aiokafka config + the missing-topic watch (both below).
        return _TopicWatchingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def topics_missing_from_metadata(self) -> frozenset[str]:
        """Subscribed topics the metadata knows no partition of, as of the last look."""
        thread = getattr(self, "_thread", None)
        return (
            thread.topics_missing
            if isinstance(thread, _TopicWatchingConsumerThread)
            else frozenset()
        )

    async def _drain_messages(self, fetcher: Any) -> None:
        ingress = self.ingress
        if ingress is None:
            await super()._drain_messages(fetcher)
            return
        read_offset = self._read_offset
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch = []
                async for tp, message in self.getmany(timeout=1.0):
                    seen = read_offset[tp]
                    # Like Faust: after a seek, drop what the old fetch position still returns.
                    if seen is None or message.offset >= seen:
                        batch.append(message)
                        read_offset[tp] = message.offset
                await asyncio.sleep(0)  # getmany may not yield to the loop at all
                if batch and not self.should_stop:
                    await self.wait_first(ingress(batch), self.suspend_flow.wait())
                    # Faust's livelock check reads this (set per event on its stream path):
                    # without it, steady lag would be logged as a stream that never started.
                    inbound = self.app.monitor.stream_inbound_time
                    if inbound is not None:
                        now = time.monotonic()
                        for message in batch:
                            inbound[message.tp] = now
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def wait_empty(self) -> None:
        """Before a rebalance (and on stop): wait until every record read is settled."""
        if self.ingress is None:
            await super().wait_empty()
            return
        while not self.should_stop and self.pending():
            await self.commit()
            await asyncio.sleep(0.05)
        await self.commit_and_end_transactions()

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        if self.ledger is None or self.ingress is None:
            yield from super()._filter_tps_with_pending_acks(topics)
            return
        # Faust only considers partitions it saw acks for; the batched path never acks to it.
        # aiokafka's own type: its transactional offset commit (exactly_once) insists on it.
        for topic, partition in self.ledger.partitions():
            tp = TopicPartition(topic, partition)
            if topics is None or tp in topics or topic in topics:
                yield tp

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        if self.ledger is None:  # not wired to a pipeline: Faust's own behaviour
            return dict(super()._filter_committable_offsets(tps))
        offsets: dict[TP, int] = {}
        for tp in tps:
            # Keeps Faust's acked-offset lists trimmed; its answer is not trusted (see above).
            self._new_offset(tp)
            offset = self.ledger.committable((tp.topic, tp.partition))
            if offset is not None and self._should_commit(tp, offset):
                offsets[tp] = offset
        return offsets
