"""Which subscribed topics the consumer's metadata knows no partition of."""

from __future__ import annotations

from streamproc.stream.consumer import missing_topics


def test_a_topic_absent_or_without_partitions_is_missing() -> None:
    metadata: dict[str, set[int] | None] = {"in": {0, 1}, "empty": set(), "errored": None}
    missing = missing_topics(["in", "empty", "errored", "unknown"], metadata.get)
    assert missing == {"empty", "errored", "unknown"}


def test_nothing_is_missing_when_every_topic_has_partitions() -> None:
    assert missing_topics(["a", "b"], {"a": {0}, "b": {0, 1, 2}}.get) == set()
