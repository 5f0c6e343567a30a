"""One single-node KRaft Kafka broker (broker + controller) on 127.0.0.1, run with the machine's
JDK from the jars :func:`~streamproc.broker.jars.ensure_kafka_jars` fetched: plaintext, SASL
(SCRAM or OAUTHBEARER) or TLS on the client listener, for tests, the demo and development.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.broker.certificates import make_certificates
from streamproc.broker.jars import DEFAULT_KAFKA_VERSION, ensure_kafka_jars, major_version
from streamproc.errors import BrokerError

__all__ = ["STOP_GRACE_S", "LocalBroker", "free_port", "free_ports"]

_STARTUP_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    All sockets stay bound until every port is chosen: asked one at a time, the kernel may hand
    out the same port twice (seen here about 1 broker start in 100, when the controller and the
    internal listener got one port and Kafka refused the configuration).
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the JVM gets SIGTERM if the Python process that started it dies, so a crashed test
    # run leaves no orphaned broker behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LOG4J_3 = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""

_LOG4J_4 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


@dataclass
class LocalBroker:
    """One single-node KRaft Kafka broker (broker + controller) on loopback.

    ``sasl_users`` (name -> password) adds a SASL_PLAINTEXT listener with SCRAM-SHA-256 and
    SCRAM-SHA-512 credentials created at format time; ``bootstrap_servers`` then points at it.
    ``oauthbearer=True`` makes that listener SASL/OAUTHBEARER instead, with Kafka's *unsecured*
    token validator (it checks a token's claims — ``sub``, ``exp`` — not its signature): enough to
    test how clients obtain and present tokens, never for production.
    Keeping ``data_dir`` and the ports across :meth:`stop`/:meth:`start` restarts the same broker
    with its data (used by the broker-restart reliability test).
    """

    version: str = DEFAULT_KAFKA_VERSION
    port: int = 0
    controller_port: int = 0
    data_dir: Path | None = None
    heap: str = "768m"
    sasl_users: dict[str, str] = field(default_factory=dict)
    oauthbearer: bool = False  # SASL/OAUTHBEARER on the client listener (unsecured validator)
    tls: bool = False  # TLS on the client listener, with a throwaway CA (``ca_file``)
    cache_dir: Path | None = None
    detach: bool = False  # True: the JVM outlives this Python process (``streamproc broker start``)
    # Extra server.properties, applied last (e.g. auto.create.topics.enable=false, an authorizer).
    server_properties: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_data_dir: bool = field(default=False, init=False, repr=False)
    _cluster_id: str | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "logs" / "server.log"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate (``tls=True``): clients trust it."""
        assert self.data_dir is not None
        return self.data_dir / "tls" / "ca.pem"

    @property
    def security_protocol(self) -> str:
        return {
            (False, False): "PLAINTEXT",
            (False, True): "SSL",
            (True, False): "SASL_PLAINTEXT",
            (True, True): "SASL_SSL",
        }[(bool(self.sasl_users) or self.oauthbearer, self.tls)]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def client_config(self) -> dict[str, str]:
        """librdkafka settings that reach this broker (SASL included when configured; for
        OAUTHBEARER, a token librdkafka signs with nothing, which only this test broker takes)."""
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_users:
            name, password = next(iter(self.sasl_users.items()))
            conf.update(
                {
                    "sasl.mechanism": "SCRAM-SHA-256",
                    "sasl.username": name,
                    "sasl.password": password,
                }
            )
        elif self.oauthbearer:  # librdkafka mints the unsigned token the validator accepts
            conf.update(
                {
                    "sasl.mechanism": "OAUTHBEARER",
                    "enable.sasl.oauthbearer.unsecure.jwt": "true",
                    "sasl.oauthbearer.config": "principal=admin",
                }
            )
        if self.tls:
            conf["ssl.ca.location"] = str(self.ca_file)
        return conf

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = _STARTUP_TIMEOUT_S) -> LocalBroker:
        if self._process and self._process.poll() is None:
            return self
        if shutil.which("java") is None:
            raise BrokerError("java is not on PATH: the local Kafka broker needs a JDK (17+)")
        libs = ensure_kafka_jars(self.version, self.cache_dir)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="streamproc-kafka-"))
            self._owns_data_dir = True
        # One extra listener (PLAINTEXT, internal) is kept for inter-broker and admin traffic.
        internal_port = getattr(self, "_internal_port", 0)
        taken = {self.port, self.controller_port, internal_port} - {0}
        spare = iter(port for port in free_ports(3 + len(taken)) if port not in taken)
        self.port = self.port or next(spare)
        self.controller_port = self.controller_port or next(spare)
        self._internal_port = internal_port or next(spare)
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self._write_configs()
        java = [shutil.which("java") or "java", *self._jvm_options(), "-cp", f"{libs}/*"]

        meta = self.data_dir / "kraft" / "meta.properties"
        if not meta.exists():
            cluster_id = self._cluster_id or _new_cluster_id()
            # SCRAM users are not added here (--add-scram would put their passwords on a command
            # line any local user can read): they are created once the broker is up.
            fmt = [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
            ]
            proc = subprocess.run(fmt, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BrokerError(
                    f"formatting KRaft storage failed: {_tail(proc.stdout + proc.stderr)}"
                )

        stdout = open(self.data_dir / "logs" / "stdout.log", "ab")  # noqa: SIM115 - child owns it
        self._process = subprocess.Popen(
            [*java, "kafka.Kafka", str(props)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=None if self.detach or sys.platform != "linux" else _die_with_parent,
            start_new_session=self.detach,
        )
        stdout.close()
        try:
            if self.sasl_users:
                self._create_scram_users(timeout_s)
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, remove_data: bool | None = None) -> None:
        """Stop the JVM (SIGTERM, SIGKILL after a grace period); remove a temporary data dir."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        remove = self._owns_data_dir if remove_data is None else remove_data
        if remove and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests); data stays."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------
    def _jvm_options(self) -> list[str]:
        assert self.data_dir is not None
        logs = self.data_dir / "logs"
        opts = [
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # C1 only: faster start, less CPU on 2 cores
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
        ]
        if major_version(self.version) >= 4:
            opts.append(f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}")
        else:
            opts.append(f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}")
        return opts

    def _write_configs(self) -> Path:
        assert self.data_dir is not None
        (self.data_dir / "log4j.properties").write_text(_LOG4J_3.format(log=self.log_file))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J_4.format(log=self.log_file))
        listeners = [
            f"INTERNAL://127.0.0.1:{self._internal_port}",
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
        ]
        protocol_map = ["INTERNAL:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        external = self.security_protocol
        listeners.insert(0, f"EXTERNAL://127.0.0.1:{self.port}")
        protocol_map.append(f"EXTERNAL:{external}")
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": ",".join(listeners),
            "advertised.listeners": f"EXTERNAL://127.0.0.1:{self.port},"
            f"INTERNAL://127.0.0.1:{self._internal_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": ",".join(protocol_map),
            "log.dirs": str(self.data_dir / "kraft"),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "9223372036854775807",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        if self.sasl_users:
            lines["sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
            jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for mech in ("scram-sha-256", "scram-sha-512"):
                lines[f"listener.name.external.{mech}.sasl.jaas.config"] = jaas
        if self.oauthbearer:
            lines["sasl.enabled.mechanisms"] = "OAUTHBEARER"
            lines["listener.name.external.oauthbearer.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                'unsecuredLoginStringClaim_sub="broker";'
            )
        if self.tls:
            keystore = make_certificates(self.ca_file.parent)
            lines["listener.name.external.ssl.keystore.type"] = "PEM"
            lines["listener.name.external.ssl.keystore.location"] = str(keystore)
            lines["listener.name.external.ssl.endpoint.identification.algorithm"] = ""
        lines.update(self.server_properties)
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return props

    def _create_scram_users(self, timeout_s: float) -> None:
        """Create the SCRAM-SHA-256/512 credentials through the internal PLAINTEXT listener (an
        admin request: the passwords never appear on a command line)."""
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialAlteration,
            UserScramCredentialUpsertion,
        )

        conf: dict[str, Any] = {
            "bootstrap.servers": f"127.0.0.1:{self._internal_port}",
            "log_level": 0,
            "logger": _QuietLogger(),
        }
        admin = AdminClient(conf)
        # One request per mechanism: a user may be altered only once per request.
        requests: list[list[UserScramCredentialAlteration]] = [
            [
                UserScramCredentialUpsertion(
                    name, ScramCredentialInfo(mechanism, 8192), password.encode()
                )
                for name, password in self.sasl_users.items()
            ]
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
        ]
        deadline = time.monotonic() + timeout_s
        while requests:
            self._check_still_running()
            try:
                for future in admin.alter_user_scram_credentials(requests[0]).values():
                    future.result(timeout=10)
                requests.pop(0)
            except Exception as exc:  # the listener is not up yet
                if time.monotonic() > deadline:
                    raise BrokerError(f"could not create the SCRAM users: {exc}") from None
                time.sleep(0.3)

    def _check_still_running(self) -> None:
        """BrokerError with the log's last lines if the JVM exited while starting."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise BrokerError(
                f"Kafka exited with code {self._process.returncode} while starting; "
                f"last log lines: {_tail(_read_tail(self.log_file))}"
            )

    def _wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        conf: dict[str, Any] = {**self.client_config(), "log_level": 0, "logger": _QuietLogger()}
        admin = AdminClient(conf)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._check_still_running()
            try:
                metadata = admin.list_topics(timeout=2)
                if metadata.brokers:
                    return
            except Exception as exc:  # KafkaException until the listener is up
                last_error = exc
            time.sleep(0.3)
        raise BrokerError(
            f"Kafka did not answer metadata requests in {timeout_s:.0f}s ({last_error})"
        )


class _QuietLogger:
    """librdkafka logs connection refusals while the broker boots; those are expected."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return self.log


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (as ``random-uuid`` prints).

    Never starting with '-' (Kafka's own Uuid does the same): the storage tool's argument parser
    would read such an id as an option and refuse to format (seen here, about 1 start in 64).
    """
    import base64

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _read_tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 4) -> str:
    """The last ``lines`` lines, led by the first Java exception line (a stack trace's tail alone
    says where it failed, never why)."""
    all_lines = [line.strip() for line in text.strip().splitlines()]
    cause = next((ln for ln in all_lines if "Exception" in ln and not ln.startswith("at ")), None)
    tail = all_lines[-lines:]
    return " | ".join(tail if cause is None or cause in tail else [cause, *tail])
