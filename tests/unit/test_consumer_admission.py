"""Where a partition resumes after a rebalance: never before an offset known to be committed
(this worker's own, or the stable one a previous owner's settled transaction left)."""

from __future__ import annotations

from streamproc.stream.consumer import resume_position


def test_a_partition_resumes_after_what_this_worker_committed_itself() -> None:
    """exactly_once: our commit returned, its markers not written yet: the broker still answers
    the previous offset. Resuming there published a whole transaction twice."""
    assert resume_position(176, 226) == 226
    assert resume_position(None, 226) == 226  # nothing visible yet on a fresh group
    assert resume_position(300, 226) == 300  # another owner went further since
    assert resume_position(176, None) == 176  # never committed it here: the broker's answer
    assert resume_position(None, None) is None
