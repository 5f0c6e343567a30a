"""``streamproc tail``: consume predictions (or dead letters) and pretty-print them."""

from __future__ import annotations

import uuid

import click
import orjson

from streamproc.kafka import ConsumedRecord, consume
from streamproc.settings import load_settings

__all__ = ["format_dead_letter", "format_prediction", "tail"]


def format_prediction(record: ConsumedRecord) -> str:
    try:
        out = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return f"p{record.partition}@{record.offset}  <not a prediction: {record.value!r:.80}>"
    latency = out.get("latency_ms")
    latency_txt = f"{latency:7.1f} ms" if isinstance(latency, int | float) else "      - ms"
    return (
        f"p{record.partition}@{record.offset:<7} {out.get('id', '?')!s:<14.14} "
        f"{out.get('label', '?')!s:<10.10} {out.get('score', 0):.3f}  {latency_txt}  "
        f"batch {out.get('batch_size', '?'):>4}  model {out.get('model_version', '?')}"
    )


def format_dead_letter(record: ConsumedRecord) -> str:
    headers = record.headers
    reason = headers.get("streamproc-reason", b"?").decode()
    origin = (
        f"{headers.get('streamproc-source-topic', b'?').decode()}"
        f"[{headers.get('streamproc-source-partition', b'?').decode()}]"
        f"@{headers.get('streamproc-source-offset', b'?').decode()}"
    )
    return f"{reason:<16} from {origin:<28} value {record.value!r:.60}"


@click.command("tail")
@click.option("--dead-letters", is_flag=True, help="Show the dead-letter topic instead.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N records.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep waiting for new records (else stop after 5 s of silence).",
)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
def tail(
    dead_letters: bool, count: int | None, follow: bool, from_beginning: bool, timeout: float
) -> None:
    """Consume and pretty-print predictions (id, label, score, latency, batch, model)."""
    settings = load_settings()
    topic = settings.dead_letter_topic if dead_letters else settings.output_topic
    fmt = format_dead_letter if dead_letters else format_prediction
    records = consume(
        settings.confluent_config(),
        [topic],
        group_id=f"streamproc-tail-{uuid.uuid4().hex[:8]}",
        stop=(lambda seen: len(seen) >= count) if count else None,
        timeout_s=timeout,
        idle_s=None if follow else 5.0,
        from_beginning=from_beginning,
    )
    for record in records:
        click.echo(fmt(record))
