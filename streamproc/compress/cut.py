"""A student cut from the teacher: some of its layers, its most important heads, FFN neurons and
residual dimensions, with the teacher's weights, before any distillation.

Why: a student whose layers start random learns the task from the transfer set, but not what the
pretrained teacher knows about words it rarely sees there ("What is a birthstone?" is ENTY
because a birthstone is a thing). Cutting the student out of the teacher keeps some of that
(DistilBERT starts from the teacher's layers for the same reason). The cut keeps BERT's layout
(post-LN, :class:`~streamproc.model.network.StudentConfig` ``norm="post"``), a token table
factorised to ``embed_dim`` (the teacher's rows for the student's pieces, PCA-projected, then a
learned projection back up that starts as the PCA basis), and per layer the ``heads`` and ``ffn``
units with the highest gradient-of-gate importance (``prune.score_importance``), and the
``width`` residual dimensions likewise (a gate on every LayerNorm output: in a post-LN network
the residual stream is exactly those outputs). LayerNorms then normalise over the kept
dimensions only, which changes the function; distillation repairs it.

Measured on seed 0 (``docs/results/trec-teacher-cut``): layers 0, 2 and 4 with 3 heads and 256
neurons each reached 95.0% at width 384 and 94.4% at width 256 (fp32, after 3 epochs), against
92.8% for the student whose layers start random. Through the job, after its pruning and int8, the
served model scored 93.2% at width 384 (too slow for the latency target) and 92.4% at width 256,
the from-scratch student's figure. So the job does not use the cut by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from streamproc.compress.prune import kd_losses, keep_units, score_importance
from streamproc.model.network import StudentConfig, StudentNetwork
from streamproc.model.tokenizer import StudentTokenizer

__all__ = ["CutConfig", "cut_from_teacher", "shrink", "teacher_network"]

_Scores = TypeVar("_Scores")
# Modules whose weight columns read the residual stream, and those whose rows (and biases, and
# LayerNorm vectors) write or normalise it: what narrowing the stream slices.
_READ_STREAM = frozenset({"pos_emb", "qkv", "fc1", "classifier"})
_WRITE_STREAM = frozenset({"tok_proj", "emb_ln", "out", "fc2", "ln1", "ln2"})


@dataclass(frozen=True)
class CutConfig:
    """Which part of the teacher the student starts as, and how long it then distils."""

    layers: tuple[int, ...] = (0, 2, 4)  # the teacher's layers kept, in order
    heads: int = 4  # per layer, by importance
    ffn: int = 384  # FFN neurons per layer, by importance
    width: int = 256  # residual dimensions kept, by importance (the teacher's: 384)
    embed_dim: int = 128  # token-table width (PCA of the teacher's rows), projected up
    score_batches: int = 60  # transfer-set batches that score importance
    epochs: int = 3  # distillation epochs of the cut student (it starts far from random)
    lr: float = 2e-4


def teacher_network(
    encoder: Any,
    head: nn.Linear,
    student_vocab: Sequence[str],
    teacher_vocab: dict[str, int],
    *,
    layers: Sequence[int],
    embed_dim: int,
    max_tokens: int,
    pad_id: int,
    dropout: float = 0.1,
) -> StudentNetwork:
    """The teacher's chosen ``layers`` (a Hugging Face ``BertModel``), every head and neuron, as a
    post-LN :class:`StudentNetwork` on the student's vocabulary, with the teacher's ``head``."""
    cfg = encoder.config
    dim, heads = int(cfg.hidden_size), int(cfg.num_attention_heads)
    bert_layers = [encoder.encoder.layer[i] for i in layers]
    config = StudentConfig(
        vocab_size=len(student_vocab),
        num_labels=head.out_features,
        max_tokens=max_tokens,
        dim=dim,
        head_dim=dim // heads,
        layer_heads=(heads,) * len(layers),
        layer_ffn=tuple(int(b.intermediate.dense.out_features) for b in bert_layers),
        dropout=dropout,
        pad_id=pad_id,
        norm="post",
        embed_dim=embed_dim,
        norm_eps=float(cfg.layer_norm_eps),
    )
    net = StudentNetwork(config)
    emb = encoder.embeddings
    unk = teacher_vocab.get("[UNK]", 0)
    rows = [teacher_vocab.get(piece, unk) for piece in student_vocab]
    source = emb.word_embeddings.weight.detach().float()[rows]  # (V, C)
    mean = source.mean(0)  # (C,)
    _, _, v = torch.linalg.svd(source - mean, full_matrices=False)  # v: (C, C)
    basis = v[:embed_dim].T  # (C, E): table @ basis.T + mean ≈ the teacher's rows
    table = (
        {"tok_emb.weight": (source - mean) @ basis, "tok_proj.weight": basis, "tok_proj.bias": mean}
        if config.factorised  # (V, E), (C, E), (C,)
        else {"tok_emb.weight": source}  # embed_dim = C: the teacher's own rows
    )
    state = {
        **table,
        # BERT adds a token-type row to every token; one type, so it folds into the positions.
        "pos_emb.weight": emb.position_embeddings.weight.detach()[:max_tokens]
        + emb.token_type_embeddings.weight.detach()[0],
        "emb_ln.weight": emb.LayerNorm.weight.detach(),
        "emb_ln.bias": emb.LayerNorm.bias.detach(),
        "classifier.weight": head.weight.detach(),
        "classifier.bias": head.bias.detach(),
    }
    for i, bert in enumerate(bert_layers):
        attn, out = bert.attention.self, bert.attention.output
        p = f"blocks.{i}."
        # fused QKV rows [q heads | k heads | v heads], as SelfAttention lays them out
        qkv = (attn.query, attn.key, attn.value)
        state[p + "attn.qkv.weight"] = torch.cat([m.weight for m in qkv])  # (3·H·D, C)
        state[p + "attn.qkv.bias"] = torch.cat([m.bias for m in qkv])
        for name, module in (
            ("attn.out", out.dense),
            ("ln1", out.LayerNorm),
            ("ffn.fc1", bert.intermediate.dense),
            ("ffn.fc2", bert.output.dense),
            ("ln2", bert.output.LayerNorm),
        ):
            state[p + f"{name}.weight"], state[p + f"{name}.bias"] = module.weight, module.bias
    net.load_state_dict({k: v.detach().float().clone() for k, v in state.items()}, strict=True)
    return net


def score_width(
    model: StudentNetwork,
    tokenizer: StudentTokenizer,
    texts: Sequence[str],
    soft_logits: np.ndarray,
    *,
    temperature: float,
    batch_size: int,
    max_batches: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(C,) accumulated |∂KD loss/∂gate| of a gate on every LayerNorm output of a post-LN model."""
    if model.config.norm != "post":
        raise ValueError("residual width is scored on a post-LN network (its stream is LN outputs)")
    gate = torch.ones(model.config.dim, requires_grad=True)
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: out * gate)
        for m in model.modules()
        if isinstance(m, nn.LayerNorm)
    ]
    score = torch.zeros(model.config.dim)
    losses = kd_losses(
        model,
        tokenizer,
        texts,
        soft_logits,
        temperature=temperature,
        batch_size=batch_size,
        max_batches=max_batches,
        seed=seed + 1,  # other batches than the head and neuron scores'
    )
    try:
        for loss in losses:
            (grad,) = torch.autograd.grad(loss, [gate])
            score += grad.abs()
            if progress:
                progress(1)
    finally:
        for hook in hooks:
            hook.remove()
    return score


def shrink(
    model: StudentNetwork,
    heads: Sequence[Sequence[int]],
    neurons: Sequence[Sequence[int]],
    width: Sequence[int],
) -> StudentNetwork:
    """A smaller post-LN network keeping, per layer, ``heads`` and ``neurons``, and the residual
    dimensions ``width`` everywhere (weights copied)."""
    c = model.config
    config = c.replace(
        dim=len(width),
        layer_heads=tuple(len(h) for h in heads),
        layer_ffn=tuple(len(n) for n in neurons),
    )
    state = dict(model.state_dict())
    keep_units(state, c, heads, neurons)  # heads and neurons, as pruning removes them
    keep = torch.tensor(list(width))  # then the residual dims, in every tensor that has them
    for key, value in state.items():
        module, param = key.rsplit(".", 2)[-2:]  # "blocks.0.attn.qkv.weight" → "qkv", "weight"
        if module in _READ_STREAM and param == "weight":
            state[key] = value[:, keep]  # (out, C) → (out, C'); pos_emb (T, C) → (T, C')
        elif module in _WRITE_STREAM:
            state[key] = value[keep]  # (C, in) → (C', in), or a (C,) bias / LayerNorm
    small = StudentNetwork(config)
    small.load_state_dict({k: v.contiguous().clone() for k, v in state.items()}, strict=True)
    return small


def cut_from_teacher(
    teacher: Any,
    student_vocab: Sequence[str],
    tokenizer: StudentTokenizer,
    texts: Sequence[str],
    soft_logits: np.ndarray,
    config: CutConfig,
    *,
    max_tokens: int,
    pad_id: int,
    temperature: float,
    batch_size: int = 64,
    dropout: float = 0.1,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[StudentNetwork, torch.Tensor]:
    """The cut student (not yet distilled) and the (C', C) map from its residual dimensions to
    the teacher's (a 0/1 selection: where a feature projection to the teacher's space starts)."""
    full = teacher_network(
        teacher.encoder,
        teacher.head,
        student_vocab,
        teacher.tokenizer.get_vocab(),
        layers=config.layers,
        embed_dim=config.embed_dim,
        max_tokens=max_tokens,
        pad_id=pad_id,
        dropout=dropout,
    )
    for param in full.parameters():
        param.requires_grad_(False)  # only the gates need gradients while scoring

    def scored(score: Callable[..., _Scores]) -> _Scores:
        return score(
            full,
            tokenizer,
            texts,
            soft_logits,
            temperature=temperature,
            batch_size=batch_size,
            max_batches=config.score_batches,
            seed=seed,
            progress=progress,
        )

    importance, width = scored(score_importance), scored(score_width)

    def top(scores: torch.Tensor, k: int) -> list[int]:
        return sorted(scores.topk(min(k, len(scores))).indices.tolist())

    kept_width = top(width, config.width)
    student = shrink(
        full,
        [top(s, config.heads) for s in importance.heads],
        [top(s, config.ffn) for s in importance.neurons],
        kept_width,
    )
    for param in student.parameters():
        param.requires_grad_(True)
    selection = torch.zeros(full.config.dim, len(kept_width))  # (C, C')
    selection[kept_width, torch.arange(len(kept_width))] = 1.0
    return student, selection
