"""A student cut from the teacher: some of its layers, its most important heads, FFN neurons and
residual dimensions, with the teacher's weights, before any distillation.

Why: a student whose layers start random learns the task from the transfer set, but not what the
pretrained teacher knows about words it rarely sees there ("What is a birthstone?" is ENTY
because a birthstone is a thing). Cutting the student out of the teacher keeps some of that
(DistilBERT starts from the teacher's layers for the same reason). The cut keeps BERT's layout
(post-LN, :class:`~streamproc.model.network.StudentConfig` ``norm="post"``), a token table
factorised to ``embed_dim`` (the teacher's rows for the student's pieces, PCA-projected, then a
learned projection back up that starts as the PCA basis), and per layer the ``heads`` and ``ffn``
units with the highest gradient-of-gate importance (``prune.score_importance``). It can also keep
only the ``width`` most important residual dimensions, but that is better left to the job's
pruning stage, after distillation (``PruneConfig.width``).

Measured on TREC, seed 0, through the whole job (``docs/results/trec-teacher-cut``; the
from-scratch student served 92.4%):

- layers 0, 2, 4; 6 heads and 512 neurons each, full width; distilled 94.8%; then pruned to
  3 heads, ~256 neurons and width 256 after distillation: 94.2%, served (int8) 94.0%. The default.
- the same, but width 256 cut before distillation: served 93.2%.
- 3 heads, 256 neurons, full width: distilled 94.2%, served 93.2%, too slow at width 384.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from streamproc.compress.prune import score_importance, score_width, shrink
from streamproc.model.network import StudentConfig, StudentNetwork
from streamproc.model.tokenizer import StudentTokenizer

__all__ = ["CutConfig", "cut_from_teacher", "teacher_network"]

_Scores = TypeVar("_Scores")


@dataclass(frozen=True)
class CutConfig:
    """Which part of the teacher the student starts as, and how long it then distils."""

    layers: tuple[int, ...] = (0, 2, 4)  # the teacher's layers kept, in order
    heads: int = 6  # per layer, by importance (the job's pruning then halves them)
    ffn: int = 512  # FFN neurons per layer, by importance (halved by the pruning too)
    # Residual dimensions kept, by importance; None: all of the teacher's (384). The width is
    # better cut after distillation (PruneConfig.width): cut here to 256, seed 0 served 92.4%.
    width: int | None = None
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

    def top(scores: torch.Tensor, k: int) -> list[int]:
        return sorted(scores.topk(min(k, len(scores))).indices.tolist())

    importance = scored(score_importance)
    dim = full.config.dim
    kept_width = (
        list(range(dim)) if config.width is None else top(scored(score_width), config.width)
    )
    student = shrink(
        full,
        [top(s, config.heads) for s in importance.heads],
        [top(s, config.ffn) for s in importance.neurons],
        None if len(kept_width) == dim else kept_width,
    )
    for param in student.parameters():
        param.requires_grad_(True)
    selection = torch.zeros(dim, len(kept_width))  # (C, C')
    selection[kept_width, torch.arange(len(kept_width))] = 1.0
    return student, selection
