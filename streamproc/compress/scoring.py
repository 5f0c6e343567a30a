"""How the job scores and times a model: accuracy and macro-F1 on the test split, the served
artifact through ``predict_batch`` as a worker runs it, and forward-pass latency timed
round-robin (one call per model in turn, so background load on a shared machine hits every
model alike) at batch 1 and 64 with 1 and 2 torch threads.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streamproc.compress.summary import Timing
from streamproc.errors import ArtifactError

if TYPE_CHECKING:
    from streamproc.compress.data import LabelledData

__all__ = [
    "ModelUnderTest",
    "accuracy",
    "machine_description",
    "macro_f1",
    "measure_latency",
    "predict",
    "score_artifact",
    "score_classifier",
]

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ModelUnderTest:
    """One row of the comparison."""

    name: str  # "teacher", "distilled", "pruned", "quantized"
    description: str
    forward: Forward  # (ids, mask) -> logits, already in eval mode
    encode: Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]]
    params: int
    size_bytes: int
    flops: int | None = None  # per test sequence of average length (students only)
    results: dict[str, Any] = field(default_factory=dict)


def accuracy(pred: np.ndarray, gold: Sequence[int]) -> float:
    return float((pred == np.asarray(gold)).mean()) if len(gold) else 0.0


def macro_f1(pred: np.ndarray, gold: Sequence[int], num_labels: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in gold or predictions."""
    g = np.asarray(gold)
    scores = []
    for c in range(num_labels):
        tp = int(((pred == c) & (g == c)).sum())
        fp = int(((pred == c) & (g != c)).sum())
        fn = int(((pred != c) & (g == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def score_classifier(
    classifier: Any, texts: Sequence[str], gold: Sequence[int], label_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy and macro-F1 of a served classifier, run as the worker runs it (predict_batch, 64
    at a time), which runtime it ran in, and how many labels change when each text comes alone
    (``batch_disagreement``: dynamic int8 picks activation scales per pass, so a text's label can
    depend on its batch-mates)."""
    index = {name: i for i, name in enumerate(label_names)}

    def labels(batch_size: int) -> np.ndarray:
        predicted: list[int] = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            predicted += [index[p.label] for p in classifier.predict_batch(batch)]
        return np.asarray(predicted, dtype=np.int64)

    pred = labels(64)
    alone = labels(1)
    return {
        "split": "test",
        "rows": len(gold),
        "accuracy": round(accuracy(pred, gold), 4),
        "macro_f1": round(macro_f1(pred, gold, len(label_names)), 4),
        "runtime": getattr(classifier, "runtime", "?"),
        "batch_disagreement": round(float((alone != pred).mean()) if len(pred) else 0.0, 4),
    }


def score_artifact(
    artifact_dir: Path, data: LabelledData, *, runtime: str = "auto"
) -> dict[str, Any]:
    """:func:`score_classifier` of the artifact at ``artifact_dir``, loaded as a worker loads it
    (its own runtime unless ``runtime`` forces one; one model thread). Raises
    :class:`ArtifactError` if its labels are not the data set's."""
    from streamproc.model.runtime import load_classifier

    classifier = load_classifier(artifact_dir, num_threads=1, runtime=runtime)  # type: ignore[arg-type]
    if list(classifier.labels) != list(data.labels):
        raise ArtifactError(
            f"label mismatch: model {list(classifier.labels)} vs data {list(data.labels)}"
        )
    return score_classifier(classifier, data.test_texts, data.test_labels, data.labels)


def predict(model: ModelUnderTest, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """argmax predictions for ``texts`` in batches of ``batch_size``."""
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            ids, mask = model.encode(texts[start : start + batch_size])
            out.append(model.forward(ids, mask).argmax(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def measure_latency(
    models: Sequence[ModelUnderTest],
    texts: Sequence[str],
    *,
    threads: Sequence[int] = (1, 2),
    batch_sizes: Sequence[int] = (1, 64),
    repeats: dict[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Timing]]:
    """Per model, per ``b{batch}_t{threads}``: median and p99 milliseconds of one forward call."""
    repeats = repeats or {1: 300, 64: 60}
    previous = torch.get_num_threads()
    results: dict[str, dict[str, Timing]] = {m.name: {} for m in models}
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for batch in batch_sizes:
                n = repeats.get(batch, 50)
                starts = [(i * batch) % max(1, len(texts) - batch + 1) for i in range(n)]
                inputs = {
                    m.name: [m.encode(texts[s : s + batch]) for s in starts[: min(n, 64)]]
                    for m in models
                }
                times: dict[str, list[float]] = {m.name: [] for m in models}
                with torch.inference_mode():
                    for m in models:  # warm-up
                        for ids, mask in inputs[m.name][:3]:
                            m.forward(ids, mask)
                    for i in range(n):
                        for m in models:
                            ids, mask = inputs[m.name][i % len(inputs[m.name])]
                            t0 = time.perf_counter()
                            m.forward(ids, mask)
                            times[m.name].append((time.perf_counter() - t0) * 1000)
                        if progress:
                            progress(1)
                for m in models:
                    values = sorted(times[m.name])
                    results[m.name][f"b{batch}_t{n_threads}"] = Timing(
                        median_ms=round(statistics.median(values), 4),
                        p99_ms=round(float(np.percentile(values, 99)), 4),
                        calls=len(values),
                    )
    finally:
        torch.set_num_threads(previous)
    return results


def machine_description() -> str:
    """What the timings ran on, for the report."""
    import os
    import platform

    version = torch.__version__.split("+")[0]
    return f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {version}"
