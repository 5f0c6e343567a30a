"""``streamproc produce``: a load generator with confluent-kafka, at a given rate.

Every event is stamped with its send time (``ts``, epoch ms) so the consumer of predictions can
measure event-to-prediction latency. Rates are kept by a token schedule (not sleeps per event),
so 5,000 events/s from one Python process is no strain for librdkafka.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import orjson

from streamproc.errors import ConfigError, DataError
from streamproc.kafka import ensure_topics, make_producer
from streamproc.settings import Settings, load_settings

__all__ = ["ProduceStats", "bad_payloads", "produce", "produce_events", "read_texts"]


@dataclass(frozen=True, slots=True)
class ProduceStats:
    sent: int
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
    texts: Sequence[str],
    *,
    count: int,
    rate: float = 0.0,
    topic: str | None = None,
    id_prefix: str = "e",
    keys: int = 0,
    bad_every: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ProduceStats:
    """Send ``count`` events cycling over ``texts`` at ``rate``/s (0 = as fast as possible).

    ``keys`` > 0 gives each event a key out of that many (per-key order); ``bad_every`` = n puts
    one bad payload after every n good ones (for the demo and tests).
    """
    if not texts:
        raise DataError("no texts to produce")
    topic = topic or settings.input_topic
    producer = make_producer(settings.confluent_config())
    bad = itertools.cycle(bad_payloads())
    send_times: dict[str, float] = {}
    start = time.perf_counter()
    text_cycle = itertools.cycle(texts)
    for i in range(count):
        if rate > 0:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        event_id = f"{id_prefix}-{i}"
        now_ms = time.time() * 1000.0
        key = f"k{i % keys}".encode() if keys else event_id.encode()
        value = orjson.dumps({"id": event_id, "text": next(text_cycle), "ts": now_ms})
        _produce(producer, topic, key, value)
        send_times[event_id] = now_ms
        if bad_every and (i + 1) % bad_every == 0:
            _produce(producer, topic, f"bad-{i}".encode(), next(bad)[1])
        if progress and i % 256 == 0:
            progress(min(256, count - i))
    remaining = producer.flush(60)
    if remaining:
        raise DataError(f"{remaining} events were not delivered within 60 s")
    return ProduceStats(count, time.perf_counter() - start, send_times)


def _produce(producer: object, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)  # type: ignore[attr-defined]
            producer.poll(0)  # type: ignore[attr-defined]
            return
        except BufferError:  # local queue full: let librdkafka deliver some
            producer.poll(0.05)  # type: ignore[attr-defined]


def read_texts(dataset: str | None, file: Path | None, *, split: str = "test") -> list[str]:
    """Texts from a built-in data set (its test split by default), a JSONL file, or plain lines."""
    if file is not None:
        return list(_texts_from_file(file))
    if dataset is None:
        raise ConfigError("give --dataset NAME or --file PATH")
    from streamproc.compress.data import default_cache_dir, load_dataset

    data = load_dataset(dataset, cache_dir=default_cache_dir())
    return data.test_texts if split == "test" else data.train_texts


def _texts_from_file(path: Path) -> Iterable[str]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                doc = orjson.loads(line)
                if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                    raise DataError(f"{path}: every JSONL line needs a string 'text' field")
                yield doc["text"]
            else:
                yield line


def _shuffled(texts: list[str], seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    return iter(order)


@click.command("produce")
@click.option("--dataset", help="Built-in data set to draw texts from (its test split): trec, …")
@click.option(
    "--file", "file", type=click.Path(path_type=Path), help="JSONL with 'text', or lines."
)
@click.option("--count", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Events per second; 0 = as fast as possible.",
)
@click.option("--keys", type=click.IntRange(min=0), default=0, help="Number of distinct keys.")
@click.option(
    "--bad-every",
    type=click.IntRange(min=0),
    default=0,
    help="Insert one bad payload after every N events (exercise the dead-letter topic).",
)
@click.option("--topic", default=None, help="Default: STREAMPROC_INPUT_TOPIC.")
@click.option("--seed", type=int, default=0, show_default=True)
def produce(
    dataset: str | None,
    file: Path | None,
    count: int,
    rate: float,
    keys: int,
    bad_every: int,
    topic: str | None,
    seed: int,
) -> None:
    """Produce text events (JSON: id, text, ts) to the input topic."""
    from tqdm import tqdm

    settings = load_settings()
    texts = list(_shuffled(read_texts(dataset, file), seed))
    topic = topic or settings.input_topic
    ensure_topics(
        settings.confluent_config(),
        {topic: settings.input_partitions},
        replication_factor=settings.replication_factor,
    )
    with tqdm(total=count, unit="ev", desc=f"producing to {topic}") as bar:
        stats = produce_events(
            settings,
            texts,
            count=count,
            rate=rate,
            topic=topic,
            keys=keys,
            bad_every=bad_every,
            progress=bar.update,
        )
        bar.update(count - bar.n)
    click.echo(f"sent {stats.sent} events in {stats.seconds:.2f}s ({stats.rate:,.0f}/s) to {topic}")
