"""The offset ledger: the watermark never passes a record that is not settled."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.stream.offsets import OffsetLedger

TP = ("in", 0)


def test_nothing_read_nothing_to_commit() -> None:
    assert OffsetLedger().committable(TP) is None


def test_a_record_settled_ahead_of_earlier_ones_does_not_move_the_watermark() -> None:
    ledger = OffsetLedger()
    for offset in range(51):
        ledger.read(TP, offset)
    ledger.settle(TP, 50)  # the dead letter behind 50 valid events: Faust 0.15.3 committed 51
    assert ledger.committable(TP) == 0
    for offset in range(49):
        ledger.settle(TP, offset)
    assert ledger.committable(TP) == 49
    ledger.settle(TP, 49)
    assert ledger.committable(TP) == 51
    assert ledger.outstanding(TP) == 0


def test_offsets_with_holes_follow_read_order_not_arithmetic() -> None:
    ledger = OffsetLedger()
    for offset in (10, 11, 15, 16):  # 12-14: compacted away or transaction markers
        ledger.read(TP, offset)
    ledger.settle(TP, 10)
    ledger.settle(TP, 11)
    assert ledger.committable(TP) == 15
    ledger.settle(TP, 16)
    assert ledger.committable(TP) == 15
    ledger.settle(TP, 15)
    assert ledger.committable(TP) == 17


def test_a_rewind_after_a_rebalance_restarts_the_partition() -> None:
    ledger = OffsetLedger()
    for offset in range(100, 110):
        ledger.read(TP, offset)
    ledger.read(TP, 95)  # the consumer went back to the committed offset
    assert ledger.committable(TP) == 95
    ledger.settle(TP, 95)
    assert ledger.committable(TP) == 96


def test_each_reading_of_a_partition_has_its_own_epoch() -> None:
    ledger = OffsetLedger()
    first = ledger.read(TP, 100)
    assert ledger.read(TP, 101) == first and ledger.current(TP, first)
    ledger.rewind(TP)  # about to seek back: what was read is stale before any re-read arrives
    assert not ledger.current(TP, first)
    assert ledger.committable(TP) is None, "nothing of the new reading to commit yet"
    second = ledger.read(TP, 100)
    assert second != first and ledger.current(TP, second) and not ledger.current(TP, first)
    third = ledger.read(TP, 99)  # going back without a rewind starts another reading too
    assert third not in (first, second) and ledger.current(TP, third)
    assert ledger.read(("in", 1), 0) == 1, "epochs count per partition"


def test_a_forgotten_partition_ignores_late_settlements() -> None:
    ledger = OffsetLedger()
    ledger.read(TP, 0)
    ledger.forget(TP)
    ledger.settle(TP, 0)
    assert ledger.committable(TP) is None
    assert ledger.partitions() == []


def test_backlog_and_lag_from_highwater() -> None:
    ledger = OffsetLedger()
    other = ("in", 1)
    for offset in range(10):
        ledger.read(TP, offset)
    for offset in range(4):
        ledger.settle(TP, offset)
    highwater = {TP: 25, other: 7}.get
    assert ledger.backlog([TP, other], highwater) == 15  # `other` never read: unknown
    assert ledger.lag([TP, other], highwater) == {TP: 21}


@given(st.integers(1, 200), st.randoms(use_true_random=False))
def test_the_watermark_is_the_first_unsettled_record_whatever_the_settle_order(
    n: int, rng: random.Random
) -> None:
    ledger = OffsetLedger()
    offsets = sorted(rng.sample(range(3 * n), n))
    for offset in offsets:
        ledger.read(TP, offset)
    order = offsets[:]
    rng.shuffle(order)
    settled: set[int] = set()
    for offset in order:
        ledger.settle(TP, offset)
        settled.add(offset)
        first_unsettled = next((o for o in offsets if o not in settled), offsets[-1] + 1)
        assert ledger.committable(TP) == first_unsettled


@pytest.mark.parametrize("again", [True, False])
def test_settling_twice_is_harmless(again: bool) -> None:
    ledger = OffsetLedger()
    for offset in range(3):
        ledger.read(TP, offset)
    ledger.settle(TP, 0)
    if again:
        ledger.settle(TP, 0)
    assert ledger.committable(TP) == 1
