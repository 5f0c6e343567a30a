"""``streamproc produce``: send events with confluent-kafka, at a given rate.

Events come from a built-in data set, a file (``-``: stdin) or ``--text``. A JSONL line is sent as
the user wrote it — its ``id``, ``key`` and every other field kept; only a missing ``id`` or ``ts``
is filled in. Every generated event is stamped with its send time (``ts``, epoch ms) so the
consumer of predictions can measure event-to-prediction latency. Rates are kept by a token
schedule (not sleeps per event), so 5,000 events/s from one Python process is no strain for
librdkafka. Progress counts what the broker acknowledged, not what was handed to the client.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import click
import orjson
from confluent_kafka import KafkaError, KafkaException

from streamproc.errors import BrokerError, DataError
from streamproc.kafka import ensure_topics, make_ready_producer, require_reachable
from streamproc.settings import Settings, load_settings

__all__ = [
    "ProduceStats",
    "bad_payloads",
    "parse_event_lines",
    "produce",
    "produce_events",
    "read_events",
]

# What produce_events sends: a text (the event gets a generated id) or an event object as given.
Source = str | Mapping[str, Any]
FileFormat = Literal["auto", "jsonl", "lines"]


@dataclass(frozen=True, slots=True)
class ProduceStats:
    sent: int  # acknowledged by the broker
    seconds: float
    send_times_ms: dict[str, float]  # id -> time it was handed to the producer

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")


def bad_payloads() -> list[tuple[str, bytes]]:
    """One example of every kind of bad event, with the reason the worker should give."""
    return [
        ("malformed_json", b'{"id": "x", "text": '),
        ("invalid_utf8", b'{"id": "bad-utf8", "text": "caf\xc3\x28"}'),
        ("not_an_object", b'["id", "text"]'),
        ("missing_id", b'{"text": "no id here"}'),
        ("invalid_id", b'{"id": 42, "text": "numeric id"}'),
        ("missing_text", b'{"id": "no-text"}'),
        ("invalid_text", b'{"id": "num-text", "text": 12345}'),
        ("empty_text", b'{"id": "blank", "text": "   "}'),
        ("invalid_ts", b'{"id": "bad-ts", "text": "hello", "ts": "yesterday"}'),
        ("empty_payload", b""),
    ]


def produce_events(
    settings: Settings,
    texts: Sequence[Source],
    *,
    count: int,
    rate: float = 0.0,
    topic: str | None = None,
    id_prefix: str = "e",
    keys: int = 0,
    bad_every: int = 0,
    progress: Callable[[int], None] | None = None,
    delivery_timeout_s: float = 60.0,
) -> ProduceStats:
    """Send ``count`` events cycling over ``texts`` at ``rate``/s (0 = as fast as possible).

    An item of ``texts`` is a text (sent as ``{"id": "<prefix>-<i>", "text", "ts"}``) or an event
    object, sent with its own fields; it gets an ``id`` and ``ts`` only where it has none. The key
    is ``k<i mod keys>`` when ``keys`` > 0, else the event's string ``key`` field, else its id.
    ``bad_every`` = n puts one bad payload after every n good ones (for the demo and tests).
    ``progress(n)`` is called as the broker acknowledges events. Raises BrokerError when the broker
    does not acknowledge every event within ``delivery_timeout_s`` of the last send, or refuses
    one.
    """
    if not texts:
        raise DataError("no events to produce")
    topic = topic or settings.input_topic
    # Ready (metadata, producer id) before the first stamped send: a fresh producer's first
    # messages otherwise wait for both, and their ts says they waited in the pipeline.
    producer = make_ready_producer(settings.confluent_config(), topic)
    bad = itertools.cycle(bad_payloads())
    send_times: dict[str, float] = {}
    delivery = _Deliveries(progress)
    start = time.perf_counter()
    sources = itertools.cycle(texts)
    for i in range(count):
        if rate > 0:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        now_ms = time.time() * 1000.0
        event = _event(next(sources), f"{id_prefix}-{i}", now_ms)
        key = f"k{i % keys}" if keys else _key_of(event)
        _produce(producer, topic, key.encode(), orjson.dumps(event), delivery.on_good)
        send_times[str(event["id"])] = now_ms
        if bad_every and (i + 1) % bad_every == 0:
            _produce(producer, topic, f"bad-{i}".encode(), next(bad)[1], delivery.on_bad)
    remaining = producer.flush(delivery_timeout_s)
    if remaining:
        raise BrokerError(
            f"{remaining} records were not acknowledged by the broker at "
            f"{settings.bootstrap_servers} within {delivery_timeout_s:g} s "
            f"({delivery.acked} of {count} events were)"
        )
    if delivery.first_error is not None:
        raise BrokerError(
            f"{delivery.failed} records were not delivered to {topic}: {delivery.first_error}"
        )
    return ProduceStats(delivery.acked, time.perf_counter() - start, send_times)


def _event(source: Source, generated_id: str, now_ms: float) -> dict[str, Any]:
    if isinstance(source, str):
        return {"id": generated_id, "text": source, "ts": now_ms}
    event = dict(source)
    event.setdefault("id", generated_id)
    event.setdefault("ts", now_ms)
    return event


def _key_of(event: Mapping[str, Any]) -> str:
    key = event.get("key")
    return key if isinstance(key, str) else str(event["id"])


class _Deliveries:
    """Counts the broker's acknowledgements (librdkafka calls these from ``poll``/``flush``)."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None
        self._progress = progress

    def on_good(self, err: KafkaError | None, _msg: Any) -> None:
        if self._failed(err):
            return
        self.acked += 1
        if self._progress is not None:
            self._progress(1)

    def on_bad(self, err: KafkaError | None, _msg: Any) -> None:
        self._failed(err)

    def _failed(self, err: KafkaError | None) -> bool:
        if err is None:
            return False
        self.failed += 1
        self.first_error = self.first_error or err.str()
        return True


def _produce(
    producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable[..., None]
) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:  # local queue full: let librdkafka deliver some
            producer.poll(0.05)
        except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
            raise BrokerError(f"could not send to {topic}: {exc.args[0].str()}") from None


# --- reading events ------------------------------------------------------------------------------


def read_events(
    *,
    dataset: str | None = None,
    file: str | None = None,
    texts: Sequence[str] = (),
    file_format: FileFormat = "auto",
    split: str = "test",
) -> list[Source]:
    """Events from exactly one source: ``texts``, a file (``"-"``: stdin), or a built-in data set
    (its test split by default). Raises DataError, naming the line, for input it cannot send."""
    if texts:
        if any(not text.strip() for text in texts):
            raise DataError("--text: an empty text is not an event")
        return list(texts)
    if file == "-":
        return parse_event_lines(sys.stdin.buffer, "<stdin>", file_format)
    if file is not None:
        try:
            with open(file, "rb") as handle:
                return parse_event_lines(handle, file, file_format)
        except FileNotFoundError:
            raise DataError(f"{file}: no such file") from None
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if dataset is None:
        raise DataError("nothing to produce: give --dataset NAME, --file PATH or --text TEXT")
    from streamproc.compress.data import load_dataset
    from streamproc.settings import default_cache_dir

    data = load_dataset(dataset, cache_dir=default_cache_dir())
    return list(data.test_texts if split == "test" else data.train_texts)


def parse_event_lines(lines: Iterable[bytes], name: str, file_format: FileFormat) -> list[Source]:
    """JSONL (one event object with a string ``text`` per line) or plain text (a line = a text).

    ``auto``: JSONL for ``.jsonl``/``.ndjson`` names, or when the first non-blank line starts with
    ``{``; else plain text. Blank lines are skipped. The whole input is checked before anything is
    sent, so a bad line 57 sends nothing."""
    events: list[Source] = []
    jsonl = file_format == "jsonl" or (
        file_format == "auto" and name.endswith((".jsonl", ".ndjson"))
    )
    sniff = file_format == "auto" and not jsonl
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if sniff:
            jsonl, sniff = line.startswith(b"{"), False
        where = f"{name}:{number}"
        if jsonl:
            events.append(_parse_json_event(line, where))
            continue
        try:
            events.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not events:
        raise DataError(f"{name}: no events (empty input)")
    return events


def _parse_json_event(line: bytes, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{where}: a JSONL line must be an object, got {type(doc).__name__}")
    if not isinstance(doc.get("text"), str) or not doc["text"].strip():
        raise DataError(f"{where}: needs a non-empty string 'text' field")
    for field in ("id", "key"):
        if field in doc and (not isinstance(doc[field], str) or not doc[field]):
            raise DataError(f"{where}: '{field}' must be a non-empty string")
    return doc


def _shuffled(texts: list[Source], seed: int) -> Iterator[Source]:
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    return iter(order)


@click.command("produce")
@click.option("--dataset", help="Built-in data set to draw texts from (its test split): trec, …")
@click.option(
    "--file",
    "file",
    help="JSONL events (each with 'text'; 'id', 'key', 'ts' and other fields are kept) or plain "
    "lines (a line = a text); - reads stdin.",
)
@click.option(
    "--text",
    "texts",
    multiple=True,
    help="A text to send (repeat for more).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "jsonl", "lines"]),
    default="auto",
    show_default=True,
    help="How to read --file; auto: JSONL if the name ends .jsonl or the first line starts with {.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Events to send, cycling over the source. [--dataset: 1000; --file/--text: each once]",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Events per second; 0 = as fast as possible.",
)
@click.option(
    "--keys",
    type=click.IntRange(min=0),
    default=0,
    help="Spread events over N keys k0..kN-1. [the event's 'key' field, else its id]",
)
@click.option(
    "--bad-every",
    type=click.IntRange(min=0),
    default=0,
    help="Insert one bad payload after every N events (exercise the dead-letter topic).",
)
@click.option("--topic", default=None, help="Default: STREAMPROC_INPUT_TOPIC.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffles --dataset texts.")
def produce(
    dataset: str | None,
    file: str | None,
    texts: tuple[str, ...],
    file_format: FileFormat,
    count: int | None,
    rate: float,
    keys: int,
    bad_every: int,
    topic: str | None,
    seed: int,
) -> None:
    """Produce events (JSON: id, text, ts) to the input topic."""
    given = [
        name
        for name, value in (("--dataset", dataset), ("--file", file), ("--text", texts))
        if value
    ]
    if len(given) != 1:
        raise click.UsageError(
            f"give one source of events, not {' and '.join(given)}"
            if given
            else "give --dataset NAME, --file PATH (- for stdin) or --text TEXT"
        )
    settings = load_settings()
    events = read_events(dataset=dataset, file=file, texts=texts, file_format=file_format)
    if dataset is not None:
        events = list(_shuffled(events, seed))  # files and --text keep their order (per-key order)
    count = count or (1000 if dataset is not None else len(events))
    topic = topic or settings.input_topic
    require_reachable(settings.bootstrap_servers)
    ensure_topics(
        settings.confluent_config(),
        {topic: settings.input_partitions},
        replication_factor=settings.replication_factor,
    )
    from tqdm import tqdm

    with tqdm(total=count, unit="ev", desc=f"producing to {topic}") as bar:
        stats = produce_events(
            settings,
            events,
            count=count,
            rate=rate,
            topic=topic,
            keys=keys,
            bad_every=bad_every,
            progress=bar.update,
        )
    click.echo(f"sent {stats.sent} events in {stats.seconds:.2f}s ({stats.rate:,.0f}/s) to {topic}")
