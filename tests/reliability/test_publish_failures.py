"""Publishes that can never succeed stop the worker with a clear error, never a silent retry loop.

Against a broker of its own, set up the way production clusters usually are: topics are not
auto-created, and an authorizer (StandardAuthorizer, SASL/SCRAM users) decides who may write
where. The worker's user may do everything except what a test denies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streamproc.broker import LocalBroker
from streamproc.settings import Settings
from tests.helpers import (
    WorkerProcess,
    collect,
    committed_offsets,
    make_settings,
    produce_payloads,
    text_events,
)

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]

ADMIN, WORKER = "admin", "worker"
PASSWORDS = {ADMIN: "admin-secret", WORKER: "worker-secret"}


@pytest.fixture(scope="module")
def strict_broker() -> Iterator[LocalBroker]:
    broker = LocalBroker(
        heap="384m",
        sasl_users=dict(PASSWORDS),  # the first user (admin) is the broker's client_config
        server_properties={
            "auto.create.topics.enable": "false",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The internal and controller listeners are PLAINTEXT: their principal is ANONYMOUS.
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
        },
    )
    with broker:
        admin = AdminClient(broker.client_config())
        allow_all = [
            AclBinding(kind, name, ResourcePatternType.LITERAL, f"User:{WORKER}", "*",
                       AclOperation.ALL, AclPermissionType.ALLOW)
            for kind, name in ((ResourceType.TOPIC, "*"), (ResourceType.GROUP, "*"),
                               (ResourceType.BROKER, "kafka-cluster"))
        ]  # fmt: skip
        for future in admin.create_acls(allow_all).values():
            future.result(30)
        yield broker


def _worker_settings(broker: LocalBroker, unique: str, **overrides: object) -> Settings:
    return make_settings(
        broker.bootstrap_servers,
        unique,
        partitions=1,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username=WORKER,
        sasl_password=PASSWORDS[WORKER],
        session_timeout_s=6,
        **overrides,
    )


def _exits(worker: WorkerProcess, timeout_s: float) -> int:
    try:
        return worker.wait(timeout_s)
    except Exception:
        worker.stop()
        raise AssertionError(
            f"the worker kept running (retrying forever?):\n{worker.log_tail()}"
        ) from None


def test_a_topic_the_worker_may_not_write_stops_it_with_a_clear_error(
    strict_broker: LocalBroker, unique: str, tmp_path: Path
) -> None:
    settings = _worker_settings(strict_broker, unique)
    deny = AclBinding(ResourceType.TOPIC, settings.dead_letter_topic, ResourcePatternType.LITERAL,
                      f"User:{WORKER}", "*", AclOperation.WRITE,
                      AclPermissionType.DENY)  # fmt: skip
    admin = AdminClient(strict_broker.client_config())  # kept alive until the futures resolve
    for future in admin.create_acls([deny]).values():
        future.result(30)
    bad = (b"k", b"{not json")
    produce_payloads(settings, [*text_events(20), bad, *text_events(20, prefix="after")])
    worker = WorkerProcess(settings, name="denied", log_dir=tmp_path)
    code = _exits(worker, 60)
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log[-3000:]
    line = next((x for x in log.splitlines() if "cannot publish" in x), None)
    assert line is not None, log[-3000:]
    assert f"topic {settings.dead_letter_topic}" in line
    # librdkafka's name for it (the default egress), or aiokafka's (STREAMPROC_EGRESS=faust)
    assert "TOPIC_AUTHORIZATION_FAILED" in line or "TopicAuthorizationFailed" in line, line
    assert f"{settings.input_topic}[0]@20" in line, "it names the record it could not publish"
    # The 20 events before the bad one were predicted and may be committed; nothing past it.
    predicted = collect(settings, settings.output_topic, 20, unique=unique, timeout_s=30)
    assert len(predicted) >= 20
    assert committed_offsets(settings)[0] <= 20


def test_a_deleted_output_topic_stops_the_worker_and_a_restart_recreates_it(
    strict_broker: LocalBroker, unique: str, tmp_path: Path
) -> None:
    settings = _worker_settings(strict_broker, unique, publish_timeout_s=5)
    produce_payloads(settings, text_events(50))
    worker = WorkerProcess(settings, name="deleted", log_dir=tmp_path)
    try:
        before = collect(settings, settings.output_topic, 50, unique=unique, timeout_s=60)
        assert len(before) == 50, worker.log_tail()
        time.sleep(2)  # let the commit of the first 50 land
        admin = AdminClient(strict_broker.client_config())
        admin.delete_topics([settings.output_topic])[settings.output_topic].result(30)
        produce_payloads(settings, text_events(50, prefix="during"))
        started = time.monotonic()
        code = _exits(worker, 60)
    finally:
        worker.stop()
    took = time.monotonic() - started
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log[-3000:]
    line = next((x for x in log.splitlines() if "cannot publish" in x), None)
    assert line is not None, log[-3000:]
    assert f"topic {settings.output_topic}" in line and "STREAMPROC_PUBLISH_TIMEOUT_S" in line
    assert committed_offsets(settings)[0] == 50, "nothing unpublished was committed"
    # A fresh worker declares (re-creates) its output topic and publishes what was left.
    again = WorkerProcess(settings, name="recreated", log_dir=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while settings.output_topic not in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, again.log_tail()
            time.sleep(0.5)
        after = collect(settings, settings.output_topic, 50, unique=unique, timeout_s=60)
    finally:
        again.stop()
    ids = {orjson.loads(r.value or b"")["id"] for r in after}
    assert ids == {f"during-{i}" for i in range(50)}, again.log_tail()
    print(f"\ndeleted output topic: the worker exited {code} {took:.1f}s after the deletion")
