"""Distillation pieces: augmentation, embedding initialisation, the training loop, tokenizer."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from streamproc.compress.augment import (
    QUESTION_WORDS,
    TransferConfig,
    question_word_positions,
    word_key,
)
from streamproc.compress.cut import CutConfig
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


def _original_augment(
    texts: list[str],
    neighbours: dict[str, list[str]],
    per_text: int,
    rp: float,
    dp: float,
    seed: int,
) -> list[str]:
    """The augmentation as it was before keep_question_words, verbatim."""
    rng = random.Random(seed)
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        words = text.split()
        for _ in range(per_text):
            new: list[str] = []
            for word in words:
                key = word.lower()
                r = rng.random()
                if r < dp and len(words) > 3:
                    continue
                if r < dp + rp and neighbours.get(key):
                    new.append(rng.choice(neighbours[key]))
                else:
                    new.append(word)
            candidate = " ".join(new)
            if candidate and candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out


QUESTIONS = [
    "How many people live in Tokyo ?",
    "What city is the capital of France ?",
    "In what year did the Titanic sink ?",
    "Who was the first man on the moon ?",
    "Name a flying mammal .",
    "What 's the tallest building in the world ?",
    "George Bush purchased a small interest in which baseball team ?",
    "When did Hawaii become a state ?",
]
# Every word has neighbours, question words included, and some neighbours are question words.
NEIGHBOURS = {
    w: ["what", "who", "thing", "stuff"]
    for w in {x.lower() for q in QUESTIONS for x in q.split()} | {"the", "cat", "sat", "on", "mat"}
}


def test_default_augmentation_is_the_original() -> None:
    texts = [*QUESTIONS, "the cat sat on the mat"]
    for rp, dp, seed in ((0.35, 0.1, 0), (0.5, 0.3, 7)):
        expected = _original_augment(texts, NEIGHBOURS, 4, rp, dp, seed)
        assert (
            augment_texts(texts, NEIGHBOURS, per_text=4, replace_prob=rp, drop_prob=dp, seed=seed)
            == expected
        )


def test_question_word_positions() -> None:
    def kept(text: str) -> list[str]:
        words = text.split()
        return [words[i] for i in sorted(question_word_positions(words))]

    assert kept("How many people live in Tokyo ?") == ["How", "many"]
    assert kept("In what year did the Titanic sink ?") == ["In", "what", "year"]
    assert kept("Name a flying mammal .") == ["Name", "a"]
    assert kept("What's the tallest building?") == ["What's", "the"]
    assert kept("George Bush bought which team ?") == ["which", "team"]
    assert kept("The cat sat .") == []
    assert word_key("Who's") == "who" and word_key("``") == "" and word_key("Why?") == "why"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gentle_augmentation_never_touches_the_question_word(seed: int) -> None:
    out = augment_texts(
        QUESTIONS,
        NEIGHBOURS,
        per_text=8,
        replace_prob=0.6,
        drop_prob=0.3,
        seed=seed,
        keep_question_words=True,
    )
    assert len(out) > 3 * len(QUESTIONS)  # still plenty of variety
    prefixes = {
        "How many": 2,
        "What city": 2,
        "In what year": 3,
        "Who was": 2,
        "Name a": 2,
        "What 's": 2,
        "When did": 2,
    }
    for text in out:
        words = text.split()
        if "which baseball" in text:
            continue
        prefix = next(p for p in prefixes if text.startswith(p + " "))
        rest = words[prefixes[prefix] :]
        assert not any(word_key(w) in QUESTION_WORDS for w in rest), text  # none swapped in
    sources = [t for t in out if "which" in t]
    assert sources and all("which baseball" in t for t in sources)  # mid-sentence wh-phrase kept
    # The original augmentation does hit question words with the same settings.
    old = augment_texts(
        QUESTIONS, NEIGHBOURS, per_text=8, replace_prob=0.6, drop_prob=0.3, seed=seed
    )
    assert any(not any(t.startswith(p + " ") for p in prefixes) for t in old)


def test_gentle_augmentation_changes_nothing_without_question_words() -> None:
    texts = ["the cat sat on the mat"]
    nb = {"cat": ["dog"], "mat": ["rug"]}
    kwargs = dict(per_text=5, replace_prob=0.5, drop_prob=0.2, seed=3)
    assert augment_texts(texts, nb, keep_question_words=True, **kwargs) == augment_texts(
        texts, nb, **kwargs
    )


def test_augmentation_settings_in_the_config() -> None:
    cfg = DistillConfig()
    assert (cfg.replace_prob, cfg.drop_prob, cfg.augment_per_text) == (0.35, 0.1, 3)
    tcfg = TransferConfig()
    assert tcfg.keep_question_words and tcfg.corpus == "auto" and tcfg.limit is None
    # DistillConfig is numbers, plus the optional cut recipe (a frozen dataclass of its own).
    types = {f.name: str(f.type) for f in dataclasses.fields(DistillConfig)}
    assert types.pop("cut") == "CutConfig | None" and cfg.cut == CutConfig()  # on by default
    assert set(types.values()) <= {"int", "float"}
    with pytest.raises(ValueError, match="replace_prob"):
        augment_texts(["a b"], {}, per_text=1, replace_prob=1.5, drop_prob=0.0, seed=0)
    with pytest.raises(ValueError, match="drop_prob"):
        augment_texts(["a b"], {}, per_text=1, replace_prob=0.1, drop_prob=-0.1, seed=0)


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
