"""Writing an artifact (:func:`save_artifact`): the network's tensors as safetensors (int8
Linear layers as their exact packed values), the tokenizer, optionally the ONNX graph with its
self-check, and the manifest with every file's sha256 — written beside the target and renamed
into place. The format is described in :mod:`streamproc.model.artifact`, which reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamproc.errors import ArtifactError
from streamproc.model.artifact import (
    CHECK_TEXTS,
    CHECK_TOLERANCE,
    FORMAT_VERSION,
    MANIFEST,
    ONNX_GRAPH,
    QUANT_INT8,
    TOKENIZER,
    WEIGHTS,
    OnnxPrecision,
    Runtime,
    check_version_name,
    file_sha256,
    make_readable,
)
from streamproc.model.tokenizer import StudentTokenizer

if TYPE_CHECKING:
    import torch
    from torch import nn

    from streamproc.model.network import StudentConfig

__all__ = ["save_artifact"]


def _is_quantized_linear(module: nn.Module) -> bool:
    import torch

    return isinstance(module, torch.ao.nn.quantized.dynamic.Linear)


def _tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """Every tensor needed to rebuild ``model`` (float or int8-dynamic) + the quantization name."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    quantized = False
    packed_prefixes = []
    for name, module in model.named_modules():
        if _is_quantized_linear(module):
            quantized = True
            weight = module.weight()
            if weight.qscheme() != torch.per_tensor_affine:
                raise ArtifactError(f"{name}: only per-tensor quantized weights can be saved")
            tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()
            tensors[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
            tensors[f"{name}.weight_zero_point"] = torch.tensor(
                [weight.q_zero_point()], dtype=torch.int64
            )
            bias = module.bias()
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
            packed_prefixes.append(name + ".")
    for key, value in model.state_dict().items():
        if any(key.startswith(p) for p in packed_prefixes):
            continue  # packed params, scale, zero_point of quantized Linears: stored above
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().contiguous()
    return tensors, (QUANT_INT8 if quantized else "none")


def save_artifact(
    out_dir: Path,
    *,
    model: nn.Module,
    config: StudentConfig,
    tokenizer: StudentTokenizer,
    labels: tuple[str, ...] | list[str],
    version: str,
    metadata: Mapping[str, Any] | None = None,
    runtime: Runtime = "torch",
    onnx_precision: OnnxPrecision = "int8-dynamic",
) -> Path:
    """Write ``model`` (fp32 or int8-dynamic :class:`StudentNetwork`) as an artifact in ``out_dir``.

    ``runtime="onnxruntime"`` also writes ``model.onnx`` (the same weights exported, then
    quantized by ONNX Runtime when ``onnx_precision`` is int8) and makes it the default engine,
    with the self-check described in the module docstring.

    ``out_dir`` must not exist or be empty; the directory is written beside it and renamed into
    place, so a crash never leaves a half-written artifact under the final name.
    """
    import torch
    from safetensors.torch import save_file

    check_version_name(version)
    if len(labels) != config.num_labels:
        raise ArtifactError(
            f"{len(labels)} label names for a model with {config.num_labels} outputs"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ArtifactError(f"{out_dir} already exists and is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tensors, quantization = _tensors(model)
        save_file(tensors, str(staging / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
        tokenizer.save(staging / TOKENIZER)
        files = [WEIGHTS, TOKENIZER]
        runtime_block: dict[str, Any] = {"engine": "torch"}
        if runtime == "onnxruntime":
            runtime_block = _write_onnx(staging, model, tokenizer, onnx_precision)
            files.append(ONNX_GRAPH)
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "architecture": "StudentNetwork",
            "config": config.to_dict(),
            "quantization": quantization,
            "labels": list(labels),
            "max_tokens": tokenizer.max_tokens,
            "torch": torch.__version__.split("+")[0],
            "runtime": runtime_block,
            "metadata": dict(metadata or {}),
            "files": {name: file_sha256(staging / name) for name in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        make_readable(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _write_onnx(
    staging: Path, model: nn.Module, tokenizer: StudentTokenizer, precision: OnnxPrecision
) -> dict[str, Any]:
    """Export ``model`` into ``staging/model.onnx`` and describe it (the manifest's runtime)."""
    import onnxruntime

    from streamproc.model.onnx import OPSET, export_fused_onnx, quantize_onnx
    from streamproc.model.runtime import OnnxEngine

    target = staging / ONNX_GRAPH
    if precision == "int8-dynamic":
        fp32 = export_fused_onnx(model, staging / ".fp32.onnx")
        quantize_onnx(fp32, target)
        fp32.unlink()
    elif precision == "fp32":
        export_fused_onnx(model, target)
    else:
        raise ArtifactError(f"unknown ONNX precision {precision!r}")
    engine = OnnxEngine.from_file(target, num_threads=1)
    ids, mask = tokenizer.encode_arrays(list(CHECK_TEXTS))
    logits = engine(ids, mask)  # (len(CHECK_TEXTS), L)
    return {
        "engine": "onnxruntime",
        "file": ONNX_GRAPH,
        "precision": precision,
        "opset": OPSET,
        "graph": "fused-attention",  # one com.microsoft Attention (int8: QAttention) per layer
        "onnxruntime": onnxruntime.__version__,
        "check": {
            "texts": list(CHECK_TEXTS),
            "logits": [[round(float(v), 5) for v in row] for row in logits],
            "tolerance": CHECK_TOLERANCE,
        },
    }
