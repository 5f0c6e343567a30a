"""Security settings reach every client: SASL/SCRAM against a local broker, secrets never logged."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from streamproc.broker import LocalBroker
from tests.helpers import WorkerProcess, collect, make_settings, produce_payloads, text_events

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]

PASSWORD = "s3cr3t-Pa55-do-not-log"


def test_sasl_scram_end_to_end_and_the_password_never_appears(unique: str, tmp_path: Path) -> None:
    with LocalBroker(sasl_users={"streamproc": PASSWORD}) as broker:
        # Without credentials the broker refuses us.
        plain = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            plain.list_topics(timeout=3).topics["x"]

        settings = make_settings(
            broker.bootstrap_servers, unique, partitions=2,
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
            sasl_username="streamproc", sasl_password=PASSWORD, log_level="debug",
        )  # fmt: skip
        worker = WorkerProcess(settings, name="sasl", log_dir=tmp_path)
        try:
            produce_payloads(settings, text_events(200))  # confluent-kafka with SASL
            records = collect(settings, settings.output_topic, 200, unique=unique, timeout_s=120)
        finally:
            worker.stop()
    assert {orjson.loads(r.value)["id"] for r in records} == {f"e-{i}" for i in range(200)}, (
        worker.log_tail()
    )
    log = worker.log_path.read_text(errors="replace")
    assert PASSWORD not in log, "the password leaked into the worker's log"
    assert PASSWORD not in repr(settings)
