"""Transfer-set augmentation: perturbed copies of the training texts (no torch needed here).

:func:`augment_texts` swaps words for their embedding neighbours or drops them. For question
classification (TREC) the class is mostly decided by the question word or phrase ("what", "who",
"how many", "in what year", "name …"), so ``keep_question_words=True`` never replaces or drops
those tokens (see :func:`question_word_positions`) and never swaps another word *into* a
question word (nor leaves a bare "When did"). ``keep_question_words=False`` is the original
behaviour, bit for bit.

:func:`substitute_words` does the opposite on purpose: one content word of a copy is replaced by
a *random* content word of the corpus (:func:`substitution_pool`), so the copy may well belong to
another class ("What is the diameter of a golf ball?" → "What is the flower of a golf ball?"). The
teacher labels it, and the student sees what the teacher makes of many more words in the slots
where the class is decided; neighbour swaps keep the class and cannot show that.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SUBSTITUTIONS",
    "QUESTION_OPENERS",
    "QUESTION_WORDS",
    "SubstitutionPool",
    "TransferConfig",
    "augment_texts",
    "question_word_positions",
    "resolve_substitutions",
    "substitute_words",
    "substitution_pool",
    "word_key",
]


@dataclass(frozen=True)
class TransferConfig:
    """How the job builds its transfer set beyond ``DistillConfig``'s numbers (``augment_per_text``,
    ``replace_prob``, ``drop_prob``, ``neighbours``), which keep their meaning and defaults.

    Its own dataclass because the job overrides ``DistillConfig`` with a ``dict[str, int]``
    (``QUICK_DISTILL``), so that class holds numbers only.
    """

    # augment_texts never drops or replaces the question word or phrase ("what", "how many",
    # "in what year", "Name a", …); False: the original augmentation, which can hit it.
    keep_question_words: bool = True
    # Unlabelled real text for the teacher to label (transfer_corpus.load_transfer_set): "auto" =
    # the data set's default (transfer_corpus.DEFAULT_TRANSFER_CORPORA: tatoeba for trec), a name
    # in transfer_corpus.TRANSFER_CORPORA, or None / "none" for none.
    corpus: str | None = "auto"
    limit: int | None = None  # at most this many corpus texts; None: every question
    top_up: bool = True  # fill up to ``limit`` with non-questions when the questions run out
    # substitute_words copies per train text (one content word swapped for a random one of the
    # corpus, teacher-labelled): None = the data set's default (DEFAULT_SUBSTITUTIONS), 0 = none.
    substitutions_per_text: int | None = None


# substitute_words' copies per train text where TransferConfig.substitutions_per_text is None.
# TREC: 4 measured (seeds 0-2, README); the other built-in data sets have no measurement yet,
# and rotten-tomatoes' job would pass its 30 minutes with 4 more texts per review.
DEFAULT_SUBSTITUTIONS: dict[str, int] = {"trec": 4}


def resolve_substitutions(setting: int | None, dataset: str) -> int:
    """``TransferConfig.substitutions_per_text`` → a count (None: the data set's default)."""
    count = DEFAULT_SUBSTITUTIONS.get(dataset, 0) if setting is None else setting
    if count < 0:
        raise ValueError(f"substitutions_per_text must be >= 0, got {count}")
    return count


# wh-words: wherever they stand, they (and the word that completes their phrase) are kept.
QUESTION_WORDS = frozenset(
    {"what", "who", "whom", "whose", "where", "when", "why", "which", "how", "whence", "whither"}
)
# Imperatives that open a TREC question ("Name a flying mammal .", "Define ...") — first word only.
QUESTION_OPENERS = frozenset(
    {"name", "list", "define", "describe", "explain", "identify", "give", "tell"}
)
# A preposition right before a wh-word belongs to the phrase: "in what year", "to whom", "by how".
_PREPOSITIONS = frozenset(
    {
        "about",
        "after",
        "against",
        "along",
        "among",
        "around",
        "at",
        "before",
        "between",
        "by",
        "during",
        "for",
        "from",
        "in",
        "into",
        "of",
        "on",
        "over",
        "since",
        "through",
        "to",
        "under",
        "upon",
        "with",
        "within",
    }
)
_KEY = re.compile(r"[^a-z0-9]*([a-z]+)")


def word_key(word: str) -> str:
    """The lowercase letters a whitespace token starts with: ``"What's"`` → ``"what"``,
    ``"Why?"`` → ``"why"``, ``"``"`` → ``""``."""
    match = _KEY.match(word.lower())
    return match.group(1) if match else ""


def question_word_positions(words: Sequence[str]) -> set[int]:
    """Indices of the tokens that form a question word or phrase, which augmentation keeps.

    * every wh-word (``what``, ``who``, ``how``, … also as ``what's`` / ``who'd``) and the token
      after it, which completes the phrase: ``how many``, ``how long``, ``what year``,
      ``which country``, ``who was``;
    * a preposition right before a wh-word: ``in what year``, ``to whom``, ``for how long``;
    * an imperative opener as the first token (``name``, ``list``, ``define``, ``describe``, …)
      and the token after it: ``Name a``, ``Define the``.
    """
    keys = [word_key(w) for w in words]
    keep: set[int] = set()
    if keys and keys[0] in QUESTION_OPENERS:
        keep.update(range(min(2, len(keys))))
    for i, key in enumerate(keys):
        if key not in QUESTION_WORDS:
            continue
        keep.add(i)
        if i + 1 < len(keys):
            keep.add(i + 1)
        if i > 0 and keys[i - 1] in _PREPOSITIONS:
            keep.add(i - 1)
    return keep


def augment_texts(
    texts: Sequence[str],
    neighbours: Mapping[str, Sequence[str]],
    *,
    per_text: int,
    replace_prob: float,
    drop_prob: float,
    seed: int,
    keep_question_words: bool = False,
) -> list[str]:
    """``per_text`` perturbed copies of each text (words replaced by neighbours or dropped);
    duplicates of the originals and of each other are removed. Deterministic for a seed.

    Per word, with one uniform draw ``r``: ``r < drop_prob`` drops it (only in texts of more than
    three words), else ``r < drop_prob + replace_prob`` swaps it for a random one of its
    ``neighbours``. With ``keep_question_words`` the tokens of :func:`question_word_positions`
    are never dropped or replaced, no replacement is itself a question word, and a variant that
    dropped every other word is left out; the default (``False``) is the original behaviour,
    draw for draw.
    """
    for label, p in (("replace_prob", replace_prob), ("drop_prob", drop_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{label} must be in [0, 1], got {p}")
    rng = random.Random(seed)
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        words = text.split()
        protected = question_word_positions(words) if keep_question_words else set()
        for _ in range(per_text):
            new: list[str] = []
            dropped = 0
            for i, word in enumerate(words):
                key = word.lower()
                r = rng.random()
                if i in protected:
                    new.append(word)
                    continue
                if r < drop_prob and len(words) > 3:
                    dropped += 1
                    continue
                candidates = neighbours.get(key)
                if candidates and keep_question_words:
                    candidates = [c for c in candidates if word_key(c) not in QUESTION_WORDS]
                if r < drop_prob + replace_prob and candidates:
                    new.append(rng.choice(candidates))
                else:
                    new.append(word)
            if protected and dropped == len(words) - len(protected):
                continue  # nothing left but the question phrase ("When did")
            candidate = " ".join(new)
            if candidate and candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out


_CONTENT_WORD = re.compile(r"[a-z]+")
_SLOT_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class SubstitutionPool:
    """The words :func:`substitute_words` draws from and the function words it leaves alone."""

    words: tuple[str, ...]  # sorted, drawn uniformly: rare words as often as common ones
    common: frozenset[str]  # the most frequent words (the, of, is, …): never a slot


def substitution_pool(
    texts: Sequence[str], *, common: int = 150, min_count: int = 2, min_letters: int = 3
) -> SubstitutionPool:
    """Content words of ``texts``: lowercase alphabetic whitespace tokens seen ``min_count``
    times or more, of ``min_letters`` letters or more, other than the ``common`` most frequent
    (ties in first-seen order) and the question words. A word seen once is often a typo."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in text.split() if _CONTENT_WORD.fullmatch(w))
    frequent = frozenset(w for w, _ in counts.most_common(common))
    words = sorted(
        w
        for w, n in counts.items()
        if n >= min_count
        and len(w) >= min_letters
        and w not in frequent
        and w not in QUESTION_WORDS
    )
    return SubstitutionPool(tuple(words), frequent)


def substitute_words(
    texts: Sequence[str], pool: SubstitutionPool, *, per_text: int, seed: int
) -> list[str]:
    """Up to ``per_text`` copies of each text, each with one word replaced by a random word of
    ``pool``. The replaced word is an alphabetic token outside the question phrase
    (:func:`question_word_positions`) and not one of ``pool.common``; a text without one yields
    nothing. Copies equal to a text or to an earlier copy are dropped. Deterministic for a seed.
    """
    if per_text < 0:
        raise ValueError(f"per_text must be >= 0, got {per_text}")
    if not pool.words:
        return []
    rng = random.Random(1000 + seed)  # a stream of its own: augment_texts' draws stay as they were
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        words = text.split()
        protected = question_word_positions(words)
        slots = [
            i
            for i, w in enumerate(words)
            if i not in protected and _SLOT_WORD.fullmatch(w) and w.lower() not in pool.common
        ]
        if not slots:
            continue
        for _ in range(per_text):
            i = rng.choice(slots)
            copy = [*words[:i], rng.choice(pool.words), *words[i + 1 :]]
            candidate = " ".join(copy)
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out
