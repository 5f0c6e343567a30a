"""What one run of the compression job is asked to do (:class:`JobConfig`) and what it gives back
(:class:`JobResult`); the job itself is :func:`streamproc.compress.job.run_job`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamproc.compress.augment import TransferConfig
from streamproc.compress.distill import DistillConfig
from streamproc.compress.prune import PruneConfig
from streamproc.compress.summary import JobSummary, SeedResult

__all__ = ["JobConfig", "JobResult"]


def _worker_model_threads() -> int:
    from streamproc.settings import Settings

    return int(Settings.model_fields["model_threads"].default)


@dataclass(frozen=True)
class JobConfig:
    dataset: str = "trec"
    out_dir: Path = Path("artifacts/trec")
    version: str | None = None  # default: <dataset>-<yyyymmdd-hhmmss>
    report_dir: Path | None = None
    quick: bool = False
    seed: int = 0
    threads: int = 2  # teacher fine-tuning and labelling
    # The student's matrices are small: one thread is nearly as fast, and on a shared machine two
    # threads that wait on each other can be 10x slower (measured here under load).
    student_threads: int = 1
    runtime_threads: int = 2  # the runtime comparison's threads, every variant alike
    # The served graph is timed again on the threads a worker gives it (its default).
    served_threads: int = field(default_factory=_worker_model_threads)
    cache_dir: Path | None = None  # default: default_cache_dir()
    teacher: Any = None  # TeacherConfig; None = defaults (or the quick recipe)
    teacher_seed: int | None = None  # None: ``seed``; another run's seed reuses its cached teacher
    distill: DistillConfig = field(default_factory=DistillConfig)
    # Question-word-keeping augmentation and the unlabelled corpus (Tatoeba for trec).
    transfer: TransferConfig = field(default_factory=TransferConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    rebuild_command: str = ""
    # Train, prune, quantize and score only: no latency, runtime comparison or report. What
    # ``--seeds`` runs for the other seeds (:func:`run_seed_replicas`); writes ``seed.json``.
    accuracy_only: bool = False

    @property
    def teacher_seed_used(self) -> int:
        """The seed of the teacher this run fine-tunes or loads from the cache."""
        return self.seed if self.teacher_seed is None else self.teacher_seed

    def report_dir_for(self, artifact_dir: Path) -> Path:
        """Where the report goes: ``report_dir``, else ``<artifact>-report`` beside it."""
        return self.report_dir or (artifact_dir.parent / f"{artifact_dir.name}-report")


@dataclass(frozen=True)
class JobResult:
    """The artifact directory, the report files by kind (``md``, ``json``, plots; ``seed`` for an
    accuracy-only run) and what was measured: the full run's summary the report was rendered
    from, or an accuracy-only run's seed result."""

    artifact_dir: Path
    report_paths: dict[str, Path]
    summary: JobSummary | None = None
    seed: SeedResult | None = None
