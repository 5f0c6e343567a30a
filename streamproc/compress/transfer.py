"""The transfer set the student learns from: the data set's train rows, teacher-labelled
augmentations and word substitutions of them, and unlabelled corpus texts
(:mod:`streamproc.compress.transfer_corpus`), with the teacher's logits and sentence vectors on
every one, and its logits on the test set — each cached beside the fine-tuned teacher, so other
seeds and recipes reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from streamproc.compress.augment import (
    TransferConfig,
    augment_texts,
    resolve_substitutions,
    substitute_words,
    substitution_pool,
)
from streamproc.compress.data import LabelledData
from streamproc.compress.distill import DistillConfig, embedding_neighbours
from streamproc.compress.transfer_corpus import (
    load_transfer_set,
    normalise_text,
    resolve_transfer_corpus,
)

__all__ = ["TeacherLabelledSet", "build_transfer_set"]


@dataclass(frozen=True)
class TeacherLabelledSet:
    """What the student learns from: the labelled rows, their augmentations, their word
    substitutions and unlabelled corpus texts, in that order, with the teacher's outputs on each
    (N texts, L labels, D features)."""

    own: list[str]  # the data set's train rows, their augmentations, then their substitutions
    augmented: int  # how many of ``own`` are augmentations (neighbour swaps and drops)
    substituted: int  # how many of ``own`` are word substitutions (after the augmentations)
    external: list[str]  # corpus texts (e.g. Tatoeba for trec); none of them a test text
    external_meta: dict[str, Any]  # files + sha256, license
    corpus: str | None  # the corpus used, if any
    hard: list[int]  # (N,) gold label, -1 where there is none
    soft: np.ndarray  # (N, L) teacher logits
    features: np.ndarray  # (N, D) teacher sentence vectors
    test_teacher: np.ndarray  # (N_test, L) teacher logits on the test set

    @property
    def texts(self) -> list[str]:
        return self.own + self.external


def build_transfer_set(
    data: LabelledData,
    teacher: Any,
    *,
    distill: DistillConfig,
    transfer: TransferConfig,
    max_tokens: int,
    cache_dir: Path,
    dataset: str,
    seed: int,
    teacher_folder: Path,
    bar: tqdm,
) -> TeacherLabelledSet:
    """Train rows + teacher-labelled augmentations + corpus texts, and the teacher's outputs on
    them and on the test set (each cached under ``teacher_folder``)."""
    from streamproc.compress.teacher import teacher_logits, teacher_outputs

    dcfg, xcfg = distill, transfer
    corpus = resolve_transfer_corpus(xcfg.corpus, dataset)
    external: list[str] = []
    external_meta: dict[str, Any] = {}
    if corpus is not None:
        extra = load_transfer_set(
            corpus,
            cache_dir=cache_dir,
            # Never a test text (Tatoeba holds some TREC test questions); train rows are in the
            # transfer set already.
            exclude=[*data.test_texts, *data.train_texts],
            limit=xcfg.limit,
            seed=seed,
            top_up=xcfg.top_up,
        )
        external, external_meta = extra.texts, extra.meta
    word_emb = teacher.encoder.embeddings.word_embeddings.weight.detach()
    words = {w.lower() for t in data.train_texts for w in t.split()}
    neighbours = embedding_neighbours(
        sorted(words), teacher.tokenizer.get_vocab(), word_emb, dcfg.neighbours
    )
    augmented = augment_texts(
        data.train_texts,
        neighbours,
        per_text=dcfg.augment_per_text,
        replace_prob=dcfg.replace_prob,
        drop_prob=dcfg.drop_prob,
        seed=seed,
        keep_question_words=xcfg.keep_question_words,
    )
    substituted: list[str] = []
    per_text = resolve_substitutions(xcfg.substitutions_per_text, dataset)
    if per_text:
        # The words come from the corpus as well as the train rows: many more of them.
        pool = substitution_pool([*external, *data.train_texts])
        test_keys = {normalise_text(t) for t in data.test_texts}
        substituted = [
            text
            for text in substitute_words(data.train_texts, pool, per_text=per_text, seed=seed)
            if normalise_text(text) not in test_keys
        ]
    own = list(data.train_texts) + augmented + substituted
    bar.reset(total=len(own) + len(external) + len(data.test_texts))
    soft, features = teacher_outputs(
        teacher,
        own,
        max_tokens=max_tokens,
        cache_file=teacher_folder / "transfer.npy",
        progress=bar.update,
    )
    if external:  # its own cache: changing the augmentation does not relabel the corpus
        # Labelled in sorted order: every seed's shuffle of the same texts hits the cache.
        order = sorted(range(len(external)), key=external.__getitem__)
        ext_soft, ext_features = teacher_outputs(
            teacher,
            [external[i] for i in order],
            max_tokens=max_tokens,
            cache_file=teacher_folder / f"transfer-{corpus}.npy",
            progress=bar.update,
        )
        back = np.argsort(order)  # row of each external text in the sorted labelling
        soft = np.concatenate([soft, ext_soft[back]])
        features = np.concatenate([features, ext_features[back]])
    test_teacher = teacher_logits(
        teacher,
        data.test_texts,
        max_tokens=max_tokens,
        cache_file=teacher_folder / "test.npy",
        progress=bar.update,
    )
    return TeacherLabelledSet(
        own=own,
        augmented=len(augmented),
        substituted=len(substituted),
        external=external,
        external_meta=external_meta,
        corpus=corpus,
        hard=list(data.train_labels) + [-1] * (len(own) - len(data.train_texts) + len(external)),
        soft=soft,
        features=features,
        test_teacher=test_teacher,
    )
