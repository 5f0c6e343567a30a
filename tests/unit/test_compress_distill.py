"""Distillation pieces: augmentation, embedding initialisation, the training loop, tokenizer."""

from __future__ import annotations

import numpy as np
import torch

from streamproc.compress.distill import (
    DistillConfig,
    augment_texts,
    distill,
    embedding_neighbours,
    evaluate,
    init_from_teacher_embeddings,
    predict_logits,
)
from streamproc.model.network import StudentNetwork
from streamproc.model.tokenizer import StudentTokenizer, build_subset_tokenizer, train_wordpiece

POS = ["great", "good", "fine", "lovely"]
NEG = ["awful", "bad", "poor", "nasty"]


def _corpus() -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for i in range(48):
        word = (POS if i % 2 else NEG)[i // 2 % 4]
        texts.append(f"the item {i % 7} was really {word} today")
        labels.append(i % 2)
    return texts, labels


def test_augmentation_is_deterministic_and_uses_neighbours() -> None:
    vocab = {w: i for i, w in enumerate(["the", "cat", "dog", "sat", "mat", "rug", "on"])}
    emb = torch.eye(7)
    emb[2] = emb[1] + 0.1  # dog ~ cat
    emb[5] = emb[4] + 0.1  # rug ~ mat
    nb = embedding_neighbours(["cat", "mat", "unknownword"], vocab, emb, k=1)
    assert nb == {"cat": ["dog"], "mat": ["rug"]}
    texts = ["the cat sat on the mat"]
    a = augment_texts(texts, nb, per_text=5, replace_prob=0.5, drop_prob=0.0, seed=1)
    b = augment_texts(texts, nb, per_text=5, replace_prob=0.5, drop_prob=0.0, seed=1)
    assert a == b and a and texts[0] not in a
    assert all(set(t.split()) <= {"the", "cat", "dog", "sat", "on", "mat", "rug"} for t in a)


def test_subset_tokenizer_keeps_teacher_pieces() -> None:
    teacher = train_wordpiece(["the cat sat on the mat", "a dog ran far away"] * 5, 120)
    raw, vocab = build_subset_tokenizer(teacher.to_str(), ["the cat sat"] * 3 + ["a dog"], 200)
    tok = StudentTokenizer(raw, max_tokens=4)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) <= 200 and "dog" in vocab and "ran" not in vocab  # only pieces the texts use
    assert tok.tokens("the cat sat") == ["[CLS]", "the", "cat", "sat"]
    ids, mask = tok.encode_batch(["the cat sat on the mat", "", "the"])
    assert ids.shape == (3, 4), "head kept, truncated to the window"
    assert mask.sum(1).tolist() == [4, 1, 2]
    assert ids[1, 0] == vocab.index("[CLS]") and ids[1, 1] == tok.pad_id


def test_init_from_teacher_embeddings_projects_rows() -> None:
    cfg = DistillConfig(dim=4, heads=1, head_dim=4, layers=1, ffn=8, max_tokens=8)
    net = StudentNetwork(cfg.student_config(vocab_size=6, num_labels=2))
    teacher_vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3, "c": 4, "d": 5}
    teacher_emb = torch.randn(6, 10)
    init_from_teacher_embeddings(
        net, ["[PAD]", "[UNK]", "a", "b", "c", "d"], teacher_vocab, teacher_emb, torch.randn(16, 10)
    )
    assert torch.all(net.tok_emb.weight[0] == 0)
    assert net.tok_emb.weight[2:].std() > 0.1


def test_distillation_learns_a_separable_task() -> None:
    texts, labels = _corpus()
    tok = StudentTokenizer(train_wordpiece(texts, 80), 16)
    cfg = DistillConfig(
        dim=32,
        heads=2,
        head_dim=16,
        layers=1,
        ffn=64,
        epochs=8,
        batch_size=16,
        lr=3e-3,
        dropout=0.0,
        max_tokens=16,
    )
    torch.manual_seed(0)
    net = StudentNetwork(cfg.student_config(tok.vocab_size, 2))
    soft = (np.eye(2, dtype=np.float32)[labels] * 6 - 3).astype(np.float32)
    hard = [*labels[:24], *([-1] * 24)]  # half the rows are "unlabelled": soft targets only
    history = distill(net, tok, texts, soft, hard, cfg)
    assert len(history) == 8 and history[-1] < history[0]
    assert not net.training
    logits = predict_logits(net, tok, texts)
    assert logits.shape == (48, 2)
    assert evaluate(logits, labels) >= 0.9
