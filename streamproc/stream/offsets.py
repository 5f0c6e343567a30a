"""Per input partition: what was read, what is settled, and the offset that may be committed.

The pipeline is the only authority on which input records are done: a record is *settled* once
the broker acknowledged its prediction or dead letter (at_least_once), or once that output is in
the partition's open transaction (exactly_once). The **watermark** of a partition is the offset
of its first record read but not settled yet (or one past the last record read, when all are
settled): every offset below it is settled, so committing the watermark can never skip a record
whose outcome could still be lost. The consumer commits the watermark and nothing else, whatever
Faust's own acked-offset bookkeeping says (it commits past gaps while a group has no committed
offset yet: faust-streaming #606).

Settlement is tracked by read order, not offset arithmetic: Kafka offsets have holes (compaction,
transaction markers), and a partition re-read after a rebalance starts again from its committed
offset. Pure logic, no Kafka: unit-tested in ``tests/unit/test_offsets.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["TP", "OffsetLedger"]

TP = tuple[str, int]  # (topic, partition)


class _Partition:
    __slots__ = ("done", "epoch", "next_offset", "outstanding", "watermark")

    def __init__(self, first_offset: int, epoch: int) -> None:
        self.outstanding: deque[int] = deque()  # offsets read and not settled, in read order
        self.done: set[int] = set()  # settled before an earlier record: waits for the head
        self.watermark = first_offset  # every offset read below it is settled
        self.next_offset = first_offset  # one past the last offset read
        self.epoch = epoch  # which reading of the partition this is (see OffsetLedger.read)


class OffsetLedger:
    """One ordered offset watermark per partition (read → settle → committable)."""

    def __init__(self) -> None:
        self._partitions: dict[TP, _Partition] = {}
        self._epochs: dict[TP, int] = {}  # the last epoch handed out per partition

    def read(self, tp: TP, offset: int) -> int:
        """A record was taken from the consumer (call in read order); returns its *epoch*.

        Each time a partition is read from a new start (assigned, or the consumer went back to
        a committed offset) its records get a new epoch: a record of an older epoch is *stale*
        (:meth:`current`), it will be read again, and exactly_once must not publish it twice.
        """
        part = self._partitions.get(tp)
        if part is None or offset < part.next_offset:
            # New partition, or the consumer went back (rebalance, seek to the committed
            # offset): what was read before no longer bounds the commit.
            epoch = self._epochs[tp] = self._epochs.get(tp, 0) + 1
            part = self._partitions[tp] = _Partition(offset, epoch)
        if not part.outstanding:
            part.watermark = offset
        part.outstanding.append(offset)
        part.next_offset = offset + 1
        return part.epoch

    def current(self, tp: TP, epoch: int) -> bool:
        """Whether a record read in ``epoch`` still belongs to the partition's current reading."""
        part = self._partitions.get(tp)
        return part is not None and part.epoch == epoch

    def rewind(self, tp: TP) -> None:
        """The consumer is about to read ``tp`` again from an earlier offset: every record read
        so far becomes stale now, before the first re-read record arrives."""
        self._partitions.pop(tp, None)

    def settle(self, tp: TP, offset: int) -> None:
        """The outcome of this record is durable; the watermark moves past settled records."""
        part = self._partitions.get(tp)
        if part is None or offset < part.watermark:
            return  # a partition forgotten since (revoked), or settled already
        outstanding = part.outstanding
        if outstanding and outstanding[0] == offset:  # the usual case: settled in read order
            outstanding.popleft()
            while outstanding and outstanding[0] in part.done:
                part.done.discard(outstanding.popleft())
        else:
            part.done.add(offset)
        part.watermark = outstanding[0] if outstanding else part.next_offset

    def committable(self, tp: TP) -> int | None:
        """The offset to commit for ``tp`` (None: nothing read there since it was assigned)."""
        part = self._partitions.get(tp)
        return None if part is None else part.watermark

    def next_offset(self, tp: TP) -> int | None:
        part = self._partitions.get(tp)
        return None if part is None else part.next_offset

    def outstanding(self, tp: TP) -> int:
        """Records of ``tp`` read and not settled yet."""
        part = self._partitions.get(tp)
        return 0 if part is None else len(part.outstanding)

    def forget(self, tp: TP) -> None:
        """``tp`` was revoked: later settlements of its records are ignored (they are stale)."""
        self._partitions.pop(tp, None)

    def partitions(self) -> list[TP]:
        return list(self._partitions)

    def backlog(self, assigned: Iterable[TP], highwater: Callable[[TP], int | None]) -> int:
        """Records still in Kafka (or Faust's fetch buffers) that the pipeline has not read:
        what the batching controller sizes batches by. ``highwater(tp)``: the log-end offset."""
        total = 0
        for tp in assigned:
            high = highwater(tp)
            part = self._partitions.get(tp)
            if high is not None and part is not None:
                total += max(0, high - part.next_offset)
        return total

    def lag(self, assigned: Iterable[TP], highwater: Callable[[TP], int | None]) -> dict[TP, int]:
        """Per partition: records at or past the watermark (not settled yet, or not read): what
        dashboards and autoscalers show."""
        lags: dict[TP, int] = {}
        for tp in assigned:
            high = highwater(tp)
            part = self._partitions.get(tp)
            if high is not None and part is not None:
                lags[tp] = max(0, high - part.watermark)
        return lags
