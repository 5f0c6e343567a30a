"""The verifier's classification, on plain data: what counts as lost, duplicated, out of order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
import pytest

from streamproc.tools.verdict import (
    Guarantee,
    InputLog,
    Outcome,
    Verdict,
    classify,
    parse_source,
)

TOPIC = "in"


def published(
    sources: Iterable[int], *, source_partition: int = 0, out_partition: int = 0, key: bytes = b"k"
) -> list[Outcome]:
    """Records in one output partition, in this order, naming these input offsets."""
    return [
        Outcome(out_partition, position, key, (TOPIC, source_partition, offset))
        for position, offset in enumerate(sources)
    ]


def judge(
    guarantee: Guarantee,
    *,
    predictions: Sequence[Outcome] = (),
    dead_letters: Sequence[Outcome] = (),
    committed: dict[int, int | None] | None = None,
    inputs: dict[int, InputLog] | None = None,
    **options: object,
) -> Verdict:
    return classify(
        guarantee=guarantee,
        input_topic=TOPIC,
        inputs=inputs or {0: InputLog.contiguous(0, 10)},
        predictions=predictions,
        dead_letters=dead_letters,
        committed={0: 10} if committed is None else committed,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_every_input_published_once_in_order_and_committed_holds(guarantee: Guarantee) -> None:
    verdict = judge(
        guarantee,
        inputs={0: InputLog.contiguous(0, 10), 1: InputLog.contiguous(0, 5)},
        predictions=published(range(10)) + published(range(5), source_partition=1),
        committed={0: 10, 1: 5},
    )
    assert verdict.holds, verdict.violations
    assert (verdict.inputs, verdict.predictions) == (15, 15)
    assert verdict.lost == verdict.duplicated == verdict.out_of_order == 0
    assert verdict.pending == verdict.uncommitted_output == verdict.phantom == 0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_committed_offsets_without_a_prediction_or_dead_letter_are_lost(
    guarantee: Guarantee,
) -> None:
    verdict = judge(guarantee, predictions=published([0, 1, 2, 5, 6, 7, 8, 9]))
    assert not verdict.holds
    assert verdict.partitions[0].lost == (3, 4)
    assert verdict.lost == 2
    assert verdict.violations[0] == "lost: 2 committed input records were never published"
    assert "VIOLATED" in verdict.summary()


def test_a_dead_letter_is_an_outcome_too() -> None:
    verdict = judge(
        "exactly_once",
        predictions=published([0, 1, 2, 4, 5, 6, 7, 8, 9]),
        dead_letters=published([3], out_partition=2),
    )
    assert verdict.holds, verdict.violations
    assert verdict.dead_letters == 1


def test_a_dead_letter_and_a_prediction_of_one_input_are_a_duplicate() -> None:
    verdict = judge("exactly_once", predictions=published(range(10)), dead_letters=published([3]))
    assert verdict.duplicated == 1
    assert not verdict.holds


def test_a_replay_after_a_crash_duplicates_a_suffix_which_at_least_once_allows() -> None:
    outputs = published([0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8, 9])
    alo = judge("at_least_once", predictions=outputs)
    assert alo.holds, alo.violations
    assert (alo.duplicated, alo.out_of_order) == (3, 0)
    eos = judge("exactly_once", predictions=outputs)
    assert not eos.holds
    assert eos.duplicated == 3
    assert eos.out_of_order == 3, "exactly_once: every backward step is out of order"
    assert any(problem.startswith("duplicated: 3 extra") for problem in eos.violations)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_record_published_after_a_later_one_is_out_of_order(guarantee: Guarantee) -> None:
    outputs = published([0, 1, 3, 2, 4, 5, 6, 7, 8, 9])
    verdict = judge(guarantee, predictions=outputs)
    assert not verdict.holds
    assert verdict.out_of_order == 1
    assert verdict.out_of_order_keys == 1
    assert verdict.violations[0].startswith("out of order: 1 published after a later")


def test_a_zombies_stale_copy_after_its_successors_newer_ones_is_out_of_order() -> None:
    # The old owner (0..5) pauses; the new one replays 3..9; the old one wakes and publishes 4.
    verdict = judge(
        "at_least_once", predictions=published([0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 4])
    )
    assert verdict.out_of_order == 1
    assert verdict.duplicated == 4
    assert not verdict.holds


def test_a_failed_send_retried_with_everything_after_it_keeps_the_last_copies_in_order() -> None:
    # The pipeline's resend: 3 was written, 2 failed; 2 and everything after it go again.
    verdict = judge("at_least_once", predictions=published([0, 1, 3, 2, 3, 4, 5, 6, 7, 8, 9]))
    assert verdict.holds, verdict.violations
    assert (verdict.out_of_order, verdict.duplicated) == (0, 1)


def test_order_is_judged_per_output_partition_and_per_key() -> None:
    # Keyed outputs: input partition 0's records spread over two output partitions; each
    # output partition keeps input order, their interleaving is not an order.
    outputs = published([1, 3, 5, 7, 9], out_partition=0, key=b"odd") + published(
        [0, 2, 4, 6, 8], out_partition=1, key=b"even"
    )
    assert judge("exactly_once", predictions=outputs).holds
    swapped = published([1, 5, 3, 7, 9], out_partition=0, key=b"odd") + published(
        [0, 2, 4, 8, 6], out_partition=1, key=b"even"
    )
    verdict = judge("exactly_once", predictions=swapped)
    assert (verdict.out_of_order, verdict.out_of_order_keys) == (2, 2)


def test_outputs_past_the_commit_are_information_for_at_least_once_a_violation_for_eos() -> None:
    outputs = published(range(7))
    alo = judge("at_least_once", predictions=outputs, committed={0: 5})
    assert alo.holds, alo.violations
    assert (alo.uncommitted_output, alo.pending, alo.lost) == (2, 3, 0)
    eos = judge("exactly_once", predictions=outputs, committed={0: 5})
    assert not eos.holds
    assert any(problem.startswith("past the commit: 2 ") for problem in eos.violations)


def test_exactly_once_outputs_without_any_commit_are_a_violation() -> None:
    verdict = judge("exactly_once", predictions=published(range(3)), committed={0: None})
    assert verdict.partitions[0].committed is None
    assert (verdict.uncommitted_output, verdict.pending, verdict.lost) == (3, 7, 0)
    assert not verdict.holds


def test_the_commit_read_after_the_topics_decides_what_is_past_it() -> None:
    # committed 5 before reading, 7 after (the group moved on meanwhile): 5 and 6 are committed.
    verdict = judge(
        "exactly_once", predictions=published(range(7)), committed={0: 5}, committed_after={0: 7}
    )
    assert verdict.holds, verdict.violations
    assert (verdict.uncommitted_output, verdict.pending) == (0, 3)


def test_a_record_naming_an_offset_that_holds_no_input_is_a_phantom() -> None:
    # offset 4 is a transaction marker (no record); partition 7 does not exist
    inputs = {0: InputLog(0, 10, [0, 1, 2, 3, 5, 6, 7, 8, 9])}
    outputs = published([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) + published([0], source_partition=7)
    verdict = judge("at_least_once", inputs=inputs, predictions=outputs)
    assert verdict.phantom == 2
    assert [p.partition for p in verdict.partitions] == [0, 7]
    assert "phantom: 2 published records name no input record" in verdict.violations


def test_an_output_of_an_aborted_input_record_is_an_aborted_data_read() -> None:
    """exactly_once reads its input read_committed: a record of an aborted transaction (offsets
    4 and 5 here, seen only read_uncommitted; 6 is the abort marker) must never be processed."""
    inputs = {0: InputLog(0, 10, [0, 1, 2, 3, 7, 8, 9], aborted=frozenset({4, 5}))}
    clean = judge("exactly_once", inputs=inputs, predictions=published([0, 1, 2, 3, 7, 8, 9]))
    assert clean.holds, clean.violations
    read = judge("exactly_once", inputs=inputs, predictions=published([0, 1, 2, 3, 4, 7, 8, 9]))
    assert read.aborted_read == 1 and read.phantom == 0
    assert read.violations == (
        "aborted data read: 1 published records come from input records of aborted transactions",
    )
    assert read.to_dict()["partitions"][0]["aborted_read"] == 1
    ghost = judge("exactly_once", inputs=inputs, predictions=published([0, 1, 2, 3, 6, 7, 8, 9]))
    assert ghost.phantom == 1 and ghost.aborted_read == 0  # the marker's offset holds no record


def test_records_the_verifier_cannot_attribute_are_counted_not_judged() -> None:
    outputs = [
        *published(range(10)),
        Outcome(0, 100, None, None),  # no source headers (another producer, an old version)
        Outcome(0, 101, None, ("other-topic", 0, 3)),
        Outcome(0, 102, None, (TOPIC, 0, 10)),  # after the snapshot's end
    ]
    inputs = {0: InputLog.contiguous(0, 10)}
    verdict = judge("exactly_once", inputs=inputs, predictions=outputs)
    assert verdict.holds, verdict.violations
    assert (verdict.unattributed, verdict.other_source, verdict.outside_snapshot) == (1, 1, 1)
    assert "not judged" in verdict.summary()


def test_offsets_removed_by_retention_are_not_lost() -> None:
    verdict = judge(
        "at_least_once",
        inputs={0: InputLog.contiguous(5, 10)},
        predictions=published(range(5, 10)),
        committed={0: 10},
    )
    assert verdict.holds and verdict.inputs == 5


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_hanging_transaction_is_a_violation(guarantee: Guarantee) -> None:
    verdict = judge(guarantee, predictions=published(range(10)), hanging=["out[2]"])
    assert not verdict.holds
    assert verdict.violations == ("hanging: transactions left open on out[2]",)


def test_the_verdict_serialises_with_every_count() -> None:
    verdict = judge("at_least_once", predictions=published([0, 1, 2, 9, 9]))
    doc = orjson.loads(orjson.dumps(verdict.to_dict()))
    assert doc["holds"] is False
    assert (doc["lost"], doc["duplicated"], doc["inputs"]) == (6, 1, 10)
    assert doc["partitions"][0]["lost_offsets"] == [3, 4, 5, 6, 7, 8]
    assert doc["partitions"][0]["duplicated_offsets"] == [9]
    assert doc["violations"] == list(verdict.violations)


def test_source_headers_are_parsed_strictly() -> None:
    good = {
        "streamproc-source-topic": b"in",
        "streamproc-source-partition": b"3",
        "streamproc-source-offset": b"1234",
    }
    assert parse_source(good) == ("in", 3, 1234)
    assert parse_source({**good, "streamproc-source-offset": None}) is None
    assert parse_source({**good, "streamproc-source-offset": b"x1"}) is None
    assert parse_source({**good, "streamproc-source-topic": b"\xff"}) is None
    assert parse_source({"streamproc-source-topic": b"in"}) is None
