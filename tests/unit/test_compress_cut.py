"""A student cut from the teacher: the full cut computes what the teacher computes, and the
cut keeps the sizes asked for, with the teacher's weights in the kept units."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from streamproc.compress.cut import CutConfig, cut_from_teacher, teacher_network
from streamproc.compress.prune import shrink
from streamproc.model.tokenizer import SPECIAL_TOKENS, StudentTokenizer, train_wordpiece

transformers = pytest.importorskip("transformers")

TEXTS = [
    "what is the capital of france",
    "who wrote the odyssey",
    "how far is the moon from the earth",
    "when did the war end",
    "what does nasa stand for",
    "where is the tallest mountain",
] * 4


@pytest.fixture(scope="module")
def teacher() -> SimpleNamespace:
    """A tiny random BERT (3 layers, width 32, 4 heads) with a head, as the job's Teacher is."""
    torch.manual_seed(0)
    raw = train_wordpiece(TEXTS, 90)
    config = transformers.BertConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    encoder = transformers.BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # far from init, so every term matters
        for param in encoder.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return SimpleNamespace(encoder=encoder, head=torch.nn.Linear(32, 3), tokenizer=raw, raw=raw)


def _teacher_logits(
    teacher: SimpleNamespace, ids: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    hidden = teacher.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
    w = mask.unsqueeze(-1).float()
    return teacher.head((hidden * w).sum(1) / w.sum(1))  # (B, L)


def _vocab(teacher: SimpleNamespace) -> list[str]:
    vocab = teacher.raw.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)  # piece of each id: the same ids as the teacher


def test_the_whole_teacher_cut_computes_what_the_teacher_computes(teacher: SimpleNamespace) -> None:
    tok = StudentTokenizer(teacher.raw, 16)
    ids, mask = tok.encode_batch(TEXTS[:6])  # (B, T), padded
    net = teacher_network(
        teacher.encoder, teacher.head, _vocab(teacher), teacher.raw.get_vocab(),
        layers=(0, 1, 2), embed_dim=32, max_tokens=16, pad_id=0, dropout=0.0,
    ).eval()  # fmt: skip
    assert net.config.norm == "post" and not net.config.factorised
    with torch.no_grad():
        expected = _teacher_logits(teacher, ids, mask.long())
        torch.testing.assert_close(net(ids, mask), expected, atol=1e-4, rtol=1e-4)
        # A factorised table at full rank (E = V's rank here) is the same table, rotated.
        factorised = teacher_network(
            teacher.encoder, teacher.head, _vocab(teacher), teacher.raw.get_vocab(),
            layers=(0, 1, 2), embed_dim=31, max_tokens=16, pad_id=0, dropout=0.0,
        ).eval()  # fmt: skip
        assert factorised.tok_emb.weight.shape[1] == 31 and factorised.tok_proj is not None
        assert float((factorised(ids, mask) - expected).abs().max()) < 0.05 * float(
            expected.abs().max()
        )


def test_shrink_keeps_the_chosen_units_and_everything_kept_is_identity(
    teacher: SimpleNamespace,
) -> None:
    net = teacher_network(
        teacher.encoder, teacher.head, _vocab(teacher), teacher.raw.get_vocab(),
        layers=(0, 2), embed_dim=16, max_tokens=16, pad_id=0, dropout=0.0,
    ).eval()  # fmt: skip
    tok = StudentTokenizer(teacher.raw, 16)
    ids, mask = tok.encode_batch(TEXTS[:4])
    same = shrink(net, [range(4), range(4)], [range(48), range(48)], range(32)).eval()
    with torch.no_grad():
        torch.testing.assert_close(same(ids, mask), net(ids, mask))
    small = shrink(net, [[1, 3], [0]], [[5, 6, 7], list(range(10))], [0, 2, 4, 8, 16, 31]).eval()
    assert small.config.dim == 6 and small.config.layer_heads == (2, 1)
    assert small.config.layer_ffn == (3, 10)
    block = small.layers()[0]
    full_block = net.layers()[0]
    # q rows of head 3 (rows 24..31 of the full QKV), columns of the kept residual dims
    torch.testing.assert_close(
        block.attn.qkv.weight[8:16], full_block.attn.qkv.weight[24:32][:, [0, 2, 4, 8, 16, 31]]
    )
    assert small(ids, mask).shape == (4, 3)


def test_cut_from_teacher_keeps_the_sizes_asked_for(teacher: SimpleNamespace) -> None:
    tok = StudentTokenizer(teacher.raw, 16)
    with torch.no_grad():
        ids, mask = tok.encode_batch(TEXTS)
        soft = _teacher_logits(teacher, ids, mask.long()).numpy().astype(np.float32)
    config = CutConfig(layers=(0, 2), heads=2, ffn=12, width=20, embed_dim=8, score_batches=2)
    student, selection = cut_from_teacher(
        teacher, _vocab(teacher), tok, TEXTS, soft, config,
        max_tokens=16, pad_id=SPECIAL_TOKENS.index("[PAD]"), temperature=2.0, batch_size=8,
    )  # fmt: skip
    c = student.config
    assert (c.dim, c.layer_heads, c.layer_ffn, c.embed_dim) == (20, (2, 2), (12, 12), 8)
    assert c.norm == "post" and c.num_layers == 2
    assert selection.shape == (32, 20) and torch.equal(selection.sum(0), torch.ones(20))
    assert all(p.requires_grad for p in student.parameters())
    assert torch.isfinite(student(ids, mask)).all()
    # The default keeps the teacher's whole width (the job's pruning narrows it after distilling).
    full, identity = cut_from_teacher(
        teacher, _vocab(teacher), tok, TEXTS, soft, dataclasses.replace(config, width=None),
        max_tokens=16, pad_id=SPECIAL_TOKENS.index("[PAD]"), temperature=2.0, batch_size=8,
    )  # fmt: skip
    assert full.config.dim == 32 and torch.equal(identity, torch.eye(32))
    assert CutConfig().width is None
