"""What one run of the compression job measured, typed: :class:`JobSummary` and its parts.

The job assembles it stage by stage, :mod:`~streamproc.compress.targets` judges it, and
:mod:`~streamproc.compress.report` renders it. ``report.json`` is its JSON form
(:meth:`JobSummary.to_json` / :meth:`JobSummary.from_json`, which also reads the reports written
before a field existed: a missing optional part is None or empty). :class:`SeedResult` is what an
extra seed's accuracy-only run measures (``seed.json``).

Model names in ``models`` and ``latency`` are ``teacher``, ``distilled``, ``pruned`` and
``quantized``; latency keys are ``b{batch}_t{torch threads}`` (``b1_t1`` … ``b64_t2``).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ArtifactInfo",
    "DataInfo",
    "Evaluation",
    "JobSummary",
    "JobTimes",
    "ModelScore",
    "RuntimeComparison",
    "RuntimeRow",
    "SeedResult",
    "ServedScore",
    "TargetVerdict",
    "Timing",
    "TransferInfo",
]

MODEL_NAMES = ("teacher", "distilled", "pruned", "quantized")


@dataclass(frozen=True)
class Timing:
    """Median and p99 milliseconds of one call, over ``calls`` calls (None: not recorded)."""

    median_ms: float
    p99_ms: float
    calls: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Timing:
        return cls(float(d["median_ms"]), float(d["p99_ms"]), d.get("calls"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"median_ms": self.median_ms, "p99_ms": self.p99_ms}
        if self.calls is not None:
            out["calls"] = self.calls
        return out


@dataclass(frozen=True)
class DataInfo:
    name: str
    description: str
    train: int  # rows
    test: int  # rows
    split: str  # how train and test were separated
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ModelScore:
    """One model on the test split."""

    accuracy: float
    macro_f1: float
    agreement: float  # share of test texts labelled as the teacher labels them
    params: int
    size_bytes: int
    flops: int | None  # per test sequence of average length (students only)


@dataclass(frozen=True)
class RuntimeRow:
    """One variant of the runtime comparison (:mod:`~streamproc.compress.runtimes`)."""

    model: str  # "teacher" | "student"
    runtime: str  # "torch" | "onnxruntime"
    precision: str  # "fp32" | "int8-dynamic" | "int8-static"
    threads: int
    served: bool  # the artifact's own graph, as a worker runs it
    accuracy: float
    # "b1" / "b64" -> "forward" / "end_to_end" -> timing
    latency: Mapping[str, Mapping[str, Timing]]

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, threads: int) -> RuntimeRow:
        return cls(
            model=d["model"],
            runtime=d["runtime"],
            precision=d["precision"],
            threads=int(d.get("threads", threads)),  # before the field: every row alike
            served=bool(d["served"]),
            accuracy=float(d["accuracy"]),
            latency={
                batch: {kind: Timing.from_json(t) for kind, t in cells.items()}
                for batch, cells in d["latency"].items()
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "precision": self.precision,
            "threads": self.threads,
            "served": self.served,
            "accuracy": self.accuracy,
            "latency": {
                batch: {kind: t.to_json() for kind, t in cells.items()}
                for batch, cells in self.latency.items()
            },
        }


@dataclass(frozen=True)
class RuntimeComparison:
    threads: int  # the comparison's threads (torch variants, and every row unless it says)
    calls: Mapping[str, int]  # "b1" / "b64" -> calls per variant
    rows: tuple[RuntimeRow, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RuntimeComparison:
        threads = int(d["threads"])
        rows = tuple(RuntimeRow.from_json(r, threads=threads) for r in d["rows"])
        return cls(threads, dict(d["calls"]), rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "calls": dict(self.calls),
            "rows": [r.to_json() for r in self.rows],
        }

    @property
    def served(self) -> RuntimeRow:
        return next(r for r in self.rows if r.served)

    def row(self, model: str, runtime: str, precision: str) -> RuntimeRow:
        """The variant's row at the comparison's thread count."""
        for r in self.rows:
            if (r.model, r.runtime, r.precision, r.threads) == (
                model,
                runtime,
                precision,
                self.threads,
            ):
                return r
        raise KeyError(f"no {model} · {runtime} · {precision} row in the runtime comparison")


@dataclass(frozen=True)
class JobTimes:
    total_seconds: float
    stage_seconds: Mapping[str, float]
    teacher_cached: bool
    teacher_note: str  # appended to the job-time line ("; the teacher came from the cache …")
    quick: bool


@dataclass(frozen=True)
class TransferInfo:
    texts: int  # everything the student learns from
    augmented: int  # teacher-labelled augmentations of the train rows
    corpus: str | None = None  # an unlabelled corpus, if any (e.g. "tatoeba")
    corpus_texts: int = 0
    corpus_license: str = ""
    substituted: int = 0  # teacher-labelled word substitutions of the train rows


@dataclass(frozen=True)
class ServedScore:
    """The artifact as a worker serves it (its own runtime, ``predict_batch``)."""

    split: str
    rows: int
    accuracy: float
    macro_f1: float
    runtime: str
    teacher_accuracy: float | None = None
    precision: str = ""
    # Labels at batch 1 vs batch 64 differ for this fraction of test texts (older reports: None).
    batch_disagreement: float | None = None


@dataclass(frozen=True)
class ArtifactInfo:
    version: str
    path: str
    files_summary: str  # "6.22 MB on disk (weights + tokenizer + manifest)"


@dataclass(frozen=True)
class TargetVerdict:
    target: str
    measured: str
    met: bool


@dataclass(frozen=True)
class SeedResult:
    """One seed's accuracy-only run (``seed.json``): each stage's test accuracy."""

    seed: int
    teacher_seed: int
    distilled: float
    pruned: float
    served: float
    served_macro_f1: float
    minutes: float


@dataclass(frozen=True)
class Evaluation:
    """The models' half of the summary, measured in one run
    (:func:`~streamproc.compress.evaluation.evaluate_models`)."""

    data: DataInfo
    models: Mapping[str, ModelScore]
    latency: Mapping[str, Mapping[str, Timing]]
    latency_calls: str
    end_to_end: Mapping[str, Timing]
    batch_disagreement: Mapping[str, float]
    avg_test_tokens: float
    student_dim: int | None
    architecture: Mapping[str, str]
    machine: str


@dataclass(frozen=True)
class JobSummary:
    """Everything the report shows (see the module docstring)."""

    data: DataInfo
    models: Mapping[str, ModelScore]
    latency: Mapping[str, Mapping[str, Timing]]  # model -> b{batch}_t{threads} -> timing
    latency_calls: str  # "300 (batch 1) / 60 (batch 64)"
    end_to_end: Mapping[str, Timing]  # predict_batch of the quantized artifact, "b1_t2" / "b64_t2"
    batch_disagreement: Mapping[str, float]  # "pruned" / "quantized": labels b1 vs b64 differ
    avg_test_tokens: float
    student_dim: int | None
    architecture: Mapping[str, str]  # model -> one-line description
    machine: str
    job: JobTimes
    transfer: TransferInfo
    artifact: ArtifactInfo
    rebuild_command: str
    runtimes: RuntimeComparison | None = None  # reports before the comparison: None
    served: ServedScore | None = None
    targets: tuple[TargetVerdict, ...] = ()
    seeds: tuple[SeedResult, ...] = ()  # one per seed when the job ran more than one
    _extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # unknown keys, kept

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation, **rest: Any) -> JobSummary:
        """The evaluation's fields plus ``rest`` (job, transfer, artifact, …)."""
        own = {f.name: getattr(evaluation, f.name) for f in dataclasses.fields(evaluation)}
        return cls(**own, **rest)

    @property
    def served_accuracy(self) -> float:
        """The served artifact's accuracy (the torch int8 model's where none was recorded)."""
        return self.served.accuracy if self.served else self.models["quantized"].accuracy

    @property
    def judged_accuracy(self) -> float:
        """What the accuracy targets judge: the median served accuracy over the seeds when the
        job ran more than one, else :attr:`served_accuracy`."""
        if len(self.seeds) > 1:
            return statistics.median(s.served for s in self.seeds)
        return self.served_accuracy

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JobSummary:
        known = {f.name for f in dataclasses.fields(cls)}
        data = dict(d["data"])
        data["labels"] = tuple(data["labels"])
        return cls(
            data=DataInfo(**data),
            models={name: ModelScore(**m) for name, m in d["models"].items()},
            latency={
                name: {key: Timing.from_json(t) for key, t in cells.items()}
                for name, cells in d["latency"].items()
            },
            latency_calls=d["latency_calls"],
            end_to_end={key: Timing.from_json(t) for key, t in d["end_to_end"].items()},
            batch_disagreement=dict(d["batch_disagreement"]),
            avg_test_tokens=float(d.get("avg_test_tokens", 10.0)),  # older reports: TREC's ~10
            student_dim=d.get("student_dim"),
            architecture=dict(d["architecture"]),
            machine=d["machine"],
            job=JobTimes(**d["job"]),
            transfer=TransferInfo(**d["transfer"]),
            artifact=ArtifactInfo(**d["artifact"]),
            rebuild_command=d["rebuild_command"],
            runtimes=RuntimeComparison.from_json(d["runtimes"]) if d.get("runtimes") else None,
            served=ServedScore(**d["served"]) if d.get("served") else None,
            targets=tuple(TargetVerdict(**t) for t in d.get("targets") or ()),
            seeds=tuple(SeedResult(**s) for s in d.get("seeds") or ()),
            _extra={k: v for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """``report.json``'s content, in its historical key order."""
        out: dict[str, Any] = {
            "data": {**dataclasses.asdict(self.data), "labels": list(self.data.labels)},
            "models": {name: dataclasses.asdict(m) for name, m in self.models.items()},
            "latency": {
                name: {key: t.to_json() for key, t in cells.items()}
                for name, cells in self.latency.items()
            },
            "latency_calls": self.latency_calls,
            "end_to_end": {key: t.to_json() for key, t in self.end_to_end.items()},
            "batch_disagreement": dict(self.batch_disagreement),
            "avg_test_tokens": self.avg_test_tokens,
            "student_dim": self.student_dim,
            "architecture": dict(self.architecture),
            "machine": self.machine,
        }
        if self.runtimes is not None:
            out["runtimes"] = self.runtimes.to_json()
        out["job"] = {**dataclasses.asdict(self.job), "stage_seconds": dict(self.job.stage_seconds)}
        out["transfer"] = dataclasses.asdict(self.transfer)
        if self.served is not None:
            out["served"] = dataclasses.asdict(self.served)
        out["artifact"] = dataclasses.asdict(self.artifact)
        out["rebuild_command"] = self.rebuild_command
        out["targets"] = [dataclasses.asdict(t) for t in self.targets]
        if self.seeds:
            out["seeds"] = [dataclasses.asdict(s) for s in self.seeds]
        out.update(self._extra)
        return out
