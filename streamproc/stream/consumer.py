"""Faust's Kafka consumer, committing the pipeline's offset watermark and nothing else.

Faust (0.15.3, pinned) decides what to commit from the offsets acked so far: the first run of
consecutive acked offsets. It checks that run against the last commit only when that commit is a
truthy offset, so in a fresh group (or after a revocation) a record acked ahead of earlier ones
makes it commit past them (faust-streaming #606). Whatever order records settle in, this
consumer commits the :class:`~streamproc.stream.offsets.OffsetLedger` watermark: every offset
below it is settled.

Every commit goes through ``_filter_committable_offsets`` — the periodic commit, the commit
after N acks, the commit on rebalance and on stop, and exactly_once's transactional commits — so
overriding that one method covers them all. ``tests/reliability/test_commit_order.py`` proves it
against a real broker.
"""

from __future__ import annotations

from collections.abc import Iterable

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from streamproc.stream.offsets import OffsetLedger

__all__ = ["WatermarkConsumer"]


class WatermarkConsumer(AIOKafkaConsumer):
    """Commits ``ledger.committable(tp)`` for each partition with acks since the last commit."""

    ledger: OffsetLedger | None = None  # set by the app before the consumer starts

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
