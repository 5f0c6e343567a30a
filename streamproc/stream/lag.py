"""Consumer lag from the consumer's cached highwater marks and what the pipeline has read.

``highwater(tp)`` is the log-end offset the broker reported with the last fetch (None before the
first), so reading it costs nothing. Two figures matter:

* backlog: records still in Kafka (or in Faust's fetch buffers) that the pipeline has not taken
  yet — what the batching controller sizes batches by;
* lag: records not yet settled (predicted or dead-lettered, and acknowledged) — what dashboards
  and autoscalers show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

__all__ = ["backlog", "lag_by_partition"]

TP = tuple[str, int]


def backlog(
    assigned: Iterable[TP], highwater: Callable[[TP], int | None], next_offsets: Mapping[TP, int]
) -> int:
    """Records the worker has not read yet, over its assigned partitions."""
    total = 0
    for tp in assigned:
        high = highwater(tp)
        position = next_offsets.get(tp)
        if high is not None and position is not None:
            total += max(0, high - position)
    return total


def lag_by_partition(
    assigned: Iterable[TP],
    highwater: Callable[[TP], int | None],
    settled_offsets: Mapping[TP, int],
    next_offsets: Mapping[TP, int],
) -> dict[TP, int]:
    """Per partition: records at or past the first one not settled yet."""
    lags: dict[TP, int] = {}
    for tp in assigned:
        high = highwater(tp)
        if high is None:
            continue
        if tp in settled_offsets:
            done = settled_offsets[tp] + 1
        elif tp in next_offsets:
            done = next_offsets[tp] - 1  # read, not settled: at least one outstanding
        else:
            continue
        lags[tp] = max(0, high - done)
    return lags
