"""``streamproc verify``: did the guarantee hold? Read the topics and the group's offsets, judge.

Reads, in this order: the consumer group's committed offsets; (exactly_once) waits until no
transaction is open on the output and dead-letter topics; the input, output and dead-letter
topics from their first offset to their end; the committed offsets again. Then
:func:`streamproc.tools.verdict.classify` judges every input offset. Nothing is written.

Assumes only what streamproc documents: each prediction and dead letter names its input record
in the ``streamproc-source-topic`` / ``-partition`` / ``-offset`` headers. Run it when the
workers are stopped or idle: records still in flight show up as pending or uncommitted.

exactly_once reads with ``isolation.level=read_committed`` (what downstream consumers see).
A transaction left open pins a partition's last stable offset (LSO): read_committed consumers
see nothing past it. The check: every partition's LSO reaches the end offset it had when the
check began (a marker written there would be visible), within ``transaction_wait_s``.
"""

from __future__ import annotations

import sys
import time
import uuid
from array import array
from collections.abc import Callable, Mapping
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamproc.errors import BrokerError
from streamproc.kafka import stable_committed_offsets
from streamproc.settings import load_settings
from streamproc.tools.verdict import Guarantee, InputLog, Outcome, Verdict, classify, parse_source

__all__ = ["committed_offsets", "verify", "verify_topics"]


def verify_topics(
    conf: Mapping[str, Any],
    *,
    input_topic: str,
    output_topic: str,
    dead_letter_topic: str,
    group: str,
    guarantee: Guarantee,
    timeout_s: float = 120.0,
    transaction_wait_s: float = 30.0,
) -> Verdict:
    """Read the cluster (see the module docstring) and classify every input offset."""
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    partitions = sorted(_partition_bounds(conf, input_topic, isolation, timeout_s))
    committed = committed_offsets(conf, group, input_topic, partitions, timeout_s=timeout_s)
    hanging: list[str] = []
    if guarantee == "exactly_once":
        hanging = open_transactions(
            conf, [output_topic, dead_letter_topic], wait_s=transaction_wait_s
        )
    inputs = read_inputs(conf, input_topic, isolation=isolation, timeout_s=timeout_s)
    predictions = read_outcomes(conf, output_topic, isolation=isolation, timeout_s=timeout_s)
    dead_letters = read_outcomes(conf, dead_letter_topic, isolation=isolation, timeout_s=timeout_s)
    after = committed_offsets(conf, group, input_topic, partitions, timeout_s=timeout_s)
    return classify(
        guarantee=guarantee,
        input_topic=input_topic,
        inputs=inputs,
        predictions=predictions,
        dead_letters=dead_letters,
        committed=committed,
        committed_after=after,
        hanging=hanging,
    )


def committed_offsets(
    conf: Mapping[str, Any],
    group: str,
    topic: str,
    partitions: list[int],
    *,
    timeout_s: float = 30.0,
) -> dict[int, int | None]:
    """The group's committed offset per partition (``None``: nothing committed), once pending
    transactional commits are settled. Asking does not join the group."""
    try:
        answer = stable_committed_offsets(conf, group, {topic: partitions}, timeout_s=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"could not read group {group}'s offsets: {_describe(exc)}") from None
    return {partition: offset for (_, partition), offset in answer.items()}


def open_transactions(conf: Mapping[str, Any], topics: list[str], *, wait_s: float) -> list[str]:
    """``topic[partition]`` of every partition whose last stable offset has not reached, within
    ``wait_s``, the end offset it had when this began (a transaction is left open there)."""
    targets = {}
    for topic in topics:
        for partition, (_, end) in _partition_bounds(conf, topic, "read_uncommitted").items():
            targets[(topic, partition)] = end
    consumer = _consumer(conf, isolation="read_committed")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            for (topic, partition), end in list(targets.items()):
                _, stable = _watermarks(consumer, topic, partition)
                if stable >= end:
                    del targets[(topic, partition)]
            if not targets or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    finally:
        consumer.close()
    return [f"{topic}[{partition}]" for topic, partition in sorted(targets)]


def read_inputs(
    conf: Mapping[str, Any], topic: str, *, isolation: str, timeout_s: float
) -> dict[int, InputLog]:
    """Every offset the input topic holds, per partition (values are not kept). Read
    ``read_committed``, the same range is read ``read_uncommitted`` too: the offsets only the
    second read returns hold records of aborted transactions (``InputLog.aborted``)."""
    bounds = _partition_bounds(conf, topic, isolation, timeout_s)

    def offsets_read(isolation: str) -> dict[int, array[int]]:
        offsets = {partition: array("q") for partition in bounds}
        _read_to_end(
            conf,
            topic,
            bounds,
            isolation,
            timeout_s,
            lambda msg: offsets[msg.partition() or 0].append(msg.offset() or 0),
        )
        return offsets

    visible = offsets_read(isolation)
    every = offsets_read("read_uncommitted") if isolation == "read_committed" else visible
    return {
        partition: InputLog(
            start,
            end,
            visible[partition],
            frozenset(every[partition]) - frozenset(visible[partition]),
        )
        for partition, (start, end) in bounds.items()
    }


def read_outcomes(
    conf: Mapping[str, Any], topic: str, *, isolation: str, timeout_s: float
) -> list[Outcome]:
    """Every record of a topic streamproc publishes to, with the input record it names."""
    bounds = _partition_bounds(conf, topic, isolation, timeout_s)
    outcomes: list[Outcome] = []

    def keep(msg: Message) -> None:
        headers = dict(msg.headers() or ())
        key = msg.key()
        outcomes.append(
            Outcome(
                partition=msg.partition() or 0,
                offset=msg.offset() or 0,
                key=key.encode() if isinstance(key, str) else key,
                source=parse_source(headers),
            )
        )

    _read_to_end(conf, topic, bounds, isolation, timeout_s, keep)
    return outcomes


def _read_to_end(
    conf: Mapping[str, Any],
    topic: str,
    bounds: Mapping[int, tuple[int, int]],
    isolation: str,
    timeout_s: float,
    on_record: Callable[[Message], None],
) -> None:
    """Hand every record of ``[start, end)`` of each partition to ``on_record``; records
    appended since ``bounds`` was taken are not part of the snapshot."""
    remaining = {p: end for p, (start, end) in bounds.items() if end > start}
    if not remaining:
        return
    consumer = _consumer(conf, isolation=isolation, eof=True)
    try:
        consumer.assign([TopicPartition(topic, p, bounds[p][0]) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                left = ", ".join(f"{topic}[{p}]" for p in sorted(remaining))
                raise BrokerError(f"could not read {left} to its end within {timeout_s:g}s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                partition = msg.partition() or 0
                end = remaining.get(partition)
                if end is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise BrokerError(f"could not read {topic}[{partition}]: {error}")
                    if (msg.offset() or 0) >= end:
                        del remaining[partition]
                    continue
                offset = msg.offset() or 0
                if offset < end:
                    on_record(msg)
                if offset >= end - 1:
                    del remaining[partition]
    finally:
        consumer.close()


def _partition_bounds(
    conf: Mapping[str, Any], topic: str, isolation: str, timeout_s: float = 30.0
) -> dict[int, tuple[int, int]]:
    """Partition -> (log start offset, end offset); the end is the last stable offset under
    read_committed."""
    consumer = _consumer(conf, isolation=isolation)
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise BrokerError(
                f"no Kafka broker answered at {conf.get('bootstrap.servers')}: {_describe(exc)}"
            ) from None
        if metadata is None or metadata.error is not None or not metadata.partitions:
            reason = metadata.error if metadata is not None and metadata.error else "no partitions"
            raise BrokerError(f"cannot read topic {topic}: {reason}")
        return {p: _watermarks(consumer, topic, p, timeout_s) for p in sorted(metadata.partitions)}
    finally:
        consumer.close()


def _watermarks(
    consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0
) -> tuple[int, int]:
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
    except KafkaException as exc:
        raise BrokerError(
            f"could not read {topic}[{partition}]'s offsets: {_describe(exc)}"
        ) from None
    return int(low), int(high)


def _consumer(
    conf: Mapping[str, Any], *, isolation: str, group_id: str | None = None, eof: bool = False
) -> Consumer:
    return Consumer(
        {
            **dict(conf),
            # never subscribes, so never joins (or disturbs) the group it reads offsets of
            "group.id": group_id or f"streamproc-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": eof,
            "log_level": 3,
        }
    )


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def format_report(verdict: Verdict) -> str:
    """The human-readable answer: one summary line, the violations, a row per partition."""
    lines = [verdict.summary()]
    lines += [f"  violated: {problem}" for problem in verdict.violations]
    lines.append(
        f"  {'partition':>9} {'committed':>10} {'inputs':>8} {'lost':>6} {'duplicated':>10} "
        f"{'disorder':>8} {'uncommitted':>11} {'pending':>8} {'phantom':>7}"
    )
    for p in verdict.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        lines.append(
            f"  {p.partition:>9} {committed:>10} {p.inputs:>8} {len(p.lost):>6} "
            f"{p.duplicated:>10} {p.out_of_order:>8} {p.uncommitted_output:>11} "
            f"{p.pending:>8} {p.phantom:>7}"
        )
        if p.lost:
            shown = ", ".join(str(offset) for offset in p.lost[:10])
            lines.append(f"  {'':>9} lost offsets: {shown}{' …' if len(p.lost) > 10 else ''}")
    return "\n".join(lines)


@click.command("verify")
@click.option("--bootstrap-servers", default=None, help="Default: STREAMPROC_BOOTSTRAP_SERVERS.")
@click.option("--input-topic", default=None, help="Default: STREAMPROC_INPUT_TOPIC.")
@click.option("--output-topic", default=None, help="Default: STREAMPROC_OUTPUT_TOPIC.")
@click.option("--dead-letter-topic", default=None, help="Default: STREAMPROC_DEAD_LETTER_TOPIC.")
@click.option("--group", default=None, help="The workers' group. Default: STREAMPROC_APP_ID.")
@click.option(
    "--guarantee",
    type=click.Choice(["at_least_once", "exactly_once"]),
    default=None,
    help="Default: STREAMPROC_PROCESSING_GUARANTEE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="Seconds to read each topic."
)
@click.option(
    "--transaction-wait",
    type=float,
    default=30.0,
    show_default=True,
    help="exactly_once: seconds an open transaction may take to end before it counts as hanging.",
)
def verify(
    bootstrap_servers: str | None,
    input_topic: str | None,
    output_topic: str | None,
    dead_letter_topic: str | None,
    group: str | None,
    guarantee: Guarantee | None,
    as_json: bool,
    timeout: float,
    transaction_wait: float,
) -> None:
    """Check every input offset against the outputs, dead letters and committed offsets.

    Exit 0 when the guarantee holds, 1 when it is violated (lost, out of order; for
    exactly_once also duplicated, past the commit, or a transaction left hanging)."""
    overrides = {
        "bootstrap_servers": bootstrap_servers,
        "input_topic": input_topic,
        "output_topic": output_topic,
        "dead_letter_topic": dead_letter_topic,
        "app_id": group,
        "processing_guarantee": guarantee,
    }
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    verdict = verify_topics(
        settings.confluent_config(),
        input_topic=settings.input_topic,
        output_topic=settings.output_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group=settings.app_id,
        guarantee=settings.processing_guarantee,
        timeout_s=timeout,
        transaction_wait_s=transaction_wait,
    )
    if as_json:
        click.echo(orjson.dumps(verdict.to_dict()).decode())
    else:
        click.echo(format_report(verdict))
    if not verdict.holds:
        sys.exit(1)
