"""The hand-built ONNX graph with ORT's fused attention computes what the torch student does.

Checked on a pruned shape (a different number of heads and FFN neurons per layer) with padded
rows, in fp32 and after ORT's dynamic int8 quantization (Attention → QAttention), in both layouts:
the pre-LN student and the post-LN one cut from the teacher, with its factorised token table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from streamproc.model.network import StudentConfig, StudentNetwork
from streamproc.model.onnx import export_fused_onnx, export_onnx, quantize_onnx
from streamproc.model.runtime import OnnxEngine

CONFIG = StudentConfig(
    vocab_size=40, num_labels=3, max_tokens=12, dim=24, head_dim=8,
    layer_heads=(3, 1), layer_ffn=(20, 7), dropout=0.0,
)  # fmt: skip
POST_LN = CONFIG.replace(norm="post", embed_dim=10, norm_eps=1e-12)


@pytest.fixture(scope="module", params=[CONFIG, POST_LN], ids=["pre-ln", "post-ln-factorised"])
def network(request: pytest.FixtureRequest) -> StudentNetwork:
    torch.manual_seed(0)
    net = StudentNetwork(request.param).eval()
    with torch.no_grad():  # weights far from init, so every term of the graph matters
        for param in net.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return net


@pytest.fixture(scope="module")
def fused_graph(network: StudentNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 fused graph, exported once for the module."""
    return export_fused_onnx(network, tmp_path_factory.mktemp("fused") / "f.onnx")


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    lengths = [12, 5, 1, 9]
    ids = rng.integers(1, CONFIG.vocab_size, (len(lengths), 12))  # (B, T)
    mask = np.arange(12)[None, :] < np.asarray(lengths)[:, None]  # (B, T) right-padded
    return np.where(mask, ids, CONFIG.pad_id).astype(np.int64), mask


def _torch_logits(net: StudentNetwork, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


def test_fp32_matches_the_torch_network_and_the_traced_graph(
    network: StudentNetwork, fused_graph: Path, tmp_path: Path
) -> None:
    ids, mask = _batch()
    fused = OnnxEngine.from_file(fused_graph, num_threads=1)
    traced = OnnxEngine.from_file(export_onnx(network, tmp_path / "t.onnx"), num_threads=1)
    expected = _torch_logits(network, ids, mask)  # (B, L)
    assert np.abs(expected).max() > 0.5  # not a near-zero network that anything would match
    np.testing.assert_allclose(fused(ids, mask), expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fused(ids, mask), traced(ids, mask), atol=1e-4, rtol=1e-4)
    ops = [node.op_type for node in onnx.load(str(fused_graph)).graph.node]
    assert "Attention" in ops and "Softmax" not in ops
    norms = 2 * network.config.num_layers + (2 if network.config.norm == "pre" else 1)
    assert ops.count("LayerNormalization") == norms  # post-LN: no final LayerNorm


def test_padding_is_masked_out(fused_graph: Path) -> None:
    ids, mask = _batch()
    fused = OnnxEngine.from_file(fused_graph, num_threads=1)
    together = fused(ids, mask)
    for row in range(len(ids)):
        length = int(mask[row].sum())
        alone = fused(ids[row : row + 1, :length], mask[row : row + 1, :length])
        np.testing.assert_allclose(alone[0], together[row], atol=1e-4, rtol=1e-4)


def test_int8_quantizes_the_attention_and_stays_close(
    network: StudentNetwork, fused_graph: Path, tmp_path: Path
) -> None:
    ids, mask = _batch()
    int8 = quantize_onnx(fused_graph, tmp_path / "q.onnx")
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QAttention" in ops and "Attention" not in ops
    expected = _torch_logits(network, ids, mask)
    got = OnnxEngine.from_file(int8, num_threads=1)(ids, mask)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < 0.1 * scale
