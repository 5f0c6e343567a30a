"""Transfer-set augmentation: perturbed copies of the training texts (no torch needed here).

:func:`augment_texts` swaps words for their embedding neighbours or drops them. For question
classification (TREC) the class is mostly decided by the question word or phrase ("what", "who",
"how many", "in what year", "name …"), so ``keep_question_words=True`` never replaces or drops
those tokens (see :func:`question_word_positions`) and never swaps another word *into* a
question word (nor leaves a bare "When did"). ``keep_question_words=False`` is the original
behaviour, bit for bit.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "QUESTION_OPENERS",
    "QUESTION_WORDS",
    "TransferConfig",
    "augment_texts",
    "question_word_positions",
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
