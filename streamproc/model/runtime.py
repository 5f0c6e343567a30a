"""The model the stream path runs: :class:`Classifier`, loaded from a verified artifact.

A classifier is a tokenizer plus an *engine*: a callable ``(ids, mask) → logits`` over NumPy
arrays. Two engines:

- :class:`OnnxEngine` — ONNX Runtime on the artifact's ``model.onnx`` (the default wherever the
  artifact has one). One ``run`` call per batch, with the GIL released for the whole graph, so
  the event loop and the model no longer take turns (see ``streamproc/model/onnx.py`` for the
  numbers). Serving this way never imports torch.
- :class:`TorchEngine` — eager PyTorch on ``weights.safetensors`` under ``inference_mode``.

``predict_batch`` tokenizes the whole batch in one call, pads to the longest text, masks the
padding out of attention and pooling (so a text gets the same fp32 answer alone or inside a
batch). int8 dynamic quantization picks activation scales per call from the whole batch, so an
int8 model's scores for a text can move slightly with its batch-mates; the offline report
measures how often the *label* changes between batch 1 and batch 64 on the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from streamproc.errors import ArtifactError, ModelError
from streamproc.model.artifact import (
    ONNX_GRAPH,
    LoadedArtifact,
    check_network,
    load_artifact,
    require_torch,
    runtime_engine,
    verify_artifact,
)
from streamproc.model.base import ClassifierIdentity, Prediction
from streamproc.model.tokenizer import StudentTokenizer

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FORWARD_CHUNK",
    "PASS_OVERHEAD_TOKENS",
    "Classifier",
    "Engine",
    "OnnxEngine",
    "RuntimeChoice",
    "TorchEngine",
    "load_classifier",
    "plan_passes",
]

RuntimeChoice = Literal["auto", "onnxruntime", "torch"]  # auto: what the artifact names

#: Largest single forward pass; bigger batches are split into length-sorted passes.
FORWARD_CHUNK = 64
#: A forward pass's fixed cost, in padded tokens' worth of work (see :func:`plan_passes`).
#: Measured on the TREC student in ONNX Runtime (1 thread, TREC test questions, 10.3 tokens on
#: average, 24 at most), median ms per batch for one padded pass → passes planned with 128 / 64 /
#: 32 / 16: batch 32: 6.13 → 4.55 / 4.40 / 4.28 / 4.24; batch 64: 13.7 → 8.83 / 8.10 / 7.85 /
#: 7.77; batch 256 (four passes at least): 34.1 → 29.2 / 27.3 / 27.4 / 26.9; batch 8: ~1.45
#: throughout. 32 is within 1% of the best at every size.
PASS_OVERHEAD_TOKENS = 32


def plan_passes(
    lengths: Sequence[int],
    *,
    max_rows: int = FORWARD_CHUNK,
    overhead_tokens: int = PASS_OVERHEAD_TOKENS,
) -> list[list[int]]:
    """Split a batch into forward passes (lists of row indices) of at most ``max_rows`` rows.

    Cost model: a pass of ``n`` rows padded to its longest length ``t`` costs
    ``overhead_tokens + n·t``. Rows are sorted by length and cut where the total is least
    (dynamic programming over the sorted order, O(B·max_rows)). A batch whose lengths are alike
    stays one pass.
    """
    count = len(lengths)
    if count == 0:
        return []
    order = sorted(range(count), key=lengths.__getitem__)
    sorted_lengths = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * count  # best[j]: least cost of the first j sorted rows
    cut = [0] * (count + 1)  # cut[j]: where the last pass of that plan starts
    for end in range(1, count + 1):
        longest = sorted_lengths[end - 1]  # sorted: the pass's last row is its longest
        for start in range(max(0, end - max_rows), end):
            cost = best[start] + overhead_tokens + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    passes = []
    end = count
    while end > 0:
        passes.append(order[cut[end] : end])
        end = cut[end]
    return passes[::-1]


class Engine(Protocol):
    """ids (B, T) int64, mask (B, T) bool → logits (B, L) float32."""

    name: str

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


class OnnxEngine:
    """An ONNX Runtime session on the CPU."""

    name = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self._session = session

    @classmethod
    def from_file(cls, path: Path, *, num_threads: int | None = None) -> OnnxEngine:
        """``num_threads``: intra-op threads (None or 0: ORT's default, one per core)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads spin by default: on 2 cores that burns the event loop's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(
                str(path),
                options,
                providers=["CPUExecutionProvider"],
                # ORT 1.32's CPU SkipLayerNormalization, which this fusion puts in place of
                # Add + LayerNormalization, ran ~8x slower per node than the two ops it replaces
                # (one thread, batch 64, profiled): a post-LN student's int8 graph took 12.8 ms
                # with it and 6.6 ms without, the shipped pre-LN graph 7.0 and 6.5 ms.
                disabled_optimizers=["SkipLayerNormFusion"],
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ArtifactError(f"{path}: ONNX Runtime cannot load the graph ({exc})") from None
        return cls(session)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run(["logits"], {"ids": ids, "mask": mask})  # (B, L)
        return np.asarray(logits, dtype=np.float32)


class TorchEngine:
    """Eager PyTorch (fp32 or torch int8-dynamic)."""

    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(ids), torch.from_numpy(mask))  # (B, L)
        return logits.float().numpy()


class Classifier(ClassifierIdentity):
    """A :class:`~streamproc.model.base.TextClassifier`: tokenizer + engine + label names."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: StudentTokenizer,
        labels: Sequence[str],
        *,
        version: str,
        max_tokens: int,
    ) -> None:
        super().__init__(version=version, labels=labels, max_tokens=max_tokens)
        self.engine = engine
        self._tokenizer = tokenizer

    @classmethod
    def from_artifact(cls, artifact: LoadedArtifact) -> Classifier:
        """The torch engine over an artifact :func:`load_artifact` loaded."""
        return cls(
            TorchEngine(artifact.model),
            artifact.tokenizer,
            artifact.labels,
            version=artifact.version,
            max_tokens=artifact.max_tokens,
        )

    @property
    def runtime(self) -> str:
        """Which engine serves: ``onnxruntime`` or ``torch``."""
        return self.engine.name

    @property
    def tokenizer(self) -> StudentTokenizer:
        return self._tokenizer

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw scores (B, num_labels) for the batch.

        The batch is tokenized once, then run as the length-sorted forward passes
        :func:`plan_passes` picks: one pass pads every text to its longest, so a pass that mixes
        a 40-token question with 63 short ones spends most of its time on padding, while each
        extra pass costs a fixed overhead (measured numbers in :data:`PASS_OVERHEAD_TOKENS`).
        In fp32 a text's scores do not depend on its batch-mates (padding is masked out), so the
        split changes only the time; a dynamically quantized int8 graph picks its activation
        scales per pass, so its scores move slightly with the split (the offline job's report
        measures how often a label flips between batch 1 and batch 64).
        """
        if not texts:
            return np.zeros((0, len(self._labels)), dtype=np.float32)
        ids, mask = self._tokenizer.encode_arrays(texts)  # (B, T), (B, T)
        lengths = mask.sum(axis=1)  # (B,)
        passes = plan_passes(lengths.tolist())
        if len(passes) == 1:
            return self.engine(ids, mask)
        out = np.empty((len(texts), len(self._labels)), dtype=np.float32)
        for rows in passes:
            longest = int(lengths[rows].max())
            out[rows] = self.engine(ids[rows, :longest], mask[rows, :longest])  # (b, L)
        return out

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """One :class:`Prediction` per text, in order; an empty batch gives an empty list."""
        if not texts:
            return []
        try:
            logits = self.logits(texts)  # (B, L)
        except (RuntimeError, ValueError) as exc:  # torch and ORT failures on odd input
            raise ModelError(
                f"model {self._version} failed on a batch of {len(texts)}: {exc}"
            ) from exc
        probs = softmax(logits)  # (B, L)
        # One argmax and one tolist per batch: this runs in the inference thread holding the GIL.
        labels, best = self._labels, probs.argmax(axis=1).tolist()
        return [
            Prediction(labels[b], row[b], dict(zip(labels, row, strict=True)))
            for b, row in zip(best, probs.tolist(), strict=True)
        ]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, L) scores, in float64 so probabilities sum to 1 within 1e-12."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)  # (B, L)


def load_classifier(
    artifact_dir: Path, *, num_threads: int | None = None, runtime: RuntimeChoice = "auto"
) -> Classifier:
    """Verify (sha256) and load an artifact into a ready :class:`Classifier`.

    ``runtime``: ``auto`` serves with the engine the artifact names (ONNX Runtime when it ships
    ``model.onnx``); ``torch`` / ``onnxruntime`` force one. ``num_threads`` sets the engine's
    intra-op threads (torch: process-wide; None leaves the engine's default).
    Raises :class:`ArtifactError` for a missing, corrupted, tampered or unknown artifact, one
    whose manifest disagrees with its network or whose weights are not finite
    (:func:`check_network`), and for an ONNX graph that fails its self-check on this machine.
    """
    if num_threads is not None and num_threads < 1:
        raise ArtifactError(f"num_threads must be at least 1, got {num_threads}")
    path = Path(artifact_dir)
    manifest = verify_artifact(path)
    check_network(path, manifest)
    engine = runtime_engine(manifest) if runtime == "auto" else runtime
    if engine == "onnxruntime":
        return _load_onnx(path, manifest, num_threads)
    if engine != "torch":
        raise ArtifactError(f"unknown runtime {engine!r} (choose auto, onnxruntime or torch)")
    require_torch(f"{path}: serving artifact {manifest['version']!r} with the torch runtime")
    if num_threads is not None:
        import torch

        torch.set_num_threads(num_threads)
    return Classifier.from_artifact(load_artifact(path, manifest=manifest))


def _load_onnx(path: Path, manifest: dict[str, Any], num_threads: int | None) -> Classifier:
    if ONNX_GRAPH not in manifest["files"]:
        raise ArtifactError(
            f"{path}: artifact {manifest['version']!r} has no {ONNX_GRAPH} "
            "(serve it with STREAMPROC_MODEL_RUNTIME=torch, or re-export it: "
            "`streamproc model export-onnx`)"
        )
    try:
        tokenizer = StudentTokenizer.from_file(path / "tokenizer.json", int(manifest["max_tokens"]))
    except Exception as exc:  # tokenizers raises its own error types
        raise ArtifactError(f"{path}: unreadable tokenizer ({exc})") from None
    classifier = Classifier(
        OnnxEngine.from_file(path / ONNX_GRAPH, num_threads=num_threads),
        tokenizer,
        manifest["labels"],
        version=str(manifest["version"]),
        max_tokens=int(manifest["max_tokens"]),
    )
    _self_check(path, manifest, classifier)
    return classifier


def _self_check(path: Path, manifest: dict[str, Any], classifier: Classifier) -> None:
    """The graph must reproduce, on this machine, the logits recorded when it was written."""
    check = (manifest.get("runtime") or {}).get("check")
    if not check:
        return  # an ONNX graph forced onto a torch-default artifact has nothing recorded
    try:
        expected = np.asarray(check["logits"], dtype=np.float64)  # (N, L)
        texts, tolerance = list(check["texts"]), float(check["tolerance"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed runtime self-check ({exc})") from None
    try:
        # One pass over the padded batch, exactly as the logits were recorded (split passes
        # would change an int8 graph's per-call activation scales, and so its scores a little).
        actual = classifier.engine(*classifier.tokenizer.encode_arrays(texts))  # (N, L)
    except Exception as exc:  # ORT raises its own types for a graph that does not fit its inputs
        raise ArtifactError(f"{path}: the ONNX graph fails on its probe texts ({exc})") from None
    if actual.shape != expected.shape:
        raise ArtifactError(
            f"{path}: self-check logits have shape {actual.shape}, recorded {expected.shape}"
        )
    worst = float(np.abs(actual - expected).max())
    if not worst <= tolerance:  # also catches NaN
        raise ArtifactError(
            f"{path}: ONNX Runtime on this machine misses the recorded self-check logits by "
            f"{worst:.4g} (tolerance {tolerance}); refusing to serve it (an int8 graph quantized "
            "with full-range weights differs between CPUs with and without VNNI: re-export it "
            "with `streamproc model export-onnx`, which uses the portable 7-bit range)"
        )
