"""The readiness decision behind ``/readyz``: pure logic, no server, no Kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamproc.stream.dashboard import assess_readiness

HEALTHY: dict[str, Any] = {
    "started": True,
    "failed": False,
    "assigned_partitions": 2,
    "outstanding": 0,
    "buffered": 0,
    "stalled_for_s": 0.0,
    "stall_after_s": 30.0,
}


def test_a_started_worker_with_partitions_and_nothing_to_do_is_ready() -> None:
    verdict = assess_readiness(**HEALTHY)
    assert verdict.ready and verdict.reason == "ok"
    body = verdict.body()
    assert body["status"] == "ready"
    json.dumps(body, allow_nan=False)


def test_records_that_keep_settling_are_ready() -> None:
    busy = {**HEALTHY, "outstanding": 500, "buffered": 400, "stalled_for_s": 29.9}
    assert assess_readiness(**busy).ready


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"failed": True}, "failed"),
        ({"started": False}, "not_started"),
        ({"outstanding": 3, "buffered": 1, "stalled_for_s": 30.5}, "stalled"),
        ({"missing_topics": {"in"}}, "topic_missing"),
        ({"missing_topics": {"in"}, "assigned_partitions": 0}, "topic_missing"),
    ],
)
def test_not_ready_and_why(change: dict[str, Any], reason: str) -> None:
    verdict = assess_readiness(**{**HEALTHY, **change})
    assert not verdict.ready
    assert verdict.reason == reason
    body = verdict.body()
    assert body["status"] == "not_ready" and body["reason"] == reason and body["detail"]


def test_a_stall_names_what_is_stuck_and_the_setting() -> None:
    stuck = {**HEALTHY, "outstanding": 12, "buffered": 7, "stalled_for_s": 31.25}
    detail = assess_readiness(**stuck).detail
    assert "12 records outstanding (7 buffered)" in detail
    assert "31.2s" in detail and "STREAMPROC_READY_STALL_S=30" in detail


def test_a_member_without_partitions_is_a_ready_standby() -> None:
    # More workers than partitions, or a surge pod during a rollout at replicas = partitions:
    # not ready would stall the rollout for good.
    verdict = assess_readiness(**{**HEALTHY, "assigned_partitions": 0})
    assert verdict.ready and verdict.reason == "standby"


def test_a_missing_topic_is_named() -> None:
    # The group leader cannot assign a topic its metadata lacks: an idle member then is not a
    # standby but part of a group that consumes nothing (as after a broker crash).
    verdict = assess_readiness(**{**HEALTHY, "assigned_partitions": 0, "missing_topics": ["in-x"]})
    assert not verdict.ready and "in-x" in verdict.detail


def test_a_long_wait_with_nothing_outstanding_is_not_a_stall() -> None:
    # stalled_for_s is 0 when nothing is outstanding; even if a caller passes a long idle time,
    # an idle worker is not stuck.
    idle = {**HEALTHY, "outstanding": 0, "stalled_for_s": 3600.0}
    assert assess_readiness(**idle).ready


def test_a_failure_wins_over_every_other_reason() -> None:
    everything_wrong = {
        **HEALTHY,
        "failed": True,
        "started": False,
        "assigned_partitions": 0,
        "outstanding": 5,
        "stalled_for_s": 99.0,
    }
    assert assess_readiness(**everything_wrong).reason == "failed"
