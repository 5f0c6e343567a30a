"""The student: a small transformer encoder built from plain ``nn.Linear`` blocks.

Two layouts share one module tree: pre-LN (``norm="pre"``: trains stably from random
initialisation) and post-LN (``norm="post"``: BERT's own, so a student cut from the teacher's layers
computes what those layers computed). ``embed_dim`` below ``dim`` factorises the token table
(V × E, then a learned E → C projection, as ALBERT does): a 384-wide student cut from the teacher
keeps a 128-wide table, which holds most of its parameters.

Why not ``nn.TransformerEncoderLayer``: its fused fast path breaks once
``quantize_dynamic`` swaps the Linear layers for int8 ones, and it cannot hold a different number
of heads or FFN neurons per layer. Here every layer owns its own sizes (``layer_heads``,
``layer_ffn``), so structured pruning can drop whole heads and neurons and really shrink the
matrices, and ``quantize_dynamic`` replaces every ``nn.Linear`` with no special cases.

Shapes: B = batch, T = tokens, C = ``dim``, E = ``embed_dim``, H = heads in a layer,
D = ``head_dim``, F = FFN width.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StudentConfig", "StudentNetwork", "count_flops", "count_params"]


@dataclass(frozen=True)
class StudentConfig:
    """Everything needed to rebuild the network (saved in every artifact's manifest)."""

    vocab_size: int  # rows of the token embedding (the student's own WordPiece vocabulary)
    num_labels: int  # classes in the output layer
    max_tokens: int = 64  # window: learned position embeddings for positions 0..max_tokens-1
    dim: int = 128  # C: width of the residual stream
    head_dim: int = 32  # D: width of one attention head
    layer_heads: tuple[int, ...] = (4, 4, 4, 4)  # H per layer (pruning lowers these)
    layer_ffn: tuple[int, ...] = (512, 512, 512, 512)  # F per layer (pruning lowers these)
    dropout: float = 0.1  # on embeddings, attention output and FFN output while training
    pad_id: int = 0  # token id of [PAD]; its embedding row is unused
    norm: str = "pre"  # "pre": x + f(ln(x)), a final LayerNorm; "post" (BERT): ln(x + f(x))
    embed_dim: int | None = None  # E: token-table width; None = ``dim`` (no projection)
    norm_eps: float = 1e-5  # every LayerNorm's epsilon (BERT's: 1e-12)

    def __post_init__(self) -> None:
        if len(self.layer_heads) != len(self.layer_ffn):
            raise ValueError("layer_heads and layer_ffn must have one entry per layer")
        if min(self.layer_heads, default=1) < 1 or min(self.layer_ffn, default=1) < 1:
            raise ValueError("every layer keeps at least one head and one FFN neuron")
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', not {self.norm!r}")
        if self.embed_dim is not None and self.embed_dim < 1:
            raise ValueError("embed_dim must be positive")

    @property
    def factorised(self) -> bool:
        """Whether a projection follows the token table (``embed_dim`` set and not ``dim``)."""
        return self.embed_dim is not None and self.embed_dim != self.dim

    @property
    def num_layers(self) -> int:
        return len(self.layer_heads)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layer_heads"] = list(self.layer_heads)
        data["layer_ffn"] = list(self.layer_ffn)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        values = dict(data)
        values["layer_heads"] = tuple(int(h) for h in data["layer_heads"])
        values["layer_ffn"] = tuple(int(f) for f in data["layer_ffn"])
        return cls(**values)

    def replace(self, **changes: Any) -> StudentConfig:
        return dataclasses.replace(self, **changes)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection; heads can be removed."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)  # rows: [q heads | k heads | v heads]
        self.out = nn.Linear(heads * head_dim, dim)
        self.dropout = dropout
        self.head_gate: torch.Tensor | None = None  # (H,) set only while scoring importance

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # unflatten/flatten and a constant scale rather than view(B, T, ...) and SDPA's default
        # 1/sqrt(D): the same arithmetic, but the exported ONNX graph computes no shapes or
        # square roots per layer (24 fewer nodes; its int8 graph ran 5-14% faster in ORT).
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim))  # (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D)
        # keep: (B, 1, 1, T) True where the key is a real token, so padding gets zero weight.
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, scale=self.head_dim**-0.5
        )  # (B, H, T, D)
        if self.head_gate is not None:
            ctx = ctx * self.head_gate.view(1, -1, 1, 1)
        ctx = ctx.transpose(1, 2).flatten(2)  # (B, T, H*D)
        return F.dropout(self.out(ctx), self.dropout, self.training)  # (B, T, C)


class FeedForward(nn.Module):
    """Position-wise FFN (C → F → C, GELU); neurons (rows of fc1, columns of fc2) can be removed."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = dropout
        self.neuron_gate: torch.Tensor | None = None  # (F,) set only while scoring importance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x))  # (B, T, F)
        if self.neuron_gate is not None:
            h = h * self.neuron_gate
        return F.dropout(self.fc2(h), self.dropout, self.training)  # (B, T, C)


class Block(nn.Module):
    """One transformer layer. Pre-LN: x + attn(ln1(x)), then x + ffn(ln2(x)). Post-LN (BERT):
    ln1(x + attn(x)), then ln2(x + ffn(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        ffn: int,
        dropout: float,
        *,
        post_norm: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, heads, head_dim, dropout)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, ffn, dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.ln1(x + self.attn(x, keep))  # (B, T, C)
            return self.ln2(x + self.ffn(x))  # (B, T, C)
        x = x + self.attn(self.ln1(x), keep)  # (B, T, C)
        return x + self.ffn(self.ln2(x))  # (B, T, C)


class StudentNetwork(nn.Module):
    """Token (→ projection) + position embeddings → N blocks → (pre-LN: LayerNorm) → masked mean
    pool → linear classifier."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        table = c.embed_dim if c.factorised and c.embed_dim else c.dim
        self.tok_emb = nn.Embedding(c.vocab_size, table, padding_idx=c.pad_id)
        self.tok_proj = nn.Linear(table, c.dim) if c.factorised else None
        self.pos_emb = nn.Embedding(c.max_tokens, c.dim)
        self.emb_ln = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.blocks = nn.ModuleList(
            Block(c.dim, h, c.head_dim, f, c.dropout, post_norm=c.norm == "post", eps=c.norm_eps)
            for h, f in zip(c.layer_heads, c.layer_ffn, strict=True)
        )
        # Post-LN blocks end normalised already; BERT has no final LayerNorm.
        self.ln_f = nn.LayerNorm(c.dim, eps=c.norm_eps) if c.norm == "pre" else None
        self.classifier = nn.Linear(c.dim, c.num_labels)
        self.apply(_init_weights)

    def layers(self) -> list[Block]:
        """The transformer blocks, typed (``self.blocks`` is an untyped ModuleList)."""
        return [b for b in self.blocks if isinstance(b, Block)]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, T) token ids, mask (B, T) True/1 on real tokens → logits (B, num_labels)."""
        return self.classifier(self.features(ids, mask))  # (B, num_labels)

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled sentence vector (B, C) the classifier reads (distillation matches it too)."""
        B, T = ids.shape  # batch, tokens
        if self.config.max_tokens < T:
            raise ValueError(f"{T} tokens exceed the window of {self.config.max_tokens}")
        mask = mask.bool()
        pos = torch.arange(T, device=ids.device)  # (T,)
        tok = self.tok_emb(ids)  # (B, T, E)
        if self.tok_proj is not None:
            tok = self.tok_proj(tok)  # (B, T, C)
        x = tok + self.pos_emb(pos)  # (B, T, C)
        x = F.dropout(self.emb_ln(x), self.config.dropout, self.training)
        keep = mask.view(B, 1, 1, T)  # (B, 1, 1, T): which keys each query may attend to
        for block in self.blocks:
            x = block(x, keep)  # (B, T, C)
        if self.ln_f is not None:
            x = self.ln_f(x)
        weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, C)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def count_params(model: nn.Module) -> int:
    """Parameters of a float model, or of its quantized twin (int8 weights counted one each)."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight") and callable(module.weight):
            weight = module.weight()
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


@dataclass(frozen=True)
class FlopCount:
    """2 × multiply-accumulates for one sequence of ``tokens`` tokens (lookups are free)."""

    tokens: int
    linear: int  # QKV, attention output, FFN, classifier
    attention: int  # QK^T and attention·V
    per_layer: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.linear + self.attention


def count_flops(config: StudentConfig, tokens: float) -> FlopCount:
    """FLOPs of one forward pass over a sequence of ``tokens`` tokens (the pruning yardstick)."""
    t = max(1, round(tokens))
    c, d = config.dim, config.head_dim
    linear = attention = 0
    per_layer = []
    for h, f in zip(config.layer_heads, config.layer_ffn, strict=True):
        lin = 2 * t * (c * 3 * h * d + h * d * c + 2 * c * f)
        att = 2 * 2 * t * t * h * d
        linear, attention = linear + lin, attention + att
        per_layer.append(lin + att)
    linear += 2 * c * config.num_labels
    if config.factorised and config.embed_dim:
        linear += 2 * t * config.embed_dim * c  # the token table's projection
    return FlopCount(t, linear, attention, per_layer)
