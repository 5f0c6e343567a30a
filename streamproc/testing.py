"""Test doubles that honour streamproc's narrow interfaces (used by tests and the quick bench),
and :func:`build_test_artifact`, a small real model built in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamproc.model.artifact import Runtime
from streamproc.model.base import ClassifierIdentity, Prediction

if TYPE_CHECKING:
    from streamproc.stream.app import Worker

__all__ = ["FakeClassifier", "build_test_artifact", "running_worker"]


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


# --- a fast, real artifact for the worker's tests ---------------------------------------------

_TEST_SUBJECTS = [
    "the movie",
    "this phone",
    "the service",
    "our hotel",
    "the book",
    "that song",
    "the food",
    "this game",
    "the class",
    "my flight",
]
_TEST_POSITIVE = [
    "was great",
    "is wonderful",
    "felt amazing",
    "was excellent",
    "is lovely",
    "was fantastic",
    "is really good",
    "made me happy",
]
_TEST_NEGATIVE = [
    "was terrible",
    "is awful",
    "felt boring",
    "was horrible",
    "is really bad",
    "was disappointing",
    "made me angry",
    "is a waste of time",
]


def _test_corpus(seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for subject in _TEST_SUBJECTS:
        for label, phrases in ((1, _TEST_POSITIVE), (0, _TEST_NEGATIVE)):
            for phrase in phrases:
                tail = rng.choice(["", " today", " overall", " honestly", " again"])
                texts.append(f"{subject} {phrase}{tail}")
                labels.append(label)
    return texts, labels


def build_test_artifact(
    out_dir: Path, version: str, *, seed: int = 0, runtime: Runtime = "onnxruntime"
) -> Path:
    """A small real artifact (labels ``negative`` / ``positive``) in a few seconds, no teacher
    (needs the ``compress`` extra: torch).

    Trains a 2-layer student on a templated sentiment corpus with the same tokenizer, distillation
    loop (hard labels as targets), structured pruning, int8 quantization and artifact code as the
    full job; served by ONNX Runtime like the job's (``runtime="torch"``: weights only, as
    before ONNX). Returns ``out_dir``.
    """
    import numpy as np
    import torch

    from streamproc.compress import distill as distill_mod
    from streamproc.compress.prune import PruneConfig, prune_network, score_importance
    from streamproc.compress.teacher import teacher_dir
    from streamproc.errors import TeacherUnavailable
    from streamproc.model.network import StudentNetwork
    from streamproc.model.quantize import quantize_int8
    from streamproc.model.saving import save_artifact
    from streamproc.model.tokenizer import StudentTokenizer, build_subset_tokenizer, train_wordpiece

    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and robust to a busy machine
    torch.manual_seed(seed)
    try:
        texts, labels = _test_corpus(seed)
        cfg = distill_mod.DistillConfig(
            vocab_size=400,
            max_tokens=32,
            dim=64,
            head_dim=16,
            heads=4,
            layers=2,
            ffn=128,
            epochs=6,
            batch_size=32,
            lr=3e-3,
            augment_per_text=0,
            seed=seed,
            dropout=0.0,
        )
        try:
            teacher_json = (teacher_dir() / "tokenizer.json").read_text(encoding="utf-8")
            raw_tok, _vocab = build_subset_tokenizer(teacher_json, texts, cfg.vocab_size)
        except TeacherUnavailable:  # no teacher package: train a WordPiece vocabulary instead
            raw_tok = train_wordpiece(texts, cfg.vocab_size)
        tokenizer = StudentTokenizer(raw_tok, cfg.max_tokens)
        model = StudentNetwork(cfg.student_config(tokenizer.vocab_size, 2))
        soft = np.eye(2, dtype=np.float32)[labels] * 4.0 - 2.0  # confident one-hot "teacher" logits
        distill_mod.distill(model, tokenizer, texts, soft, labels, cfg)
        importance = score_importance(
            model,
            tokenizer,
            texts,
            soft,
            temperature=cfg.temperature,
            batch_size=32,
            max_batches=4,
            seed=seed,
        )
        pruned = prune_network(
            model, importance, PruneConfig(head_fraction=0.25, ffn_fraction=0.25, min_ffn=16)
        )
        distill_mod.distill(pruned, tokenizer, texts, soft, labels, cfg, epochs=2)
        quantized = quantize_int8(pruned)
        metadata = {
            "dataset": {"name": "templated-sentiment", "train_rows": len(texts), "test_rows": 0},
            "training": {"purpose": "test fixture (build_test_artifact)", "seed": seed},
        }
        return save_artifact(
            Path(out_dir),
            model=quantized,
            config=pruned.config,
            tokenizer=tokenizer,
            labels=("negative", "positive"),
            version=version,
            metadata=metadata,
            runtime=runtime,
        )
    finally:
        torch.set_num_threads(prev)
