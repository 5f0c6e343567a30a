"""What a failed publish means: send it again, send something else instead, or stop the worker.

* ``RECORD`` — this record can never be sent as it is: it exceeds the producer's request size
  (:class:`RecordTooLarge`), or the broker calls it corrupt. A prediction is replaced by a dead
  letter of its input (reason ``publish_failed``, payload truncated), a dead letter by a
  truncated one.
* ``FATAL`` — nothing sent to that topic can succeed: not authorised (topic, cluster,
  transactional id), an invalid topic, an unsupported version or format, a fenced producer,
  failed authentication, a :class:`PublishError`, or a programming error (``TypeError``,
  ``AttributeError``, ``AssertionError``). The worker stops (exit 1) with one line
  naming the topic and the record.
* ``RETRY`` — anything else: the broker away, leadership moving, a topic limit an operator can
  raise (the broker's own ``MessageSizeTooLarge``), an unknown topic (it may be being created).
  Sent again with backoff until ``STREAMPROC_PUBLISH_TIMEOUT_S`` after its first send, then
  treated as fatal.

Pure: it only looks at exception types, along the ``__cause__`` chain (Faust wraps aiokafka's
errors in its ``ProducerSendError``), and at librdkafka's error codes (the at_least_once egress,
:class:`~streamproc.stream.egress.DeliveryError`): its fatal errors and the codes below are
``FATAL``, a corrupt record is ``RECORD``, the rest (``_MSG_TIMED_OUT`` included: the record was
not acknowledged within ``message.timeout.ms``, which is the publish timeout) ``RETRY``.
"""

from __future__ import annotations

import enum

from aiokafka import errors as kafka_errors
from confluent_kafka import KafkaError

from streamproc.errors import PublishError, RecordTooLarge
from streamproc.stream.egress import DeliveryError

__all__ = ["PublishErrorKind", "classify_publish_error"]


class PublishErrorKind(enum.Enum):
    RETRY = "retry"
    RECORD = "record"
    FATAL = "fatal"


_RECORD: tuple[type[BaseException], ...] = (RecordTooLarge, kafka_errors.CorruptRecordException)
_FATAL: tuple[type[BaseException], ...] = (
    PublishError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.ProducerFenced,
    # A bug (ours or a client's), e.g. a send called with the wrong arguments: retrying the same
    # call cannot fix it, so it must not look like a broker that is away for two minutes.
    TypeError,
    AttributeError,
    AssertionError,
)


_FATAL_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,  # an invalid topic name
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError._INVALID_ARG,
        KafkaError._FATAL,
    }
)
# A broker's MSG_SIZE_TOO_LARGE in a delivery report stays RETRY (an operator can raise the
# topic's limit); the client's own refusal is raised by produce() as RecordTooLarge.
_RECORD_CODES = frozenset({KafkaError.INVALID_MSG})  # the broker calls the record corrupt


def _classify_code(error: KafkaError) -> PublishErrorKind:
    if error.fatal() or error.code() in _FATAL_CODES:
        return PublishErrorKind.FATAL
    if error.code() in _RECORD_CODES:
        return PublishErrorKind.RECORD
    return PublishErrorKind.RETRY


def classify_publish_error(error: BaseException) -> PublishErrorKind:
    """The kind of a failed send's error (see the module docstring)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DeliveryError):  # librdkafka's error code decides
            return _classify_code(current.error)
        if isinstance(current, _FATAL):
            return PublishErrorKind.FATAL
        if isinstance(current, _RECORD):
            return PublishErrorKind.RECORD
        current = current.__cause__ or current.__context__
    return PublishErrorKind.RETRY
