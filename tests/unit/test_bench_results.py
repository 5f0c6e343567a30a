"""Every committed ``bench.json`` loads as typed results, writes back unchanged, and renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamproc.tools.bench import report
from streamproc.tools.bench.results import BenchResults, Point, SkippedPoint
from streamproc.tools.bench.targets import bench_verdicts

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "docs" / "results").glob("**/bench.json"))

# Written by the current target logic. The others predate target 6's CPU budget (cores_needed)
# and, for some, target 3's wording: their stored verdicts no longer recompute equal.
CURRENT_TARGETS = {"bench-sched/bench.json"}


def _name(path: Path) -> str:
    return path.relative_to(ROOT / "docs" / "results").as_posix()


def test_the_committed_results_are_all_here() -> None:
    assert len(FILES) >= 8
    assert {_name(f) for f in FILES} >= CURRENT_TARGETS


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_a_committed_bench_json_round_trips_and_renders(path: Path) -> None:
    text = path.read_text()
    d = json.loads(text)
    results = BenchResults.from_json(d)
    assert results.to_json() == d
    assert json.dumps(results.to_json(), indent=1) + "\n" == text  # as write_reports writes it
    md = report.markdown(results)
    for t in results.targets:
        assert t.name in md
    if _name(path) in CURRENT_TARGETS:
        assert bench_verdicts(results) == list(results.targets)
        assert [t.to_json() for t in bench_verdicts(results)] == d["targets"]


def test_an_empty_summary_and_a_skipped_burst_keep_their_json_form() -> None:
    d = json.loads((ROOT / "docs" / "results" / "bench-sched" / "bench.json").read_text())
    point = next(p for p in d["points"] if p["profile"] == "rate")
    empty = {**point, "latency_ms": {}, "batch": {}}
    skipped = {"contender": "per-event", "profile": "burst", "skipped": "saturated at 250/s"}
    d["points"] = [empty, skipped]
    results = BenchResults.from_json(d)
    first, second = results.points
    assert isinstance(first, Point) and first.latency_ms.p99 is None
    assert isinstance(second, SkippedPoint) and second.skipped == "saturated at 250/s"
    assert results.to_json() == d
    md = report.markdown(results)
    assert "saturated at 250/s" in md  # the burst table says why it did not run


def test_rerender_rewrites_the_reports_but_not_bench_json(tmp_path: Path) -> None:
    source = ROOT / "docs" / "results" / "bench-sched" / "bench.json"
    (tmp_path / "bench.json").write_text(source.read_text())
    before = (tmp_path / "bench.json").stat().st_mtime_ns
    paths = report.rerender(tmp_path)
    assert (tmp_path / "bench.json").stat().st_mtime_ns == before
    assert (tmp_path / "bench.json").read_text() == source.read_text()
    results = BenchResults.from_json(json.loads(source.read_text()))
    assert paths["markdown"].read_text() == report.markdown(results) + "\n"
    assert paths["snippet"].read_text() == report.readme_snippet(results, tmp_path)
