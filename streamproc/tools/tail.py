"""``streamproc tail``: consume predictions, dead letters or any topic; print them as text or JSON.

Under ``--follow`` it runs until interrupted (or ``--timeout``) and keeps nothing it has printed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import click
import orjson

from streamproc.kafka import ConsumedRecord, consume, require_reachable, watermarks
from streamproc.settings import load_settings

__all__ = ["format_dead_letter", "format_prediction", "format_record", "record_as_json", "tail"]

REASON_HEADER = "streamproc-reason"


def format_prediction(record: ConsumedRecord) -> str:
    try:
        out = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return f"p{record.partition}@{record.offset}  <not a prediction: {record.value!r:.80}>"
    if not isinstance(out, dict):
        return f"p{record.partition}@{record.offset}  <not a prediction: {record.value!r:.80}>"
    latency = out.get("latency_ms")
    latency_txt = f"{latency:7.1f} ms" if isinstance(latency, int | float) else "      - ms"
    score = out.get("score")
    score_txt = f"{score:.3f}" if isinstance(score, int | float) else "    -"
    return (
        f"p{record.partition}@{record.offset:<7} {out.get('id', '?')!s:<14.14} "
        f"{out.get('label', '?')!s:<10.10} {score_txt}  {latency_txt}  "
        f"batch {out.get('batch_size', '?'):>4}  model {out.get('model_version', '?')}"
    )


def format_dead_letter(record: ConsumedRecord) -> str:
    headers = record.headers

    def header(name: str) -> str:
        return headers.get(name, b"?").decode("utf-8", "replace")

    origin = (
        f"{header('streamproc-source-topic')}[{header('streamproc-source-partition')}]"
        f"@{header('streamproc-source-offset')}"
    )
    return (
        f"{header(REASON_HEADER):<16} from {origin:<28} {header('streamproc-detail')!s:<40.40} "
        f"value {record.value!r:.60}"
    )


def format_record(record: ConsumedRecord) -> str:
    """A dead letter (it carries a reason header) or a prediction, as one line of text."""
    return (
        format_dead_letter(record) if REASON_HEADER in record.headers else format_prediction(record)
    )


def record_as_json(record: ConsumedRecord) -> bytes:
    """One JSON object: where the record is, its key and headers as text, and its value — the
    parsed JSON when it is JSON, else the text (bytes that are not UTF-8 as \\x escapes)."""
    value: Any = None
    if record.value is not None:
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = _text(record.value)
    return orjson.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
            "key": _text(record.key) if record.key is not None else None,
            "headers": {name: _text(raw) for name, raw in record.headers.items()},
            "value": value,
        }
    )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


@click.command("tail")
@click.option("--dead-letters", is_flag=True, help="Show the dead-letter topic instead.")
@click.option(
    "--topic",
    default=None,
    help="Any topic. [STREAMPROC_OUTPUT_TOPIC] Records with a streamproc-reason header are "
    "shown as dead letters (reason, detail, origin).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record (for jq).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N records.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep waiting for new records (else stop after 5 s of silence).",
)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (says so on stderr). [never]",
)
def tail(
    dead_letters: bool,
    topic: str | None,
    as_json: bool,
    count: int | None,
    follow: bool,
    from_beginning: bool,
    timeout: float | None,
) -> None:
    """Consume and print predictions (id, label, score, latency, batch, model) or dead letters."""
    if dead_letters and topic:
        raise click.UsageError("give --dead-letters or --topic, not both")
    settings = load_settings()
    topic = topic or (settings.dead_letter_topic if dead_letters else settings.output_topic)
    require_reachable(settings.bootstrap_servers)
    if not from_beginning:  # like tail -f: say what is not shown, or an empty screen puzzles
        marks = watermarks(settings.confluent_config(), topic).values()
        already = sum(max(0, high - low) for low, high in marks)
        if already:
            click.echo(
                f"tail: showing new records on {topic}; {already:,} already there "
                "(--from-beginning shows them)",
                err=True,
            )
    started = time.monotonic()
    shown = 0
    records = consume(
        settings.confluent_config(),
        [topic],
        group_id=f"streamproc-tail-{uuid.uuid4().hex[:8]}",
        timeout_s=timeout,
        idle_s=None if follow else 5.0,
        from_beginning=from_beginning,
    )
    with contextlib.closing(records):  # closes the consumer (leaves the group) on every exit
        for record in records:
            click.echo(record_as_json(record) if as_json else format_record(record))
            shown += 1
            if count is not None and shown >= count:
                return
    if timeout is not None and time.monotonic() - started >= timeout:
        click.echo(f"tail: stopped after --timeout {timeout:g} s ({shown} records)", err=True)
