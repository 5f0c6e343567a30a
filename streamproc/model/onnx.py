"""Export the student to ONNX and quantize it for ONNX Runtime (offline: needs torch and onnx).

Why a second runtime: at the student's size the time of an eager PyTorch forward pass is
framework overhead (~85 small ops, each taking and releasing the GIL), and inside the worker the
event loop holds the GIL between them. Measured on this 2-core VM with the shipped TREC student,
batch 64, one thread, while another thread spins in Python: eager torch int8 10.7 → 461 ms (43×),
ONNX Runtime int8 6.3 → 12.4 ms (2×, the two threads share 2 vCPUs). ``InferenceSession.run`` is
one call that releases the GIL for the whole graph. Alone, ORT is also faster: 0.18 vs 0.97 ms at
batch 1, 5.8 vs 8.7 ms at batch 64 (int8 both); ``streamproc bench`` measures both again (its
model floors, beside the ``adaptive-torch`` contender).

Graph contract (what :mod:`streamproc.model.runtime` feeds and reads)::

    ids    int64 (B, T)   token ids, [CLS] first, padded with pad_id
    mask   bool  (B, T)   True on real tokens
    logits float (B, L)   raw class scores, L = num_labels

``B`` and ``T`` are dynamic (T ≤ the window). int8 is ORT's dynamic quantization: MatMul weights
int8 (per tensor, symmetric), activations uint8 quantized per call, run by VNNI kernels where the
CPU has them. Weights use 7 bits of the int8 range (``reduce_range``): on x86 CPUs without VNNI
(AVX2/AVX-512 only, e.g. many AMD EPYC) ORT multiplies uint8 × int8 pairs with ``vpmaddubsw``,
whose int16 sum of two products saturates at full range (255·127·2 > 32,767) — the same graph
then gives different logits on different machines (seen: 0.32 off on an EPYC for an artifact
built on a VNNI Xeon, so the self-check refused it). With 7-bit weights (255·63·2 < 32,767)
neither kernel can saturate, so every machine computes the same integers; measured on the TREC
student: accuracy 92.2% vs 92.0% (full range), same speed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamproc.model.network import StudentNetwork

__all__ = [
    "OPSET",
    "export_fused_onnx",
    "export_graph",
    "export_onnx",
    "float_twin",
    "quantize_onnx",
    "quiet_ort_quantizer",
]

OPSET = 17  # LayerNormalization is a single node from 17 on

log = logging.getLogger(__name__)


def float_twin(model: nn.Module) -> StudentNetwork:
    """The fp32 network computing what an int8-dynamic student's weights say, dequantized.

    ``w_fp32 = scale · w_int8`` exactly; re-quantizing it per tensor, symmetric, gives back the
    same int8 values, so exporting this twin loses nothing the int8 artifact had. An fp32 model
    comes back as a copy.
    """
    if not isinstance(model, StudentNetwork):  # quantize_dynamic keeps the class, swaps Linears
        raise TypeError(f"expected a StudentNetwork (fp32 or int8-dynamic), got {type(model)}")
    config = model.config
    twin = StudentNetwork(config).eval()
    state: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            state[f"{name}.weight"] = module.weight().dequantize()
            bias = module.bias()
            state[f"{name}.bias"] = bias if bias is not None else torch.zeros(module.out_features)
    for key, value in model.state_dict().items():
        if key in state or not isinstance(value, torch.Tensor) or "_packed_params" in key:
            continue
        if key.rsplit(".", 1)[-1] in ("weight", "bias"):
            state[key] = value
    twin.load_state_dict(state, strict=True)
    return twin


def export_graph(module: nn.Module, ids: torch.Tensor, mask: torch.Tensor, path: Path) -> Path:
    """Write ``module`` (ids, mask) -> logits as an fp32 ONNX graph under the contract above;
    ``ids``/``mask`` (B, T) are example inputs, both axes exported dynamic."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            input_names=["ids", "mask"],
            output_names=["logits"],
            dynamic_axes={
                "ids": {0: "batch", 1: "tokens"},
                "mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter needs onnxscript; this graph needs nothing it adds
        )
    return path


def export_onnx(model: nn.Module, path: Path) -> Path:
    """Write ``model`` (fp32 or int8-dynamic student) as an fp32 ONNX graph at ``path``, traced
    op by op from the torch network (what artifacts shipped up to ``trec-v8``)."""
    ids = torch.full((2, 8), 5, dtype=torch.long)  # (B, T)
    mask = torch.ones(2, 8, dtype=torch.bool)  # (B, T)
    return export_graph(float_twin(model), ids, mask, path)


def export_fused_onnx(model: nn.Module, path: Path) -> Path:
    """Write ``model`` (fp32 or int8-dynamic student) as an fp32 ONNX graph whose attention is
    ORT's fused ``com.microsoft`` ``Attention`` node, one per layer (same contract as above).

    Built node by node rather than traced: ORT's transformer optimizer finds no attention
    pattern in the traced graph (per-layer head counts). One fused node replaces the Split,
    Transpose, MatMul, Where and Softmax nodes of each layer; ORT's dynamic quantizer turns it
    into ``QAttention`` (int8 QKV projection, fp32 attention). Measured on ``trec-v8``'s weights
    through ``predict_batch``, one thread, int8: 1.35x faster at batch 1, 0.98x at batch 64
    (README, "int8 in ONNX Runtime"). This is the graph artifacts ship; :func:`export_onnx`
    (traced) stays as the independent reference the tests compare it with.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = float_twin(model)
    config = net.config
    weights = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    norms = {name: m for name, m in net.named_modules() if isinstance(m, nn.LayerNorm)}
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def layer_norm(x: str, module: str) -> str:
        gamma = constant(f"{module}.weight", weights[f"{module}.weight"])
        beta = constant(f"{module}.bias", weights[f"{module}.bias"])
        eps = norms[module].eps  # the nn.LayerNorm's own
        return add("LayerNormalization", [x, gamma, beta], f"{module}.out", axis=-1, epsilon=eps)

    def linear(x: str, module: str, out: str = "") -> str:  # x (..., in) → (..., out)
        w_t = constant(f"{module}.weight_t", weights[f"{module}.weight"].T)  # (in, out)
        bias = constant(f"{module}.bias", weights[f"{module}.bias"])
        matmul = add("MatMul", [x, w_t], f"{module}.matmul")
        return add("Add", [matmul, bias], out or f"{module}.out")

    one, two = constant("one", np.array([1], np.int64)), constant("two", np.array([2], np.int64))
    zero = constant("zero", np.array([0], np.int64))
    tokens = add("Slice", [add("Shape", ["ids"], "ids_shape"), one, two], "tokens")  # [T]
    tok = add("Gather", [constant("tok_emb.weight", weights["tok_emb.weight"]), "ids"], "tok")
    pos_table = constant("pos_emb.weight", weights["pos_emb.weight"])
    pos = add("Slice", [pos_table, zero, tokens, zero], "pos")  # (T, C)
    if config.factorised:
        tok = linear(tok, "tok_proj")  # (B, T, E) → (B, T, C)
    x = layer_norm(add("Add", [tok, pos], "embedded"), "emb_ln")  # (B, T, C)
    keys = add("Cast", ["mask"], "mask_int32", to=TensorProto.INT32)  # (B, T): 1 = a real token
    post = config.norm == "post"
    for i, heads in enumerate(config.layer_heads):
        block = f"blocks.{i}"
        qkv_t = constant(f"{block}.attn.qkv.weight_t", weights[f"{block}.attn.qkv.weight"].T)
        qkv_bias = constant(f"{block}.attn.qkv.bias", weights[f"{block}.attn.qkv.bias"])
        # (C, 3·H·D) columns [q heads | k heads | v heads], as ORT's Attention reads them.
        ctx = add(
            "Attention",
            [x if post else layer_norm(x, f"{block}.ln1"), qkv_t, qkv_bias, keys],
            f"{block}.attn.ctx",  # (B, T, H·D)
            domain="com.microsoft",
            num_heads=heads,
            scale=float(config.head_dim**-0.5),
        )
        x = add("Add", [x, linear(ctx, f"{block}.attn.out")], f"{block}.attn.residual")
        if post:
            x = layer_norm(x, f"{block}.ln1")
        hidden = linear(x if post else layer_norm(x, f"{block}.ln2"), f"{block}.ffn.fc1")
        gelu = add("Gelu", [hidden], f"{block}.ffn.gelu", domain="com.microsoft")  # erf GELU
        x = add("Add", [x, linear(gelu, f"{block}.ffn.fc2")], f"{block}.ffn.residual")
        if post:
            x = layer_norm(x, f"{block}.ln2")
    if not post:
        x = layer_norm(x, "ln_f")
    minus_one = constant("minus_one", np.array([-1], np.int64))
    real = add(
        "Unsqueeze", [add("Cast", ["mask"], "mask_f", to=TensorProto.FLOAT), minus_one], "real"
    )
    summed = add("ReduceSum", [add("Mul", [x, real], "masked"), one], "summed", keepdims=0)
    count = add("ReduceSum", [real, one], "count", keepdims=0)  # (B, 1)
    floor = constant("count_floor", np.array(1.0, np.float32))
    pooled = add("Div", [summed, add("Max", [count, floor], "count_floored")], "pooled")  # (B, C)
    linear(pooled, "classifier", "logits")  # (B, L)
    graph = helper.make_graph(
        nodes,
        "streamproc-student",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.num_labels])],
        initializers,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


@contextlib.contextmanager
def quiet_ort_quantizer() -> Iterator[None]:
    """ORT's quantizers log a "consider pre-processing" warning on the *root* logger: raise the
    root level to ERROR while one runs, then put it back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(source: Path, target: Path) -> Path:
    """ORT dynamic int8 quantization of an fp32 graph: per-tensor symmetric int8 weights in the
    7-bit range, so the result is the same on CPUs with and without VNNI (see above)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_ort_quantizer():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=False,
            reduce_range=True,
            # ONNX shape inference cannot type the outputs of com.microsoft nodes (fused graphs)
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    return target
