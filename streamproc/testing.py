"""Test doubles that honour streamproc's narrow interfaces (used by tests and the quick bench)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from streamproc.model.base import ClassifierIdentity, Prediction

if TYPE_CHECKING:
    from streamproc.stream.app import Worker

__all__ = ["FakeClassifier", "running_worker"]


class FakeClassifier(ClassifierIdentity):
    """A deterministic :class:`~streamproc.model.base.TextClassifier` with a tunable cost.

    The label is a stable hash of the text, so a test can predict every output. ``fail_on``
    makes ``predict_batch`` raise when a batch contains that text (poison-event tests);
    ``cost_s``/``cost_per_item_s`` make a batch take ``a + b·n`` seconds.
    """

    def __init__(
        self,
        version: str = "fake-1",
        labels: Sequence[str] = ("neg", "pos"),
        *,
        cost_s: float = 0.0,
        cost_per_item_s: float = 0.0,
        fail_on: str | None = None,
        max_tokens: int = 64,
    ) -> None:
        super().__init__(version=version, labels=labels, max_tokens=max_tokens)
        self._cost_s = cost_s
        self._cost_per_item_s = cost_per_item_s
        self._fail_on = fail_on
        self.batch_sizes: list[int] = []
        self.on_batch: Callable[[Sequence[str]], None] | None = None  # called as a batch starts
        self._lock = threading.Lock()

    def expected_label(self, text: str) -> str:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return self._labels[int.from_bytes(digest, "big") % len(self._labels)]

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        with self._lock:
            self.batch_sizes.append(len(texts))
        if self.on_batch is not None:
            self.on_batch(texts)
        if self._fail_on is not None and self._fail_on in texts:
            raise RuntimeError("poisoned batch")
        if self._cost_s or self._cost_per_item_s:
            time.sleep(self._cost_s + self._cost_per_item_s * len(texts))
        out = []
        for text in texts:
            label = self.expected_label(text)
            others = (1.0 - 0.9) / max(1, len(self._labels) - 1)
            probs = {name: (0.9 if name == label else others) for name in self._labels}
            out.append(Prediction(label=label, score=0.9, probabilities=probs))
        return out


@contextlib.contextmanager
def running_worker(
    factory: Callable[[], Worker],
    *,
    startup_timeout_s: float = 60.0,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
) -> Iterator[Worker]:
    """Run a worker's Faust app in a background thread with its own event loop.

    ``factory`` is called *inside* that thread, so the app binds to the thread's loop (made by
    ``loop_factory``: e.g. ``uvloop.new_event_loop``). On exit the app is stopped gracefully
    (in-flight batches drain, offsets commit).
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = loop_factory()
        asyncio.set_event_loop(loop)

        async def main() -> None:
            state["stop"] = asyncio.Event()
            worker = factory()
            state["worker"] = worker
            await worker.app.start()
            ready.set()
            await state["stop"].wait()
            await worker.app.stop()

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test thread
            state["error"] = exc
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=serve, name="streamproc-test-worker", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout_s) or "error" in state:
        raise RuntimeError(f"worker did not start: {state.get('error')!r}")
    loop = state["worker"].app.loop
    try:
        yield state["worker"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(60)
        if "error" in state:
            raise RuntimeError(f"worker failed: {state['error']!r}") from state["error"]
