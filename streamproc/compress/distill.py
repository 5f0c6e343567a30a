"""Knowledge distillation: a small student learns the teacher's soft targets plus the hard labels.

Three things make a from-scratch student this small work on a few thousand examples:

1. **A bigger transfer set** (TinyBERT-style augmentation, :func:`augment_texts`): every training
   text yields ``augment_per_text`` variants in which words are swapped for their nearest
   neighbours in the teacher's input-embedding space or dropped (with
   ``TransferConfig.keep_question_words``: never the question word or phrase, see
   :mod:`streamproc.compress.augment`). The teacher labels them (soft targets only — their hard
   label is unknown), and likewise copies with one word swapped for a random word of the corpus
   (``TransferConfig.substitutions_per_text``, :func:`streamproc.compress.augment.substitute_words`:
   what the teacher makes of many more words where the class is decided) and real unlabelled
   text (``TransferConfig.corpus``: Tatoeba's English questions for TREC, see
   :func:`streamproc.compress.transfer_corpus.load_transfer_set`). Test texts are never used.
2. **Embeddings started from the teacher's**: the student keeps the teacher's WordPiece pieces
   (a trimmed vocabulary), so each student row starts as the teacher's row projected onto its top
   ``dim`` principal components (:func:`init_from_teacher_embeddings`).
3. **Loss** = ``alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))`` ``+ (1 − alpha) · CE``
   ``+ feature_weight · (1 − cos(W·s, t))``: the cross-entropy term only counts rows that carry a
   real label; the last term (representation distillation, as TinyBERT does for hidden states)
   pulls the student's pooled sentence vector ``s``, through a training-only projection ``W``
   (C → the teacher's 384), towards the teacher's pooled vector ``t``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from streamproc.compress.augment import augment_texts
from streamproc.compress.cut import CutConfig
from streamproc.compress.teacher import length_buckets
from streamproc.model.network import StudentConfig, StudentNetwork
from streamproc.model.tokenizer import SPECIAL_TOKENS, StudentTokenizer

__all__ = [
    "DistillConfig",
    "augment_texts",
    "distill",
    "embedding_neighbours",
    "evaluate",
    "init_from_teacher_embeddings",
    "predict_logits",
]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class DistillConfig:
    """Student shape and training recipe."""

    vocab_size: int = 8000  # trimmed WordPiece vocabulary (teacher: 30,522)
    max_tokens: int = 64  # window (TREC questions average 13 pieces, longest 44)
    dim: int = 128
    head_dim: int = 32
    heads: int = 4
    layers: int = 4
    ffn: int = 512
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the soft-target term
    feature_weight: float = 1.0  # weight of 1 − cos(proj(student vector), teacher vector)
    # Variants per training text. 3 (was 6) since the job adds ~27.7k real Tatoeba questions for
    # the teacher to label: the transfer set stays ~50k texts and the job under 30 min on 2 cores.
    augment_per_text: int = 3
    replace_prob: float = 0.35  # per word: swap for an embedding neighbour (augment_texts)
    drop_prob: float = 0.1  # per word: delete (augment_texts)
    neighbours: int = 12  # candidates per word
    seed: int = 0
    # The student starts as a cut of the teacher (its layers, post-LN; streamproc.compress.cut),
    # which served 94.0% on TREC seed 0 against the from-scratch student's 92.4%. None: a pre-LN
    # student whose layers start random, shaped by the fields above (dim … ffn, epochs, lr),
    # which a cut student does not use.
    cut: CutConfig | None = field(default_factory=CutConfig)

    def student_config(self, vocab_size: int, num_labels: int) -> StudentConfig:
        return StudentConfig(
            vocab_size=vocab_size,
            num_labels=num_labels,
            max_tokens=self.max_tokens,
            dim=self.dim,
            head_dim=self.head_dim,
            layer_heads=(self.heads,) * self.layers,
            layer_ffn=(self.ffn,) * self.layers,
            dropout=self.dropout,
            pad_id=SPECIAL_TOKENS.index("[PAD]"),
        )


# --- transfer-set augmentation -----------------------------------------------------------------

_WORD = re.compile(r"^[a-z]+$")


def embedding_neighbours(
    words: Sequence[str], teacher_vocab: dict[str, int], teacher_emb: torch.Tensor, k: int
) -> dict[str, list[str]]:
    """For each lowercase word that is one teacher piece, its ``k`` nearest whole-word pieces by
    cosine similarity of the teacher's input embeddings (the word itself excluded)."""
    pool = [w for w in teacher_vocab if _WORD.match(w) and len(w) > 1]
    queries = sorted({w for w in words if w in teacher_vocab and _WORD.match(w)})
    if not pool or not queries:
        return {}
    emb = F.normalize(teacher_emb.float(), dim=1)
    pool_emb = emb[[teacher_vocab[w] for w in pool]]  # (P, E)
    result: dict[str, list[str]] = {}
    for start in range(0, len(queries), 1024):
        chunk = queries[start : start + 1024]
        sims = emb[[teacher_vocab[w] for w in chunk]] @ pool_emb.T  # (Q, P)
        top = sims.topk(min(k + 1, len(pool)), dim=1).indices.tolist()
        for word, row in zip(chunk, top, strict=True):
            result[word] = [pool[j] for j in row if pool[j] != word][:k]
    return result


# --- initialisation ------------------------------------------------------------------------------


def init_from_teacher_embeddings(
    model: StudentNetwork,
    student_vocab: Sequence[str],
    teacher_vocab: dict[str, int],
    teacher_word_emb: torch.Tensor,
    teacher_pos_emb: torch.Tensor | None = None,
) -> None:
    """Start the student's token (and position) embeddings from the teacher's, projected onto the
    top ``dim`` principal components of the teacher rows the student keeps."""
    dim = model.config.dim
    rows = [teacher_vocab.get(p, teacher_vocab.get("[UNK]", 0)) for p in student_vocab]
    source = teacher_word_emb.float()[rows]  # (V, E)
    mean = source.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(source - mean, full_matrices=False)  # v: (E, E)
    basis = v[:dim].T  # (E, C)
    projected = (source - mean) @ basis  # (V, C)
    scale = 0.5 / projected.std().clamp(min=1e-6)  # comparable scale to the LayerNorm output
    with torch.no_grad():
        model.tok_emb.weight.copy_(projected * scale)
        model.tok_emb.weight[model.config.pad_id].zero_()
        if teacher_pos_emb is not None:
            pos = teacher_pos_emb.float()[: model.config.max_tokens]
            model.pos_emb.weight[: pos.shape[0]].copy_(
                (pos - pos.mean(0, keepdim=True)) @ basis * scale
            )


# --- training -----------------------------------------------------------------------------------


def distill(
    model: StudentNetwork,
    tokenizer: StudentTokenizer,
    texts: Sequence[str],
    soft_logits: np.ndarray,
    hard_labels: Sequence[int],
    config: DistillConfig,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    teacher_features: np.ndarray | None = None,
    feature_map: torch.Tensor | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> list[float]:
    """Train ``model`` in place on (text, teacher logits, label or −1); returns the loss per epoch.

    Batches are drawn from length-sorted buckets so padding stays small. ``feature_map`` (D, C):
    where the projection of the student's sentence vector to the teacher's starts (a student
    cut from the teacher: the selection of its kept dimensions); random when None.
    """
    epochs = config.epochs if epochs is None else epochs
    lr = config.lr if lr is None else lr
    if len(texts) != soft_logits.shape[0] or len(texts) != len(hard_labels):
        raise ValueError("texts, soft_logits and hard_labels must have one row per text")
    rng = random.Random(config.seed)
    ids_all, mask_all = _pre_encode(tokenizer, texts)
    soft = torch.from_numpy(soft_logits.astype(np.float32))
    hard = torch.tensor(list(hard_labels), dtype=torch.long)
    lengths = mask_all.sum(1).tolist()
    feats = (
        None if teacher_features is None else torch.from_numpy(teacher_features.astype(np.float32))
    )
    proj = None if feats is None else torch.nn.Linear(model.config.dim, feats.shape[1])
    if proj is not None and feature_map is not None:
        with torch.no_grad():
            proj.weight.copy_(feature_map)  # (D, C)
            proj.bias.zero_()
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = steps_per_epoch * epochs
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=lr,
    )
    if proj is not None:
        optimizer.add_param_group({"params": list(proj.parameters()), "weight_decay": 0.0})
    warmup = max(1, int(total * config.warmup_fraction))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    tick = progress(total) if progress else None
    t = config.temperature
    history: list[float] = []
    model.train()
    for _epoch in range(epochs):
        batches = length_buckets(lengths, config.batch_size, rng)
        running, count = 0.0, 0
        for batch in batches:
            index = torch.tensor(batch)
            width = max(lengths[i] for i in batch)
            ids, mask = ids_all[index, :width], mask_all[index, :width]  # (B, T)
            pooled = model.features(ids, mask)  # (B, C)
            logits = model.classifier(pooled)  # (B, L)
            kd = F.kl_div(
                F.log_softmax(logits / t, dim=-1),
                F.softmax(soft[index] / t, dim=-1),
                reduction="batchmean",
            ) * (t * t)
            labelled = hard[index] >= 0
            ce = (
                F.cross_entropy(logits[labelled], hard[index][labelled])
                if bool(labelled.any())
                else logits.new_zeros(())
            )
            loss = config.alpha * kd + (1 - config.alpha) * ce
            if proj is not None and feats is not None and config.feature_weight > 0:
                cos = F.cosine_similarity(proj(pooled), feats[index], dim=-1)  # (B,)
                loss = loss + config.feature_weight * (1 - cos).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.detach().item() * len(batch)
            count += len(batch)
            if tick:
                tick(1)
        history.append(running / max(1, count))
    model.eval()
    return history


def _pre_encode(
    tokenizer: StudentTokenizer, texts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode all texts once, padded to the longest; batches slice the columns they need."""
    ids, mask = tokenizer.encode_batch(list(texts))  # (N, Tmax)
    return ids, mask


def predict_logits(
    model: torch.nn.Module, tokenizer: StudentTokenizer, texts: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """Logits (N, L) for ``texts`` in order, with ``inference_mode`` and ``eval()``."""
    model.eval()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            ids, mask = tokenizer.encode_batch(texts[start : start + batch_size])
            out.append(model(ids, mask).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def evaluate(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Accuracy of argmax(logits) against labels."""
    return float((logits.argmax(1) == np.asarray(labels)).mean()) if len(labels) else 0.0
