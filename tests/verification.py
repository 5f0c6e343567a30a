"""Judging a run with ``streamproc verify``'s classification (shared by the fault tests)."""

from __future__ import annotations

import time

import orjson

from streamproc.settings import Settings
from streamproc.tools.verdict import Verdict
from streamproc.tools.verify import verify_topics
from tests.helpers import committed_offsets, topic_end_offsets

#: Invalid payloads mixed into a stream, each with the dead-letter reason it must get.
INVALID = (
    (b"{not json", "malformed_json"),
    (b'{"id": "x", "text": ""}', "empty_text"),
    (b"[1, 2]", "not_an_object"),
    (b'{"text": "no id"}', "missing_id"),
    (b"\xff\xfe", "invalid_utf8"),
)


def mixed_events(n: int, *, every: int = 10, prefix: str = "e") -> list[tuple[bytes, bytes]]:
    """``n`` events; every ``every``-th is invalid (cycling through :data:`INVALID`), the rest
    valid with ids ``prefix-i``."""
    now = time.time() * 1000.0
    events = []
    for i in range(n):
        key = f"key-{i % 64}".encode()
        if i % every == every - 1:
            events.append((key, INVALID[(i // every) % len(INVALID)][0]))
        else:
            text = f"event {i}: what is the capital of country {i % 97}?"
            events.append((key, orjson.dumps({"id": f"{prefix}-{i}", "text": text, "ts": now})))
    return events


def judge(settings: Settings, **options: float) -> Verdict:
    """The verifier's verdict on this run's topics and group, under its guarantee."""
    return verify_topics(
        settings.confluent_config(),
        input_topic=settings.input_topic,
        output_topic=settings.output_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group=settings.app_id,
        guarantee=settings.processing_guarantee,
        **options,
    )


def committed_total(settings: Settings) -> int:
    return sum(max(0, offset) for offset in committed_offsets(settings).values())


def wait_until_committed_to_end(settings: Settings, timeout_s: float = 120.0) -> bool:
    """Wait until the group committed every input partition up to its end."""
    ends = topic_end_offsets(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        committed = committed_offsets(settings)
        if all(committed.get(p, -1) >= end for p, end in ends.items()):
            return True
        time.sleep(0.5)
    return False
