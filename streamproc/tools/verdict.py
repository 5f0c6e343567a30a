"""What ``streamproc verify`` concludes from a snapshot of the topics: pure, no Kafka in here.

Input: every input offset (per partition), every published record (prediction or dead letter)
with the input record its ``streamproc-source-*`` headers name, and the consumer group's committed
offsets. Output: a :class:`Verdict` that classifies each input offset of each partition:

* **lost**: below the committed offset, with neither a prediction nor a dead letter;
* **duplicated**: published more than once (the count of the extra copies);
* **out of order**: in one output partition, the records from one input partition must follow
  their input offsets. exactly_once: every step goes forward. at_least_once, where a replay
  after a crash re-publishes a suffix: the *last* copy of each record comes after the last copy
  of every earlier one (what a consumer keeping the latest value per key relies on). Counted per
  record, and as the number of keys affected;
* **uncommitted output** (information): at or above the committed offset, yet published (a
  replay will publish it again);
* **pending** (information): at or above the committed offset, not published yet;
* **phantom**: a published record naming an input offset inside the snapshot that holds no
  record (a forged or corrupt header);
* **aborted data read** (exactly_once): a published record naming an input record of an aborted
  transaction (there under ``read_uncommitted``, not under ``read_committed``): the worker read
  data a read_committed consumer must never see.

at_least_once holds with 0 lost, 0 out of order, 0 phantom. exactly_once (read with
``isolation.level=read_committed``) also needs 0 duplicated, 0 aborted data read and 0
uncommitted output (so the outputs are exactly the input prefix below the committed offset, in
order), and no transaction left hanging (``hanging``: partitions whose last stable offset never
reached their end).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Guarantee",
    "InputLog",
    "Outcome",
    "PartitionVerdict",
    "Verdict",
    "classify",
    "parse_source",
]

Guarantee = Literal["at_least_once", "exactly_once"]

#: The headers streamproc writes on every prediction and dead letter (see events.py).
SOURCE_HEADERS = (
    "streamproc-source-topic",
    "streamproc-source-partition",
    "streamproc-source-offset",
)

_SHOWN_OFFSETS = 20  # lost offsets listed per partition in the JSON report


@dataclass(frozen=True, slots=True)
class InputLog:
    """One input partition as read: the offsets of its records within ``[start, end)``
    (ascending; gaps are transaction markers, compacted or aborted records)."""

    start: int
    end: int
    offsets: Sequence[int]
    # Offsets in [start, end) holding records of aborted transactions (seen read_uncommitted
    # only); filled in for exactly_once.
    aborted: frozenset[int] = frozenset()

    @classmethod
    def contiguous(cls, start: int, end: int) -> InputLog:
        return cls(start, end, range(start, end))


@dataclass(frozen=True, slots=True)
class Outcome:
    """A published record: where it is, its key, and the input record it names
    (``(topic, partition, offset)``; ``None`` when it carries no source headers)."""

    partition: int
    offset: int
    key: bytes | None
    source: tuple[str, int, int] | None


def parse_source(headers: Mapping[str, str | bytes | None]) -> tuple[str, int, int] | None:
    """``(topic, partition, offset)`` from the ``streamproc-source-*`` headers, or ``None``
    when one is missing or malformed."""
    values = [headers.get(name) for name in SOURCE_HEADERS]
    if any(value is None for value in values):
        return None
    try:  # UnicodeDecodeError is a ValueError too
        topic, partition, offset = (
            value.decode() if isinstance(value, bytes) else str(value) for value in values
        )
        return topic, int(partition), int(offset)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PartitionVerdict:
    """The classification of one input partition's offsets."""

    partition: int
    committed: int | None  # None: the group committed nothing for this partition
    inputs: int  # records in the snapshot
    lost: tuple[int, ...]  # offsets below the commit with no prediction and no dead letter
    duplicated: int  # extra copies published
    duplicated_offsets: tuple[int, ...]  # input offsets published more than once
    out_of_order: int  # records published out of input order (see the module docstring)
    uncommitted_output: int  # offsets at or above the commit that were published anyway
    pending: int  # offsets at or above the commit not published yet
    phantom: int  # published records naming an offset of this partition that holds no record
    aborted_read: int = 0  # published records naming an input record of an aborted transaction

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "committed": self.committed,
            "inputs": self.inputs,
            "lost": len(self.lost),
            "lost_offsets": list(self.lost[:_SHOWN_OFFSETS]),
            "duplicated": self.duplicated,
            "duplicated_offsets": list(self.duplicated_offsets[:_SHOWN_OFFSETS]),
            "out_of_order": self.out_of_order,
            "uncommitted_output": self.uncommitted_output,
            "pending": self.pending,
            "phantom": self.phantom,
            "aborted_read": self.aborted_read,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether ``guarantee`` held for ``input_topic``, and every count behind the answer."""

    guarantee: Guarantee
    input_topic: str
    partitions: tuple[PartitionVerdict, ...]
    predictions: int  # records read from the output topic
    dead_letters: int  # records read from the dead-letter topic
    out_of_order_keys: int  # distinct keys with at least one record out of order
    unattributed: int  # published records without (valid) source headers: not judged
    other_source: int  # published records naming another input topic: not judged
    outside_snapshot: int  # naming offsets before the log start or after the snapshot's end
    hanging: tuple[str, ...] = ()  # "topic[partition]" whose last stable offset stayed behind
    violations: tuple[str, ...] = field(default=())

    @property
    def holds(self) -> bool:
        return not self.violations

    @property
    def inputs(self) -> int:
        return sum(p.inputs for p in self.partitions)

    @property
    def lost(self) -> int:
        return sum(len(p.lost) for p in self.partitions)

    @property
    def duplicated(self) -> int:
        return sum(p.duplicated for p in self.partitions)

    @property
    def out_of_order(self) -> int:
        return sum(p.out_of_order for p in self.partitions)

    @property
    def uncommitted_output(self) -> int:
        return sum(p.uncommitted_output for p in self.partitions)

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self.partitions)

    @property
    def phantom(self) -> int:
        return sum(p.phantom for p in self.partitions)

    @property
    def aborted_read(self) -> int:
        return sum(p.aborted_read for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guarantee": self.guarantee,
            "input_topic": self.input_topic,
            "holds": self.holds,
            "violations": list(self.violations),
            "inputs": self.inputs,
            "predictions": self.predictions,
            "dead_letters": self.dead_letters,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "out_of_order_keys": self.out_of_order_keys,
            "uncommitted_output": self.uncommitted_output,
            "pending": self.pending,
            "phantom": self.phantom,
            "aborted_read": self.aborted_read,
            "unattributed": self.unattributed,
            "other_source": self.other_source,
            "outside_snapshot": self.outside_snapshot,
            "hanging": list(self.hanging),
            "partitions": [p.to_dict() for p in self.partitions],
        }

    def summary(self) -> str:
        """One line: the answer and the counts that matter."""
        state = "holds" if self.holds else "VIOLATED"
        line = (
            f"{self.guarantee} {state} on {self.input_topic}: {self.inputs} inputs, "
            f"{self.predictions} predictions, {self.dead_letters} dead letters; {self.lost} lost, "
            f"{self.duplicated} duplicated, {self.out_of_order} out of order "
            f"({self.out_of_order_keys} keys), {self.phantom} phantom, "
            f"{self.uncommitted_output} uncommitted but output, {self.pending} pending"
        )
        if self.aborted_read:
            line += f", {self.aborted_read} outputs of aborted input records"
        if self.hanging:
            line += f", hanging transactions on {', '.join(self.hanging)}"
        if self.unattributed or self.other_source or self.outside_snapshot:
            line += (
                f" (not judged: {self.unattributed} without source headers, "
                f"{self.other_source} from other topics, {self.outside_snapshot} outside the "
                "snapshot)"
            )
        return line


def classify(
    *,
    guarantee: Guarantee,
    input_topic: str,
    inputs: Mapping[int, InputLog],
    predictions: Iterable[Outcome],
    dead_letters: Iterable[Outcome],
    committed: Mapping[int, int | None],
    committed_after: Mapping[int, int | None] | None = None,
    hanging: Sequence[str] = (),
) -> Verdict:
    """Classify every input offset (see the module docstring).

    ``committed`` is read before the topics (an offset below it must have been published
    before the topics were read); ``committed_after``, read after them (defaults to
    ``committed``), decides what counts as output past the commit. A committed offset that is
    ``None`` or negative means none."""
    exactly_once = guarantee == "exactly_once"
    after = committed if committed_after is None else committed_after
    copies: Counter[tuple[int, int]] = Counter()  # (input partition, offset) -> records published
    phantom: Counter[int] = Counter()
    unattributed = other_source = outside = 0
    # (kind, output partition, input partition) -> [(output offset, input offset, key)]
    sequences: dict[tuple[str, int, int], list[tuple[int, int, bytes | None]]] = defaultdict(list)
    counts = {"prediction": 0, "dead_letter": 0}
    for kind, outcomes in (("prediction", predictions), ("dead_letter", dead_letters)):
        for outcome in outcomes:
            counts[kind] += 1
            if outcome.source is None:
                unattributed += 1
                continue
            topic, partition, offset = outcome.source
            if topic != input_topic:
                other_source += 1
                continue
            log = inputs.get(partition)
            if log is None:
                phantom[partition] += 1
                continue
            if not log.start <= offset < log.end:
                outside += 1
                continue
            copies[(partition, offset)] += 1
            sequences[(kind, outcome.partition, partition)].append(
                (outcome.offset, offset, outcome.key)
            )

    out_of_order: Counter[int] = Counter()
    disordered_keys: set[bytes] = set()
    for (_, _, partition), sequence in sequences.items():
        sequence.sort()
        disorderly = _strict_disorder(sequence) if exactly_once else _final_disorder(sequence)
        out_of_order[partition] += len(disorderly)
        disordered_keys.update(key for key in disorderly if key is not None)

    verdicts = []
    for partition in sorted(set(inputs) | set(phantom)):
        log = inputs.get(partition, InputLog(0, 0, ()))
        commit_before = _offset(committed.get(partition))
        commit_after = _offset(after.get(partition))
        lost: list[int] = []
        twice: list[int] = []
        duplicated = uncommitted_output = pending = 0
        present = set()
        for offset in log.offsets:
            present.add(offset)
            n = copies.get((partition, offset), 0)
            duplicated += max(0, n - 1)
            if n > 1:
                twice.append(offset)
            if n == 0:
                if commit_before is not None and offset < commit_before:
                    lost.append(offset)
                else:
                    pending += 1
            elif commit_after is None or offset >= commit_after:
                uncommitted_output += 1
        # published records naming an offset in range that holds no input record (or only one
        # of an aborted transaction: read_committed readers never see it)
        named = [(o, n) for (p, o), n in copies.items() if p == partition and o not in present]
        aborted_read = sum(n for o, n in named if o in log.aborted)
        ghosts = sum(n for _, n in named) - aborted_read
        verdicts.append(
            PartitionVerdict(
                partition=partition,
                committed=commit_before,
                inputs=len(log.offsets),
                lost=tuple(lost),
                duplicated=duplicated,
                duplicated_offsets=tuple(twice),
                out_of_order=out_of_order[partition],
                uncommitted_output=uncommitted_output,
                pending=pending,
                phantom=phantom[partition] + ghosts,
                aborted_read=aborted_read,
            )
        )
    verdict = Verdict(
        guarantee=guarantee,
        input_topic=input_topic,
        partitions=tuple(verdicts),
        predictions=counts["prediction"],
        dead_letters=counts["dead_letter"],
        out_of_order_keys=len(disordered_keys),
        unattributed=unattributed,
        other_source=other_source,
        outside_snapshot=outside,
        hanging=tuple(hanging),
    )
    return _with_violations(verdict)


def _offset(value: int | None) -> int | None:
    return None if value is None or value < 0 else value


def _strict_disorder(
    sequence: Sequence[tuple[int, int, bytes | None]],
) -> list[bytes | None]:
    """Keys of the records that do not go forward from every one before (exactly_once)."""
    keys = []
    highest = -1
    for _, offset, key in sequence:
        if offset <= highest:
            keys.append(key)
        highest = max(highest, offset)
    return keys


def _final_disorder(
    sequence: Sequence[tuple[int, int, bytes | None]],
) -> list[bytes | None]:
    """Keys of the records whose last copy comes after the last copy of a later input record
    (at_least_once: a replay repeats a suffix in order, so the last copies still go forward;
    a zombie's stale copy published after its successor's newer ones does not)."""
    last: dict[int, int] = {}
    for position, (_, offset, _) in enumerate(sequence):
        last[offset] = position
    keys = []
    highest = -1
    for position, (_, offset, key) in enumerate(sequence):
        if last[offset] != position:
            continue
        if offset < highest:
            keys.append(key)
        highest = max(highest, offset)
    return keys


def _with_violations(verdict: Verdict) -> Verdict:
    problems = []
    if verdict.lost:
        problems.append(f"lost: {verdict.lost} committed input records were never published")
    if verdict.out_of_order:
        problems.append(
            f"out of order: {verdict.out_of_order} published after a later input record "
            f"({verdict.out_of_order_keys} keys)"
        )
    if verdict.phantom:
        problems.append(f"phantom: {verdict.phantom} published records name no input record")
    if verdict.guarantee == "exactly_once":
        if verdict.duplicated:
            problems.append(
                f"duplicated: {verdict.duplicated} extra copies visible to read_committed readers"
            )
        if verdict.aborted_read:
            problems.append(
                f"aborted data read: {verdict.aborted_read} published records come from input "
                "records of aborted transactions"
            )
        if verdict.uncommitted_output:
            problems.append(
                f"past the commit: {verdict.uncommitted_output} input records at or above the "
                "committed offset were published"
            )
    if verdict.hanging:
        problems.append(f"hanging: transactions left open on {', '.join(verdict.hanging)}")
    return dataclasses.replace(verdict, violations=tuple(problems))
