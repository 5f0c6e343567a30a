"""Structured pruning really removes heads and neurons, keeps what it keeps exactly, cuts FLOPs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamproc.compress.prune import (
    Importance,
    PruneConfig,
    prune_network,
    score_importance,
    score_width,
    shrink,
)
from streamproc.model.network import StudentConfig, StudentNetwork, count_flops, count_params
from streamproc.model.tokenizer import StudentTokenizer, train_wordpiece


def _net(norm: str = "pre") -> StudentNetwork:
    torch.manual_seed(0)
    cfg = StudentConfig(
        norm=norm,
        vocab_size=60,
        num_labels=3,
        max_tokens=16,
        dim=32,
        head_dim=8,
        layer_heads=(4, 4),
        layer_ffn=(64, 64),
        dropout=0.0,
    )
    return StudentNetwork(cfg).eval()


def test_pruning_removes_rows_heads_and_flops() -> None:
    net = _net()
    imp = Importance(
        heads=[torch.tensor([4.0, 1.0, 3.0, 2.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])],
        neurons=[
            torch.arange(64, dtype=torch.float32),
            torch.arange(64, dtype=torch.float32).flip(0),
        ],
    )
    pruned = prune_network(net, imp, PruneConfig(head_fraction=0.5, ffn_fraction=0.5, min_ffn=8))
    assert sum(pruned.config.layer_heads) == 4 and sum(pruned.config.layer_ffn) == 64
    b0 = pruned.blocks[0]
    assert b0.attn.qkv.weight.shape[0] == 3 * b0.attn.heads * 8
    assert b0.attn.out.weight.shape[1] == b0.attn.heads * 8
    assert b0.ffn.fc1.weight.shape[0] == b0.ffn.fc2.weight.shape[1] == pruned.config.layer_ffn[0]
    assert count_params(pruned) < count_params(net)
    cut = 1 - count_flops(pruned.config, 12).total / count_flops(net.config, 12).total
    assert cut > 0.3
    # Kept units carry their exact weights: layer 0 keeps heads 0 and 2 (scores 4 and 3).
    old = net.blocks[0].attn.qkv.weight
    kept_q_rows = torch.cat([old[0:8], old[16:24]])
    if pruned.config.layer_heads[0] == 2:
        torch.testing.assert_close(b0.attn.qkv.weight[:16], kept_q_rows)


def test_pruned_network_equals_gated_original() -> None:
    """Removing a unit must equal zeroing its gate: the surgery is exact."""
    net = _net()
    imp = Importance(heads=[torch.rand(4), torch.rand(4)], neurons=[torch.rand(64), torch.rand(64)])
    pruned = prune_network(net, imp, PruneConfig(head_fraction=0.25, ffn_fraction=0.25, min_ffn=8))
    for layer, block in enumerate(net.blocks):
        keep_h = sorted(
            range(4), key=lambda i: -float(imp.heads[layer][i] / imp.heads[layer].norm())
        )
        gate_h = torch.zeros(4)
        gate_f = torch.zeros(64)
        # Recover which units survived from the pruned sizes and the (global) ranking.
        gate_h[keep_h[: pruned.config.layer_heads[layer]]] = 1
        keep_f = sorted(
            range(64), key=lambda i: -float(imp.neurons[layer][i] / imp.neurons[layer].norm())
        )
        gate_f[keep_f[: pruned.config.layer_ffn[layer]]] = 1
        block.attn.head_gate, block.ffn.neuron_gate = gate_h, gate_f
    ids = torch.randint(5, 60, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.bool)
    with torch.inference_mode():
        torch.testing.assert_close(pruned(ids, mask), net(ids, mask), atol=1e-5, rtol=1e-4)


def test_importance_scores_have_one_value_per_unit() -> None:
    texts = [f"what is item {i} made of" for i in range(40)]
    tok = StudentTokenizer(train_wordpiece(texts, 60), 16)
    net = _net()
    soft = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    imp = score_importance(net, tok, texts, soft, temperature=2.0, batch_size=8, max_batches=3)
    assert [s.shape[0] for s in imp.heads] == [4, 4]
    assert [s.shape[0] for s in imp.neurons] == [64, 64]
    assert all(float(s.sum()) > 0 for s in imp.heads)
    assert all(b.attn.head_gate is None for b in net.blocks), "gates are removed after scoring"


def _texts_and_tokenizer() -> tuple[list[str], StudentTokenizer]:
    texts = [f"what is item {i} made of" for i in range(40)]
    return texts, StudentTokenizer(train_wordpiece(texts, 60), 16)


def test_a_post_ln_network_loses_the_residual_width_asked_for() -> None:
    texts, tok = _texts_and_tokenizer()
    net = _net("post")
    soft = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    imp = score_importance(net, tok, texts, soft, temperature=2.0, batch_size=8, max_batches=3)
    width = score_width(net, tok, texts, soft, temperature=2.0, batch_size=8, max_batches=3)
    assert width.shape == (32,) and float(width.min()) > 0
    scored = dataclasses.replace(imp, width=width)
    pruned = prune_network(net, scored, PruneConfig(width=20))
    kept = sorted(width.topk(20).indices.tolist())
    assert pruned.config.dim == 20 and pruned.config.norm == "post"
    # The kept dimensions carry their weights: layer 0's first LayerNorm, its FFN input columns.
    torch.testing.assert_close(pruned.blocks[0].ln1.weight, net.blocks[0].ln1.weight[kept])
    assert pruned.blocks[1].ffn.fc1.weight.shape[1] == 20
    ids, mask = tok.encode_batch(texts[:4])
    assert torch.isfinite(pruned(ids, mask)).all()
    # Not scored, or asked for at least the network's width: the width stays.
    assert prune_network(net, imp, PruneConfig(width=20)).config.dim == 32
    assert prune_network(net, scored, PruneConfig(width=32)).config.dim == 32
    assert prune_network(net, scored, PruneConfig(width=None)).config.dim == 32


def test_a_pre_ln_network_keeps_its_width() -> None:
    texts, tok = _texts_and_tokenizer()
    net = _net("pre")
    soft = np.zeros((40, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="post-LN"):
        score_width(net, tok, texts, soft, temperature=2.0, batch_size=8, max_batches=1)
    with pytest.raises(ValueError, match="post-LN"):
        shrink(net, [range(4), range(4)], [range(64), range(64)], range(16))
