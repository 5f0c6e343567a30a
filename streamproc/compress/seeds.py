"""More than one seed: the accuracy-only run each extra seed makes, and the driver that runs them
beside the main run and adds them to its report (accuracy targets judged by the median)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamproc.compress import distill as distill_mod
from streamproc.compress.config import JobConfig, JobResult
from streamproc.compress.data import LabelledData
from streamproc.compress.report import write_report
from streamproc.compress.scoring import score_artifact
from streamproc.compress.summary import SeedResult
from streamproc.compress.targets import Targets, job_verdicts
from streamproc.errors import ModelError
from streamproc.model.network import StudentNetwork
from streamproc.model.tokenizer import StudentTokenizer

__all__ = ["accuracy_only_result", "run_seed_replicas"]


def accuracy_only_result(
    config: JobConfig,
    data: LabelledData,
    tokenizer: StudentTokenizer,
    student: StudentNetwork,
    pruned: StudentNetwork,
    artifact_dir: Path,
    teacher_meta: dict[str, Any],
    stage_seconds: dict[str, float],
) -> JobResult:
    """An ``accuracy_only`` run's answer: each stage's test accuracy, the served one included."""
    served = score_artifact(artifact_dir, data)
    seed = SeedResult(
        seed=config.seed,
        teacher_seed=teacher_meta["config"]["seed"],
        distilled=distill_mod.evaluate(
            distill_mod.predict_logits(student, tokenizer, data.test_texts), data.test_labels
        ),
        pruned=distill_mod.evaluate(
            distill_mod.predict_logits(pruned, tokenizer, data.test_texts), data.test_labels
        ),
        served=served["accuracy"],
        served_macro_f1=served["macro_f1"],
        minutes=round(sum(stage_seconds.values()) / 60, 1),
    )
    report_dir = config.report_dir_for(artifact_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "seed.json"
    path.write_text(json.dumps(dataclasses.asdict(seed), indent=2) + "\n")
    return JobResult(artifact_dir, {"seed": path}, seed=seed)


def run_seed_replicas(
    result: JobResult, config: JobConfig, seeds: Sequence[int], *, quiet: bool = False
) -> JobResult:
    """Train the same recipe again with other ``seeds`` and add them to ``result``'s report.

    Each seed is a ``streamproc distill --accuracy-only`` subprocess with the main run's teacher
    (so the seeds differ in the student's initialisation, augmentations and batch order, not in the
    teacher), one thread each, as many at once as the machine has cores; they start after the
    main run's latency measurements have finished. The report's accuracy targets then use the
    median over every seed (the test set's 95% interval is about ±2 points on TREC's 500).
    """
    report_dir = Path(result.report_paths["md"]).parent
    with tempfile.TemporaryDirectory() as tmp:
        commands = [
            [
                sys.executable,
                "-m",
                "streamproc",
                "distill",
                "--dataset",
                config.dataset,
                "--seed",
                str(seed),
                "--teacher-seed",
                str(config.teacher_seed_used),
                "--accuracy-only",
                "--threads",
                "1",
                "--out",
                str(Path(tmp) / f"seed-{seed}"),
                "--report-dir",
                str(report_dir / "seeds" / f"seed-{seed}"),
                *(["--cache-dir", str(config.cache_dir)] if config.cache_dir else []),
                *(["--quick"] if config.quick else []),
                "--quiet",
            ]
            for seed in seeds
        ]
        parallel = max(1, min(len(commands), os.cpu_count() or 1))
        for start in range(0, len(commands), parallel):
            running = [subprocess.Popen(cmd) for cmd in commands[start : start + parallel]]
            if not quiet:
                names = ", ".join(str(s) for s in seeds[start : start + parallel])
                print(
                    f"seeds     : seed(s) {names}, {len(running)} at once, one thread each",
                    file=sys.stderr,
                )
            codes = [p.wait() for p in running]
            if any(codes):
                raise ModelError(f"a seed replica failed (exit codes {codes})")
    replicas = [
        SeedResult(**json.loads((report_dir / "seeds" / f"seed-{seed}" / "seed.json").read_text()))
        for seed in seeds
    ]
    summary = result.summary
    assert summary is not None and summary.served is not None, "a full run's result"
    first = SeedResult(
        seed=config.seed,
        teacher_seed=config.teacher_seed_used,
        distilled=summary.models["distilled"].accuracy,
        pruned=summary.models["pruned"].accuracy,
        served=summary.served.accuracy,
        served_macro_f1=summary.served.macro_f1,
        minutes=round(summary.job.total_seconds / 60, 1),
    )
    summary = dataclasses.replace(
        summary,
        seeds=(first, *replicas),
        rebuild_command=f"{summary.rebuild_command} --seeds {len(seeds) + 1}",
    )
    summary = dataclasses.replace(summary, targets=job_verdicts(summary, Targets()))
    paths = write_report(summary, report_dir)
    return JobResult(result.artifact_dir, paths, summary)
