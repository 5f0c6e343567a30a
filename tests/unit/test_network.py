"""The student network: shapes, padding masking, config round-trip, FLOP/param counts."""

from __future__ import annotations

import pytest
import torch

from streamproc.model.network import StudentConfig, StudentNetwork, count_flops, count_params


def _net(**kw: object) -> StudentNetwork:
    torch.manual_seed(0)
    cfg = StudentConfig(
        vocab_size=50,
        num_labels=3,
        max_tokens=16,
        dim=32,
        head_dim=8,
        layer_heads=(4, 2),
        layer_ffn=(64, 48),
        **kw,
    )  # type: ignore[arg-type]
    return StudentNetwork(cfg).eval()


def test_forward_shapes_and_per_layer_sizes() -> None:
    net = _net()
    ids = torch.randint(5, 50, (3, 10))  # (B, T)
    mask = torch.ones(3, 10, dtype=torch.bool)
    assert net(ids, mask).shape == (3, 3)
    assert net.blocks[0].attn.qkv.weight.shape == (3 * 4 * 8, 32)
    assert net.blocks[1].attn.out.weight.shape == (32, 2 * 8)
    assert net.blocks[1].ffn.fc1.weight.shape == (48, 32)


def test_padding_is_masked_out() -> None:
    net = _net(dropout=0.0)
    ids = torch.randint(5, 50, (1, 7))
    alone = net(ids, torch.ones(1, 7, dtype=torch.bool))
    padded_ids = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1).bool()
    other = torch.randint(5, 50, (1, 12))
    batch = net(
        torch.cat([padded_ids, other]),
        torch.cat([padded_mask, torch.ones(1, 12, dtype=torch.bool)]),
    )
    torch.testing.assert_close(batch[0:1], alone, atol=1e-5, rtol=1e-5)


def test_window_is_enforced() -> None:
    net = _net()
    with pytest.raises(ValueError, match="exceed the window"):
        net(torch.ones(1, 17, dtype=torch.long), torch.ones(1, 17, dtype=torch.bool))


def test_config_round_trip_and_validation() -> None:
    cfg = _net().config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config fields"):
        StudentConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="one entry per layer"):
        StudentConfig(vocab_size=5, num_labels=2, layer_heads=(1,), layer_ffn=(4, 4))
    with pytest.raises(ValueError, match="at least one head"):
        StudentConfig(vocab_size=5, num_labels=2, layer_heads=(0,), layer_ffn=(4,))


def test_post_ln_layout_and_factorised_table() -> None:
    """BERT's layout: LayerNorm after each residual add, none at the end; a narrow token table
    with a projection up to the residual width."""
    net = _net(norm="post", embed_dim=8, norm_eps=1e-12, dropout=0.0)
    assert net.tok_emb.weight.shape == (50, 8) and net.tok_proj is not None
    assert net.ln_f is None and net.emb_ln.eps == 1e-12
    ids, mask = torch.randint(5, 50, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        tok = net.tok_proj(net.tok_emb(ids)) + net.pos_emb(torch.arange(6))
        x = net.emb_ln(tok)
        for block in net.layers():
            x = block.ln1(x + block.attn(x, mask.view(2, 1, 1, 6)))
            x = block.ln2(x + block.ffn(x))
        expected = net.classifier(x.mean(1))
    torch.testing.assert_close(net(ids, mask), expected)
    pre = _net()
    assert pre.tok_proj is None and pre.ln_f is not None
    assert StudentConfig.from_dict(net.config.to_dict()) == net.config
    with pytest.raises(ValueError, match="norm must be"):
        net.config.replace(norm="sandwich")
    # the projection counts: 2*T*E*C more FLOPs than the same shape without it
    plain = count_flops(_net().config, 10).linear
    assert count_flops(net.config, 10).linear == plain + 2 * 10 * 8 * 32


def test_counts_shrink_with_the_config() -> None:
    net = _net()
    assert count_params(net) == sum(p.numel() for p in net.parameters())
    big = count_flops(net.config, 10)
    small = count_flops(net.config.replace(layer_heads=(2, 1), layer_ffn=(32, 24)), 10)
    assert small.total < big.total
    assert len(big.per_layer) == 2
    # layer 0: 2*T*(C*3*H*D + H*D*C + 2*C*F) + 4*T*T*H*D
    assert big.per_layer[0] == 2 * 10 * (32 * 96 + 32 * 32 + 2 * 32 * 64) + 4 * 100 * 32
