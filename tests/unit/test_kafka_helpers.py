"""Pure helpers of streamproc.kafka (no broker)."""

from __future__ import annotations

import orjson
import pytest

from streamproc.kafka import holds_producer_id


def _stats(eos: dict | None) -> str:
    # The fields around "eos" as librdkafka 2.16 writes them (abridged).
    report: dict = {"name": "rdkafka#producer-1", "type": "producer", "msg_cnt": 0, "brokers": {}}
    if eos is not None:
        report["eos"] = eos
    return orjson.dumps(report).decode()


@pytest.mark.parametrize(
    ("state", "ready"),
    [
        ("Init", False),
        ("RequestPID", False),
        ("WaitTransport", False),
        ("WaitPID", False),
        ("Assigned", True),
        ("FatalError", False),
    ],
)
def test_an_idempotent_producer_is_ready_once_it_holds_its_id(state: str, ready: bool) -> None:
    eos = {"idemp_state": state, "idemp_stateage": 449, "txn_state": "Init", "producer_id": -1}
    assert holds_producer_id(_stats(eos)) is ready


def test_a_producer_that_is_not_idempotent_has_no_id_to_wait_for() -> None:
    assert holds_producer_id(_stats(None))
