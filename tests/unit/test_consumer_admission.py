"""Which fetched records reach the pipeline: none of a partition before its seek (its position
may be stale: a previous owner's transaction still committing), none below the offset read."""

from __future__ import annotations

from collections import defaultdict

from faust.types import TP

from streamproc.stream.consumer import admissible, resume_position

P0, P1 = TP("in", 0), TP("in", 1)


def test_nothing_of_a_partition_is_admitted_before_its_seek() -> None:
    read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
    positioned: set[TP] = set()
    # Newly assigned, not seeked yet: Faust has no read offset for it, so it used to pass.
    assert not admissible(P0, 120, positioned, read_offset)
    positioned.add(P0)  # the seek returned: committed offset 130 (the previous owner's)
    read_offset[P0] = 130
    assert not admissible(P0, 125, positioned, read_offset)  # still in flight from the old position
    assert admissible(P0, 130, positioned, read_offset)
    assert not admissible(P1, 0, positioned, read_offset)  # another partition waits for its own


def test_a_partition_without_a_committed_offset_is_admitted_once_seeked() -> None:
    read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
    assert admissible(P0, 0, {P0}, read_offset)
    assert P0 not in read_offset  # the check does not insert into Faust's defaultdict


def test_a_partition_resumes_after_what_this_worker_committed_itself() -> None:
    """exactly_once: our commit returned, its markers not written yet: the broker still answers
    the previous offset. Resuming there published a whole transaction twice."""
    assert resume_position(176, 226) == 226
    assert resume_position(None, 226) == 226  # nothing visible yet on a fresh group
    assert resume_position(300, 226) == 300  # another owner went further since
    assert resume_position(176, None) == 176  # never committed it here: the broker's answer
    assert resume_position(None, None) is None
