"""Security settings reach every client (Faust/aiokafka and confluent-kafka): SASL/SCRAM and TLS
against a local broker on loopback; secrets never appear in logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from streamproc.broker import LocalBroker
from tests.helpers import WorkerProcess, collect, make_settings, produce_payloads, text_events
from tests.oauth_server import token_endpoint

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]

PASSWORD = "s3cr3t-Pa55-do-not-log"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SSL", "SASL_SSL"])
def test_secured_broker_end_to_end_and_the_password_never_appears(
    unique: str, tmp_path: Path, protocol: str
) -> None:
    sasl = protocol.startswith("SASL")
    tls = protocol.endswith("SSL")
    users = {"streamproc": PASSWORD} if sasl else {}
    with LocalBroker(sasl_users=users, tls=tls) as broker:
        assert broker.security_protocol == protocol
        # A client without the security settings gets no metadata: a TLS listener drops it
        # (transport failure); a SASL one closes the connection when the client asks for
        # metadata without authenticating (transport failure) — or the client's 3 s run out
        # first while it reconnects (timed out): both seen here, depending on the machine's load.
        plain = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})
        with pytest.raises(KafkaException) as refused:
            plain.list_topics(timeout=3)
        expected = (
            {KafkaError._TRANSPORT} if tls else {KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
        )
        assert refused.value.args[0].code() in expected, refused.value
        assert "Failed to get metadata" in refused.value.args[0].str()

        security = {"security_protocol": protocol}
        if sasl:
            security |= {
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "streamproc",
                "sasl_password": PASSWORD,
            }
        if tls:
            security["ssl_cafile"] = broker.ca_file
        settings = make_settings(
            broker.bootstrap_servers, unique, partitions=2, log_level="debug", **security
        )
        worker = WorkerProcess(settings, name="secure", log_dir=tmp_path)
        try:
            produce_payloads(settings, text_events(200))  # confluent-kafka, same settings
            records = collect(settings, settings.output_topic, 200, unique=unique, timeout_s=120)
        finally:
            worker.stop()
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert ids == {f"e-{i}" for i in range(200)}, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "[DEBUG]" in log, "the worker logged at DEBUG (where clients print their configs)"
    assert PASSWORD not in log, "the password leaked into the worker's (debug) log"
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


def test_oauthbearer_tokens_from_an_oidc_endpoint_reach_every_client(
    unique: str, tmp_path: Path
) -> None:
    """SASL/OAUTHBEARER with client credentials: the worker's aiokafka clients (our token
    provider) and every librdkafka client (its own OIDC method) fetch tokens from the endpoint;
    the broker admits them; a wrong secret gets no token and no data; the secret is never logged."""
    secret = "oidc-client-s3cret-do-not-log"
    with (
        token_endpoint("streamproc", secret) as endpoint,
        LocalBroker(oauthbearer=True) as broker,
    ):
        security = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauthbearer_token_endpoint_url": endpoint.url,
            "sasl_oauthbearer_client_id": "streamproc",
            "sasl_oauthbearer_client_secret": secret,
            "sasl_oauthbearer_scope": "kafka",
        }
        settings = make_settings(
            broker.bootstrap_servers, unique, partitions=2, log_level="debug", **security
        )
        worker = WorkerProcess(settings, name="oauth", log_dir=tmp_path)
        try:
            produce_payloads(settings, text_events(100))  # confluent-kafka, librdkafka's OIDC
            records = collect(settings, settings.output_topic, 100, unique=unique, timeout_s=120)
        finally:
            worker.stop()
        ours = [g for g in endpoint.grants if g["user_agent"].startswith("streamproc/")]
        assert ours, "the worker's aiokafka clients asked for no token"
        assert len(ours) < len(endpoint.grants), "librdkafka's clients asked for no token"
        assert {grant["scope"] for grant in endpoint.grants} == {"kafka"}

        wrong = settings.model_copy(
            update={"sasl_oauthbearer_client_secret": SecretStr("not-the-secret")}
        )
        refusals = endpoint.refusals
        admin = AdminClient({**wrong.confluent_config(), "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
        assert endpoint.refusals > refusals
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert ids == {f"e-{i}" for i in range(100)}, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "[DEBUG]" in log
    assert secret not in log, "the client secret leaked into the worker's (debug) log"


def test_scram_passwords_never_appear_on_a_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    argv: list[str] = []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def run(args: Any, *rest: Any, **kwargs: Any) -> Any:
        argv.extend(map(str, args))
        return real_run(args, *rest, **kwargs)

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        argv.extend(map(str, args))
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)  # the broker modules call subprocess.run/Popen
    monkeypatch.setattr(subprocess, "Popen", popen)
    with LocalBroker(heap="256m", sasl_users={"streamproc": PASSWORD}) as broker:
        cmdline = Path(f"/proc/{broker.pid}/cmdline").read_bytes().decode(errors="replace")
        assert PASSWORD not in cmdline
        assert any("kafka.tools.StorageTool" in arg for arg in argv), "the format step ran"
        assert not [arg for arg in argv if PASSWORD in arg], "a password on a command line"
        # ... and the user still authenticates (created through the admin API instead).
        admin = AdminClient(broker.client_config())
        assert admin.list_topics(timeout=10).brokers
