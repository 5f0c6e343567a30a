"""How the settings become Kafka client configuration (:func:`librdkafka_config`,
:func:`faust_credentials`), the properties users pass through (``STREAMPROC_*_EXTRA_CONFIG``),
and the ones streamproc keeps for itself.

Two clients talk to Kafka: confluent-kafka (librdkafka; the tools, admin and topic creation) and
aiokafka (inside the worker, created by Faust). Each takes extra properties in its own naming
(``fetch.min.bytes`` / ``fetch_min_bytes``), like Quix Streams' ``consumer_extra_config``. A key
that a streamproc setting already covers, or that the delivery guarantee depends on, is refused
with the reason, so a pass-through can never quietly weaken at-least-once or exactly-once.

Errors name keys, never values: an extra may hold a secret.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from streamproc.settings import Settings

__all__ = [
    "AiokafkaClient",
    "check_aiokafka_extras",
    "check_librdkafka_extras",
    "faust_credentials",
    "librdkafka_config",
]

AiokafkaClient = Literal["consumer", "producer"]

_CONNECTION = (
    "set it with STREAMPROC_BOOTSTRAP_SERVERS / STREAMPROC_SECURITY_PROTOCOL / SASL_* / SSL_*"
)

#: librdkafka properties (and their aliases) a streamproc setting or call site owns.
_LIBRDKAFKA_OWNED: dict[str, str] = {
    "bootstrap.servers": _CONNECTION,
    "metadata.broker.list": _CONNECTION,
    "security.protocol": _CONNECTION,
    "sasl.mechanism": _CONNECTION,
    "sasl.mechanisms": _CONNECTION,
    "sasl.username": _CONNECTION,
    "sasl.password": _CONNECTION,
    "sasl.oauthbearer.method": _CONNECTION,
    "sasl.oauthbearer.token.endpoint.url": _CONNECTION,
    "sasl.oauthbearer.client.id": _CONNECTION,
    "sasl.oauthbearer.client.secret": _CONNECTION,
    "sasl.oauthbearer.scope": _CONNECTION,
    "ssl.ca.location": _CONNECTION,
    "ssl.certificate.location": _CONNECTION,
    "ssl.key.location": _CONNECTION,
    "group.id": "each tool names its own consumer group",
    "enable.auto.commit": "the tools commit (or not) on purpose",
    "transactional.id": "the tools do not use transactions",
    # The worker's egress producer (at_least_once) and the produce tool depend on these:
    "acks": "every output must be acknowledged by all in-sync replicas",
    "request.required.acks": "every output must be acknowledged by all in-sync replicas",
    "enable.idempotence": "retries must neither reorder nor duplicate a partition's outputs",
    "message.timeout.ms": "set it with STREAMPROC_PUBLISH_TIMEOUT_S",
    "delivery.timeout.ms": "set it with STREAMPROC_PUBLISH_TIMEOUT_S",
}

_AIOKAFKA_COMMON_OWNED: dict[str, str] = {
    "bootstrap_servers": _CONNECTION,
    "security_protocol": _CONNECTION,
    "sasl_mechanism": _CONNECTION,
    "sasl_plain_username": _CONNECTION,
    "sasl_plain_password": _CONNECTION,
    "sasl_oauth_token_provider": _CONNECTION,
    "ssl_context": _CONNECTION,
    "loop": "Faust runs the client on its own event loop",
}

_AIOKAFKA_OWNED: dict[AiokafkaClient, dict[str, str]] = {
    "consumer": {
        **_AIOKAFKA_COMMON_OWNED,
        "topics": "the worker subscribes STREAMPROC_INPUT_TOPIC",
        "group_id": "the consumer group is STREAMPROC_APP_ID",
        "enable_auto_commit": (
            "streamproc commits only offsets whose outputs the broker acknowledged"
        ),
        "auto_offset_reset": ("a new group starts at the earliest offset so no event is skipped"),
        "partition_assignment_strategy": "Faust assigns the partitions",
        "key_deserializer": "Faust reads raw bytes",
        "value_deserializer": "Faust reads raw bytes",
        "session_timeout_ms": "set it with STREAMPROC_SESSION_TIMEOUT_S",
        "heartbeat_interval_ms": "derived from STREAMPROC_SESSION_TIMEOUT_S",
    },
    "producer": {
        **_AIOKAFKA_COMMON_OWNED,
        "acks": "at-least-once needs every output acknowledged by all in-sync replicas",
        "transactional_id": "exactly_once names one transaction per input partition",
        "key_serializer": "Faust sends raw bytes",
        "value_serializer": "Faust sends raw bytes",
    },
}

#: Owned only under exactly_once, where Faust's transactions depend on them.
_AIOKAFKA_EXACTLY_ONCE_OWNED: dict[AiokafkaClient, dict[str, str]] = {
    "consumer": {
        "isolation_level": "exactly_once reads read_committed (only committed transactions)",
    },
    "producer": {
        "enable_idempotence": "exactly_once's transactions need the idempotent producer",
    },
}


def check_librdkafka_extras(extras: Mapping[str, Any], *, setting: str) -> None:
    """Refuse owned librdkafka properties, non-scalar values (librdkafka takes strings, numbers
    and booleans), and what librdkafka itself refuses (unknown names, ill-typed values)."""
    for key, value in extras.items():
        reason = _LIBRDKAFKA_OWNED.get(key)
        if reason:
            raise ValueError(f"{setting}: {key!r} is streamproc's to set ({reason})")
        if not isinstance(value, str | int | float | bool):
            raise ValueError(
                f"{setting}: {key!r} must be a string, number or boolean "
                f"(got {type(value).__name__})"
            )
    refusal = librdkafka_refusal(extras)
    if refusal:
        raise ValueError(f"{setting}: {refusal}")


def librdkafka_refusal(extras: Mapping[str, Any]) -> str | None:
    """Why librdkafka refuses these properties, or None: a client with no bootstrap servers (it
    connects nowhere) is made with them, then one per property to name the culprit."""
    if not extras:
        return None
    from confluent_kafka import KafkaException, Producer  # only when extras are given

    def refused(conf: Mapping[str, Any]) -> KafkaException | None:
        try:
            Producer({**conf, "log_level": 0})  # log_level 0: no warnings from a probe
        except KafkaException as exc:
            return exc
        return None

    together = refused(extras)
    if together is None:
        return None
    for key, value in extras.items():
        alone = refused({key: value})
        if alone is not None:
            if "No such configuration property" in str(alone):
                return f"{key!r} is not a librdkafka property"
            return f"librdkafka refuses the value of {key!r}"  # not quoted: it may be a secret
    return f"librdkafka refuses these properties together ({together.args[0].str()})"


def check_aiokafka_extras(
    extras: Mapping[str, Any],
    *,
    client: AiokafkaClient,
    exactly_once: bool,
    setting: str,
) -> None:
    """Refuse keywords the aiokafka client does not take, and those streamproc owns."""
    if not extras:
        return
    accepted = aiokafka_keywords(client)
    for key in extras:
        if key not in accepted:
            raise ValueError(
                f"{setting}: {key!r} is not a keyword of aiokafka's "
                f"AIOKafka{client.capitalize()} (see its documentation for the names)"
            )
        reason = _AIOKAFKA_OWNED[client].get(key) or (
            _AIOKAFKA_EXACTLY_ONCE_OWNED[client].get(key) if exactly_once else None
        )
        if reason:
            raise ValueError(f"{setting}: {key!r} is streamproc's to set ({reason})")


def aiokafka_keywords(client: AiokafkaClient) -> frozenset[str]:
    """The keyword arguments aiokafka's consumer or producer constructor takes."""
    import aiokafka  # only when extras are given: the CLI tools never need aiokafka

    cls = aiokafka.AIOKafkaConsumer if client == "consumer" else aiokafka.AIOKafkaProducer
    parameters = inspect.signature(cls.__init__).parameters.values()
    return frozenset(
        p.name
        for p in parameters
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def librdkafka_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration (confluent-kafka Producer / Consumer / AdminClient):
    connection settings, then STREAMPROC_KAFKA_EXTRA_CONFIG, then the caller's ``extra``."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism == "OAUTHBEARER":
        secret = settings.sasl_oauthbearer_client_secret
        conf["sasl.mechanism"] = "OAUTHBEARER"
        conf["sasl.oauthbearer.method"] = "oidc"
        conf["sasl.oauthbearer.token.endpoint.url"] = settings.sasl_oauthbearer_token_endpoint_url
        conf["sasl.oauthbearer.client.id"] = settings.sasl_oauthbearer_client_id
        conf["sasl.oauthbearer.client.secret"] = secret.get_secret_value() if secret else ""
        if settings.sasl_oauthbearer_scope:
            conf["sasl.oauthbearer.scope"] = settings.sasl_oauthbearer_scope
    elif settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        conf["sasl.password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        )
    if settings.ssl_cafile:
        conf["ssl.ca.location"] = str(settings.ssl_cafile)
    if settings.ssl_certfile:
        conf["ssl.certificate.location"] = str(settings.ssl_certfile)
    if settings.ssl_keyfile:
        conf["ssl.key.location"] = str(settings.ssl_keyfile)
    conf.update(settings.kafka_extra_config)
    conf.update(extra)
    return conf


def faust_credentials(settings: Settings) -> Any:
    """Credentials object for Faust (aiokafka), or None for PLAINTEXT."""
    import faust  # local import: faust is heavy and only the worker needs it

    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
    sasl = settings.security_protocol.startswith("SASL")
    if sasl and settings.sasl_mechanism == "OAUTHBEARER":
        from streamproc.oauth import ClientCredentialsTokenProvider

        assert settings.sasl_oauthbearer_token_endpoint_url is not None  # checked by the validator
        assert settings.sasl_oauthbearer_client_id is not None
        assert settings.sasl_oauthbearer_client_secret is not None
        provider = ClientCredentialsTokenProvider(
            settings.sasl_oauthbearer_token_endpoint_url,
            settings.sasl_oauthbearer_client_id,
            settings.sasl_oauthbearer_client_secret.get_secret_value(),
            scope=settings.sasl_oauthbearer_scope,
        )
        return faust.OAuthCredentials(oauth_cb=provider, ssl_context=context)
    if sasl:
        assert settings.sasl_password is not None  # checked by the validator
        # Faust picks SASL_SSL when given an SSL context, SASL_PLAINTEXT otherwise.
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
