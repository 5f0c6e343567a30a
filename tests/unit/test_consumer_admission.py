"""Where a partition resumes after a rebalance (never before an offset known to be committed
(this worker's own, or the stable one a previous owner's settled transaction left)), what
exactly_once does with what it had made of records it reads again, and which offsets an
exactly_once commit puts in its transactions."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from streamproc.stream.consumer import WatermarkConsumer, resume_position
from streamproc.stream.offsets import OffsetLedger


def test_a_partition_resumes_after_what_this_worker_committed_itself() -> None:
    """exactly_once: our commit returned, its markers not written yet: the broker still answers
    the previous offset. Resuming there published a whole transaction twice."""
    assert resume_position(176, 226) == 226
    assert resume_position(None, 226) == 226  # nothing visible yet on a fresh group
    assert resume_position(300, 226) == 300  # another owner went further since
    assert resume_position(176, None) == 176  # never committed it here: the broker's answer
    assert resume_position(None, None) is None


class _Txn:
    def __init__(self, *, open_: bool, empty: bool) -> None:
        self.open, self.empty = open_, empty

    def is_in_transaction(self) -> bool:
        return self.open

    def is_empty_transaction(self) -> bool:
        return self.empty


class _Producer:
    def __init__(self, txn: _Txn, lock: asyncio.Lock) -> None:
        self._transaction_producers = {"app-0-1": SimpleNamespace(_txn_manager=txn)}
        self.lock, self.calls = lock, []

    async def abort_transaction(self, tid: str) -> None:
        self.calls.append(("abort", tid, self.lock.locked()))

    async def begin_transaction(self, tid: str) -> None:
        self.calls.append(("begin", tid, self.lock.locked()))


def _read_again(
    position: int, own: int | None, *, open_: bool = True, empty: bool = False
) -> tuple[OffsetLedger, list[tuple[str, str, bool]], int]:
    """A kept partition that read 100..109 is positioned at ``position`` after a rebalance."""
    ledger = OffsetLedger()
    epoch = 0
    for offset in range(100, 110):
        epoch = ledger.read(("in", 1), offset)
    lock = asyncio.Lock()
    producer = _Producer(_Txn(open_=open_, empty=empty), lock)
    consumer = SimpleNamespace(
        ledger=ledger,
        send_lock=lock,
        app=SimpleNamespace(producer=producer),
        transactions=SimpleNamespace(_tps_to_transactional_ids=lambda tps: {"app-0-1"}),
    )
    tp = TP("in", 1)
    asyncio.run(WatermarkConsumer._restart_transaction_if_read_again(consumer, tp, position, own))  # type: ignore[arg-type]
    return ledger, producer.calls, epoch


def test_a_partition_read_again_aborts_its_open_transaction_under_the_send_lock() -> None:
    """The fault matrix's one duplicate: a commit at a rebalance failed, the partition stayed,
    its open transaction kept outputs past the committed offset, and the re-read records went
    into it again. Now what was read is stale at once, and that transaction is aborted."""
    ledger, calls, epoch = _read_again(100, own=100)
    assert not ledger.current(("in", 1), epoch), "records read before are stale"
    assert calls == [("abort", "app-0-1", True), ("begin", "app-0-1", True)]


def test_a_transaction_with_outputs_before_the_position_is_left_alone() -> None:
    # Resuming past this worker's last commit: the transaction may hold outputs that will not be
    # read again; aborting would lose them.
    _, calls, _ = _read_again(105, own=100)
    assert calls == []
    _, calls, _ = _read_again(100, own=None)
    assert calls == []


def test_nothing_happens_when_nothing_is_read_again_or_the_transaction_is_empty() -> None:
    ledger, calls, epoch = _read_again(110, own=110)  # everything settled and committed
    assert calls == [] and ledger.current(("in", 1), epoch)
    ledger, calls, epoch = _read_again(100, own=100, empty=True)  # the failed commit was empty
    assert calls == [] and not ledger.current(("in", 1), epoch)
    _, calls, _ = _read_again(100, own=100, open_=False)
    assert calls == []


class _Committing:
    """Just enough of a WatermarkConsumer for ``_commit_offsets`` under exactly_once."""

    def __init__(self, ledger: OffsetLedger, committed: dict[TP, int]) -> None:
        self.in_transaction = True
        self.ledger, self.send_lock = ledger, asyncio.Lock()
        self._committed = committed
        self.commits: list[tuple[dict[TP, int], bool]] = []
        self.events: list[str] = []

    def _should_commit(self, tp: TP, offset: int) -> bool:
        committed = self._committed.get(tp)
        return committed is None or offset > committed

    def _new_offset(self, tp: TP) -> None:  # Faust's acked-offset bookkeeping: not used here
        return None

    def _filter_committable_offsets(self, tps: dict[TP, int]) -> dict[TP, int]:
        return WatermarkConsumer._filter_committable_offsets(self, tps)  # type: ignore[arg-type]

    async def _commit_now(self, offsets: dict[TP, int], start_new_transaction: bool) -> bool:
        self.commits.append((dict(offsets), self.send_lock.locked()))
        self.events.append("commit starts")
        for _ in range(3):  # a transaction after another, a broker round trip each
            await asyncio.sleep(0)
        self.events.append("commit ends")
        return True

    async def commit(self, offsets: dict[TP, int]) -> bool:
        return await WatermarkConsumer._commit_offsets(self, offsets)  # type: ignore[arg-type]


def _ledger_read(first: int, last: int, settled_below: int) -> OffsetLedger:
    ledger = OffsetLedger()
    for offset in range(first, last + 1):
        ledger.read(("in", 1), offset)
    for offset in range(first, settled_below):
        ledger.settle(("in", 1), offset)
    return ledger


def test_an_exactly_once_commit_puts_the_watermark_of_now_in_its_transaction() -> None:
    """The fault matrix's sigkill-broker duplicates: Faust computed the offsets, then committed
    one transaction after another; meanwhile outputs of later offsets joined a transaction not
    committed yet, which then committed them with the earlier offset. The next owner read from
    there and published them again. The commit now reads the watermark under the send lock."""
    tp = TP("in", 1)
    ledger = _ledger_read(100, 109, settled_below=103)
    consumer = _Committing(ledger, {})
    for offset in (103, 104, 105, 106):  # sent and settled after Faust read the watermark (103)
        ledger.settle(("in", 1), offset)
    assert asyncio.run(consumer.commit({tp: 103}))
    assert consumer.commits == [({tp: 107}, True)]


def test_no_output_joins_a_transaction_while_it_commits() -> None:
    tp = TP("in", 1)
    ledger = _ledger_read(100, 109, settled_below=103)
    consumer = _Committing(ledger, {})

    async def deliver() -> None:  # what the pipeline does for each output under exactly_once
        async with consumer.send_lock:
            consumer.events.append("send 103")
            ledger.settle(("in", 1), 103)

    async def both() -> None:
        commit = asyncio.create_task(consumer.commit({tp: 103}))
        await asyncio.sleep(0)  # the commit takes the lock first
        await asyncio.gather(commit, deliver())

    asyncio.run(both())
    assert consumer.events == ["commit starts", "commit ends", "send 103"]
    assert consumer.commits == [({tp: 103}, True)]


def test_a_partition_forgotten_or_read_again_since_is_not_committed() -> None:
    tp, other = TP("in", 1), TP("in", 2)
    ledger = _ledger_read(100, 109, settled_below=105)
    ledger.read(("in", 2), 50)
    ledger.settle(("in", 2), 50)
    consumer = _Committing(ledger, {other: 51})
    ledger.rewind(("in", 1))  # read again from the committed offset: its transaction restarts
    assert not asyncio.run(consumer.commit({tp: 105, other: 51}))
    assert consumer.commits == []
