"""Word substitution: one content word of a train text swapped for a random word of the corpus,
for the teacher to label (augment.substitute_words, augment.substitution_pool)."""

from __future__ import annotations

import pytest

from streamproc.compress.augment import (
    QUESTION_WORDS,
    SubstitutionPool,
    TransferConfig,
    question_word_positions,
    resolve_substitutions,
    substitute_words,
    substitution_pool,
)

CORPUS = [
    "what is the capital of france ?",
    "who wrote the book ?",
    "the flower is red and the flower is blue",
    "a diameter and a diameter",
    "elevation elevation gestation gestation ab ab",
    "typo once",
]


def test_pool_keeps_repeated_content_words_only() -> None:
    pool = substitution_pool(CORPUS, common=1, min_count=2, min_letters=3)
    assert pool.common == frozenset({"the"})  # the most frequent word
    # "ab", "is" are too short, "typo" seen once, "what"/"who" are question words, "?" is no word.
    assert pool.words == ("and", "diameter", "elevation", "flower", "gestation")
    assert list(pool.words) == sorted(pool.words)
    assert not set(pool.words) & QUESTION_WORDS


def test_pool_common_words_are_never_offered() -> None:
    pool = substitution_pool(CORPUS, common=3, min_count=2, min_letters=2)
    assert pool.common == frozenset({"the", "is", "flower"})
    assert not set(pool.words) & pool.common


POOL = SubstitutionPool(("gestation", "diameter", "elevation", "flower"), frozenset({"the", "of"}))
TEXTS = [
    "What is the diameter of a golf ball ?",
    "How many people live in Tokyo ?",
    "Name a flying mammal .",
    "Who is the ?",  # nothing outside the question phrase but a common word
]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_each_copy_swaps_one_content_word_outside_the_question_phrase(seed: int) -> None:
    out = substitute_words(TEXTS, POOL, per_text=6, seed=seed)
    assert out == substitute_words(TEXTS, POOL, per_text=6, seed=seed)  # deterministic
    assert len(out) == len(set(out)) and not set(out) & set(TEXTS)
    for copy in out:
        words = copy.split()
        # Its source: the text it differs from in exactly one position.
        ((source, i),) = [
            (t.split(), diff[0])
            for t in TEXTS
            if len(t.split()) == len(words)
            and len(diff := [k for k, w in enumerate(t.split()) if w != words[k]]) == 1
        ]
        assert words[i] in POOL.words
        assert i not in question_word_positions(source)
        assert source[i].isalpha() and source[i].lower() not in POOL.common
    assert not any(c.startswith("Who is") for c in out)  # no slot: no copy


def test_copies_per_text_and_seeds_differ() -> None:
    one = substitute_words(TEXTS[:1], POOL, per_text=1, seed=0)
    assert len(one) == 1
    many = substitute_words(TEXTS[:2], POOL, per_text=50, seed=0)
    # Duplicates are dropped: at most (slots × pool words) distinct copies per text.
    assert 0 < len([c for c in many if c.startswith("What")]) <= 4 * 4
    assert substitute_words(TEXTS, POOL, per_text=3, seed=0) != substitute_words(
        TEXTS, POOL, per_text=3, seed=1
    )


def test_nothing_to_do() -> None:
    assert substitute_words(TEXTS, POOL, per_text=0, seed=0) == []
    assert substitute_words(TEXTS, SubstitutionPool((), frozenset()), per_text=3, seed=0) == []
    with pytest.raises(ValueError, match="per_text"):
        substitute_words(TEXTS, POOL, per_text=-1, seed=0)


def test_default_count_per_data_set() -> None:
    assert TransferConfig().substitutions_per_text is None
    assert resolve_substitutions(None, "trec") == 4
    assert resolve_substitutions(None, "rotten-tomatoes") == 0
    assert resolve_substitutions(2, "sms-spam") == 2
    assert resolve_substitutions(0, "trec") == 0
    with pytest.raises(ValueError, match="substitutions_per_text"):
        resolve_substitutions(-1, "trec")
