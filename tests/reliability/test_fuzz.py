"""Hostile input: generated payloads through the real decode/validation path, then through Kafka."""

from __future__ import annotations

import collections
import random
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.errors import EventError
from streamproc.events import DEAD_LETTER_REASONS, decode_event
from streamproc.stream.app import create_worker
from streamproc.testing import FakeClassifier, running_worker
from tests.helpers import collect, make_settings, produce_payloads

pytestmark = pytest.mark.reliability

MAX_BYTES = 64 * 1024

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=50),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
texts = st.one_of(
    st.text(max_size=300),
    st.text(
        alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Co"]), max_size=80
    ),
    st.just(""),
    st.just("   \t\n"),
)
events = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(
            st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.none(), st.just("")
        ),
        "text": st.one_of(texts, json_value),
        "ts": json_value,
        "extra": json_value,
    },
)


def _payloads() -> st.SearchStrategy[bytes]:
    encoded = events.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS))
    deep = st.integers(1, 3000).map(lambda n: b'{"id":"d","text":' + b"[" * n + b"]" * n + b"}")
    huge = st.integers(MAX_BYTES - 100, MAX_BYTES + 100).map(
        lambda n: b'{"id":"h","text":"' + b"x" * n + b'"}'
    )
    return st.one_of(
        st.binary(max_size=400),
        encoded,
        json_value.map(orjson.dumps),
        deep,
        huge,
        encoded.map(lambda b: b[: len(b) // 2]),  # truncated JSON
        encoded.map(lambda b: b.replace(b'"', b'\xff"', 1)),
    )  # invalid UTF-8


def classify(payload: bytes) -> str:
    """'ok' or the dead-letter reason; anything else (an unexpected exception) fails the test."""
    try:
        event = decode_event(payload, max_bytes=MAX_BYTES)
    except EventError as error:
        assert error.reason in DEAD_LETTER_REASONS
        return error.reason
    assert isinstance(event.id, str) and event.id
    assert isinstance(event.text, str) and event.text.strip()
    return "ok"


SEEN: collections.Counter[str] = collections.Counter()


@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_payloads())
def test_ten_thousand_payloads_are_predicted_or_dead_lettered(payload: bytes) -> None:
    started = time.perf_counter()
    SEEN[classify(payload)] += 1
    assert time.perf_counter() - started < 1.0, "no payload may hang the decoder"


def test_fuzz_reached_every_kind_of_outcome() -> None:
    if not SEEN:  # run on its own: generate first
        test_ten_thousand_payloads_are_predicted_or_dead_lettered()
    assert sum(SEEN.values()) >= 10_000
    assert SEEN["ok"] > 0
    assert len(SEEN) >= 8, SEEN


def _live_payloads(n: int, seed: int) -> list[bytes]:
    """A seeded mix of good and hostile payloads for the run through the broker."""
    rng = random.Random(seed)
    makers = [
        lambda i: orjson.dumps(
            {"id": f"g-{i}", "text": "".join(rng.choices("ab ç\x07\u2028", k=12)) + "!"}
        ),
        lambda i: rng.randbytes(rng.randint(0, 300)),
        lambda i: orjson.dumps({"id": f"t-{i}", "text": "x" * rng.randint(1, 5)})[
            : rng.randint(0, 20)
        ],
        lambda i: b'{"id":"u-%d","text":"\xc3\x28"}' % i,
        lambda i: b'{"id":"d","text":' + b"[" * 2000 + b"]" * 2000 + b"}",
        lambda i: b'{"id":"big-%d","text":"' % i + b"y" * (MAX_BYTES + 10) + b'"}',
        lambda i: orjson.dumps({"id": i, "text": "wrong id type"}),
        lambda i: orjson.dumps({"id": f"w-{i}", "text": rng.choice([None, 3.5, [], {}, "", " "])}),
        lambda i: orjson.dumps(
            {"id": f"ts-{i}", "text": "hello", "ts": rng.choice([-1, "now", True])}
        ),
    ]
    return [makers[i % len(makers)](i) for i in range(n)]


@pytest.mark.kafka
def test_fuzzed_payloads_through_the_broker(kafka_bootstrap: str, unique: str) -> None:
    payloads = _live_payloads(450, seed=7)
    expected = collections.Counter(classify(p) for p in payloads)
    s = make_settings(kafka_bootstrap, unique, max_event_bytes=MAX_BYTES)
    keyed = [(f"k{i}".encode() if i % 3 else b"", p) for i, p in enumerate(payloads)]
    with running_worker(lambda: create_worker(s, model=FakeClassifier(), web_enabled=False)):
        produce_payloads(s, keyed)
        predictions = collect(s, s.output_topic, expected["ok"], unique=unique, timeout_s=120)
        dead = collect(
            s, s.dead_letter_topic, len(payloads) - expected["ok"], unique=unique, timeout_s=120
        )
    reasons = collections.Counter(r.headers["streamproc-reason"].decode() for r in dead)
    assert len(predictions) == expected["ok"]
    assert reasons == collections.Counter({k: v for k, v in expected.items() if k != "ok"})
