"""Versioned model artifacts: the format, verifying and loading one (writing one:
:mod:`streamproc.model.saving`; publishing one: :mod:`streamproc.model.versions`).

An artifact is a directory::

    <version>/
      manifest.json        format version, artifact version, model config, labels, max_tokens,
                           quantization, runtime, data set + training metadata, sha256 of every
                           other file
      tokenizer.json       the student's WordPiece tokenizer (``tokenizers`` JSON)
      weights.safetensors  tensors only — never pickle (the source of truth; torch loads it)
      model.onnx           format 2, optional: the same network as an ONNX graph for ONNX Runtime

``manifest["runtime"]`` (format 2) names the engine that serves the artifact by default —
``{"engine": "onnxruntime", "file": "model.onnx", "precision": "int8-dynamic", "check": {...}}``
or ``{"engine": "torch"}`` — and for ONNX a self-check: a few probe texts, the logits ONNX
Runtime gave for them when the artifact was written, and the tolerance a loading machine must
reproduce them within (different CPUs pick different int8 kernels). Format 1 artifacts (no
runtime block) are served by torch.

Quantized (int8 dynamic) Linear layers are stored as their exact packed values:
``<name>.weight_int8`` (int8), ``<name>.weight_scale`` / ``<name>.weight_zero_point`` and
``<name>.bias``. Loading builds the
fp32 network from the config, quantizes it and sets those weights back, so the loaded model
computes bit-for-bit what the saved one did (a unit test checks this).

Every load verifies each file's sha256 against the manifest; a missing, extra-modified, corrupted
or tampered file, or an unknown ``format_version``, raises :class:`ArtifactError`. A digest only
proves the files are the ones written, so :func:`check_network` also checks that they fit
together: as many labels as the network has outputs, a window within its position table, and
finite weights.

"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from streamproc.errors import ArtifactError
from streamproc.model.tokenizer import StudentTokenizer

if TYPE_CHECKING:  # torch only where a torch model is built or saved: ONNX serving needs none
    from torch import nn

    from streamproc.model.network import StudentConfig

__all__ = [
    "FORMAT_VERSION",
    "LoadedArtifact",
    "builtin_artifact",
    "check_network",
    "check_version_name",
    "file_sha256",
    "load_artifact",
    "make_readable",
    "read_manifest",
    "record_evaluation",
    "require_torch",
    "resolve_artifact_argument",
    "runtime_engine",
    "verify_artifact",
]

FORMAT_VERSION = 2  # written; 1 is still read (no ONNX graph, no runtime block)
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "weights.safetensors"
ONNX_GRAPH = "model.onnx"
QUANT_INT8 = "int8-dynamic"  # torch.ao quantize_dynamic, per-tensor symmetric qint8 Linear weights
Runtime = Literal["torch", "onnxruntime"]
OnnxPrecision = Literal["int8-dynamic", "fp32"]
#: Probe texts of every ONNX artifact's self-check (fixed, so reports can compare artifacts).
CHECK_TEXTS = (
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "How many miles is it from the Earth to the Moon?",
    "What does NASA stand for?",
    "Why is the sky blue?",
    "",
    "the quick brown fox jumps over the lazy dog " * 12,
    "Où est la gare ? 東京はどこですか",
)
#: Largest |logit difference| a loading machine may show against the recorded check logits.
#: Integer kernels differ by CPU (VNNI, AVX2, plain) only in rounding of the fp32 parts; a wrong
#: graph, wrong weights or a broken runtime miss by whole units.
CHECK_TOLERANCE = 0.05
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class LoadedArtifact:
    """What :func:`load_artifact` returns: the ready model (eval mode) and its description."""

    path: Path
    manifest: dict[str, Any]
    config: StudentConfig
    model: nn.Module  # torch, eval mode
    tokenizer: StudentTokenizer

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest["labels"])

    @property
    def max_tokens(self) -> int:
        return int(self.manifest["max_tokens"])


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, hex (what the manifest records per file)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_version_name(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ArtifactError(
            f"invalid artifact version {version!r}: use letters, digits, '.', '_', '+' or '-' "
            "(it becomes a directory name)"
        )
    return version


def require_torch(purpose: str) -> None:
    """ArtifactError naming ``purpose`` when torch is not installed (a worker-only install)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        found = False
    if not found:
        raise ArtifactError(
            f"{purpose} needs torch, which is not installed here (a worker-only install serves "
            "ONNX artifacts): pip install 'streamproc[torch]', or serve an artifact that ships "
            "model.onnx (`streamproc model export-onnx`)"
        )


def record_evaluation(path: Path, evaluation: dict[str, Any]) -> None:
    """Write the artifact's measured quality into ``metadata.evaluation`` of its manifest.

    The manifest is not among the digested files, so this does not invalidate the artifact; it
    is replaced atomically."""
    manifest = read_manifest(path)
    manifest.setdefault("metadata", {})["evaluation"] = evaluation
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Artifacts shipped inside the package (``streamproc/resources/models/<name>/``): the offline
#: job's own output, so a fresh install serves a real model. ``make distill`` rebuilds them.
BUILTIN_ARTIFACTS = ("trec",)


def builtin_artifact(name: str = "trec") -> Path:
    """The directory of a shipped artifact (``builtin:NAME`` on the command line)."""
    from importlib.resources import files

    if name not in BUILTIN_ARTIFACTS:
        raise ArtifactError(
            f"no built-in artifact {name!r} (built in: {', '.join(BUILTIN_ARTIFACTS)})"
        )
    path = Path(str(files("streamproc") / "resources" / "models" / name))
    if not (path / MANIFEST).is_file():
        raise ArtifactError(f"built-in artifact {name!r} is missing from this install ({path})")
    return path


def resolve_artifact_argument(argument: str | Path) -> Path:
    """``builtin:NAME`` → the shipped artifact; anything else is a directory path."""
    text = str(argument)
    if text.startswith("builtin:"):
        return builtin_artifact(text.removeprefix("builtin:"))
    return Path(text)


def make_readable(directory: Path) -> None:
    """Temp files and dirs are created owner-only; an artifact is read by other users (a worker
    container's user, a package installed by root): 0755 for the directory, 0644 for files."""
    os.chmod(directory, 0o755)
    for file in directory.iterdir():
        os.chmod(file, 0o644)


def read_manifest(path: Path) -> dict[str, Any]:
    """The artifact's manifest, checked for shape and format version (digests not checked)."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such artifact directory")
    if not manifest_path.is_file():
        raise ArtifactError(f"{path}: missing {MANIFEST} (not an artifact?)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path}: the manifest is not a JSON object")
    fmt = manifest.get("format_version")
    if fmt not in READABLE_FORMATS:
        raise ArtifactError(
            f"{path}: unknown artifact format version {fmt!r} "
            f"(this streamproc reads {', '.join(map(str, READABLE_FORMATS))})"
        )
    for key in ("version", "config", "labels", "max_tokens", "files", "quantization"):
        if key not in manifest:
            raise ArtifactError(f"{manifest_path}: missing field {key!r}")
    files = manifest["files"]
    allowed = [{WEIGHTS, TOKENIZER}] + ([{WEIGHTS, TOKENIZER, ONNX_GRAPH}] if fmt >= 2 else [])
    if not isinstance(files, dict) or set(files) not in allowed:
        raise ArtifactError(
            f"{manifest_path}: 'files' must list {WEIGHTS} and {TOKENIZER}"
            + (f" (and optionally {ONNX_GRAPH})" if fmt >= 2 else "")
        )
    engine = runtime_engine(manifest)
    if engine == "onnxruntime" and ONNX_GRAPH not in files:
        raise ArtifactError(f"{manifest_path}: runtime onnxruntime but no {ONNX_GRAPH} listed")
    return manifest


def runtime_engine(manifest: Mapping[str, Any]) -> Runtime:
    """The engine a manifest names as its default (format 1: torch)."""
    block = manifest.get("runtime") or {"engine": "torch"}
    engine = block.get("engine") if isinstance(block, dict) else None
    if engine not in ("torch", "onnxruntime"):
        raise ArtifactError(f"artifact {manifest.get('version')!r}: unknown runtime {engine!r}")
    return "onnxruntime" if engine == "onnxruntime" else "torch"


def verify_artifact(path: Path) -> dict[str, Any]:
    """Check the manifest and every file's sha256; returns the manifest or raises ArtifactError."""
    manifest = read_manifest(path)
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: missing file {name}")
        actual = file_sha256(file)
        if actual != expected:
            raise ArtifactError(
                f"{path}: {name} is corrupted or was tampered with "
                f"(sha256 {actual[:12]}… ≠ manifest {str(expected)[:12]}…)"
            )
    return manifest


def check_network(path: Path, manifest: Mapping[str, Any]) -> None:
    """The manifest must describe the network its weights hold, and every weight be finite.

    Reads ``weights.safetensors`` with NumPy (no torch): the classifier's rows must equal the
    number of labels (else every batch fails in serving and dead-letters as ``inference_error``),
    the position table must cover ``max_tokens`` (else long texts fail), and a NaN or inf
    anywhere (even in the embedding row of a rare token, which no probe text would reach) refuses
    the artifact. An ONNX graph is exported from these weights; its own self-check and the trial
    prediction (:func:`streamproc.model.base.check_classifier`) cover the graph.
    """
    import numpy as np
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: unreadable weights ({exc})") from None
    labels, config = manifest["labels"], manifest["config"]
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}: the manifest's model config is not an object")
    outputs = next(
        (
            int(tensors[name].shape[0])
            for name in ("classifier.bias", "classifier.weight", "classifier.weight_int8")
            if name in tensors
        ),
        None,
    )
    if not isinstance(labels, list) or outputs is None or len(labels) != outputs:
        raise ArtifactError(
            f"{path}: the manifest names {len(labels) if isinstance(labels, list) else '?'} "
            "labels but the network has "
            f"{outputs} outputs"
        )
    if config.get("num_labels") != outputs:
        raise ArtifactError(
            f"{path}: the model config says {config.get('num_labels')} labels, the network has "
            f"{outputs} outputs"
        )
    window = int(tensors["pos_emb.weight"].shape[0]) if "pos_emb.weight" in tensors else None
    max_tokens = manifest["max_tokens"]
    fits = isinstance(max_tokens, int) and window is not None and 1 <= max_tokens <= window
    if not fits or config.get("max_tokens") != window:
        raise ArtifactError(
            f"{path}: the tokenizer window (max_tokens {max_tokens}, config "
            f"{config.get('max_tokens')}) does not fit the network's window of {window} positions"
        )
    for name, tensor in tensors.items():
        if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
            raise ArtifactError(f"{path}: non-finite values (NaN or inf) in the weight {name}")


def load_artifact(path: Path, *, manifest: dict[str, Any] | None = None) -> LoadedArtifact:
    """Verify and load an artifact as torch: the model in eval mode (int8 re-packed exactly) +
    tokenizer. ``manifest``: one :func:`verify_artifact` already returned (skips re-hashing)."""
    require_torch(f"{path}: loading the artifact's weights in torch")
    import torch
    from safetensors.torch import load_file
    from torch import nn

    from streamproc.model.network import StudentConfig, StudentNetwork
    from streamproc.model.quantize import quantize_int8

    path = Path(path)
    manifest = manifest if manifest is not None else verify_artifact(path)
    try:
        config = StudentConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: invalid model config in the manifest ({exc})") from None
    try:
        tensors = load_file(str(path / WEIGHTS))
        tokenizer = StudentTokenizer.from_file(path / TOKENIZER, int(manifest["max_tokens"]))
    except Exception as exc:  # safetensors / tokenizers raise their own error types
        raise ArtifactError(f"{path}: unreadable weights or tokenizer ({exc})") from None
    quantization = manifest["quantization"]
    if quantization not in ("none", QUANT_INT8):
        raise ArtifactError(f"{path}: unknown quantization {quantization!r}")
    try:
        model: nn.Module = StudentNetwork(config)
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if quantization == QUANT_INT8:
            plain = {
                k: v
                for k, v in tensors.items()
                if not any(k.startswith(n + ".") for n in linear_names)
            }
            missing, unexpected = model.load_state_dict(plain, strict=False)
            expected_missing = {f"{n}.{p}" for n in linear_names for p in ("weight", "bias")}
            if set(missing) - expected_missing or unexpected:
                raise ValueError(
                    f"missing {sorted(set(missing) - expected_missing)}, unexpected {unexpected}"
                )
            model = quantize_int8(model)
            modules = dict(model.named_modules())
            for name in linear_names:
                scale = float(tensors[f"{name}.weight_scale"][0])
                zero = int(tensors[f"{name}.weight_zero_point"][0])
                qweight = torch._make_per_tensor_quantized_tensor(
                    tensors[f"{name}.weight_int8"], scale, zero
                )
                modules[name].set_weight_bias(qweight, tensors.get(f"{name}.bias"))
        else:
            model.load_state_dict(tensors, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ArtifactError(f"{path}: weights do not match the model config ({exc})") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise ArtifactError(
            f"{path}: tokenizer has {tokenizer.vocab_size} tokens, "
            f"model expects {config.vocab_size}"
        )
    return LoadedArtifact(path, manifest, config, model.eval(), tokenizer)
