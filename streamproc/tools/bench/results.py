"""What one ``streamproc bench`` run measured, typed: :class:`BenchResults` and its parts.

:func:`~streamproc.tools.bench.command.run_bench` assembles it, :mod:`.targets` judges it,
:mod:`.report` and :mod:`.plots` render it. ``bench.json`` is its JSON form
(:meth:`BenchResults.to_json` / :meth:`BenchResults.from_json`), with the keys, key order and
values a run has always written: re-writing a loaded file gives the same JSON. Older files load
too: a part or key a file lacks (``ramp``, ``p99_by_second_ms``, the CPU run-queue waits,
``environment.cpus`` …) is None, empty or named in an ``absent``/``extras`` field, and stays
absent when written again; a key that was written as null stays null.

A latency or batch summary of no values is ``{}`` in JSON: every field None here.
Floor tables map a batch size to the model-alone row; their JSON keys are strings ("1", "64").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamproc.tools.bench.points import (
    BatchSummary,
    BurstOutcome,
    CpuUsage,
    LatencySummary,
    ModelUse,
    Point,
    Ramp,
    SkippedPoint,
    point_from_json,
)

__all__ = [
    "BatchSummary",
    "BenchResults",
    "BurstOutcome",
    "BusyProcess",
    "CpuUsage",
    "Environment",
    "FloorRow",
    "FloorTable",
    "Floors",
    "LatencySummary",
    "ModelUse",
    "Point",
    "Ramp",
    "SkippedPoint",
    "Target",
]


@dataclass(frozen=True)
class FloorRow:
    """The model alone at one batch size: median ``predict_batch`` time."""

    batch_ms: float
    per_event_ms: float
    ceiling_eps: float  # batch size / batch time
    reps: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FloorRow:
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FloorTable = Mapping[int, FloorRow]  # batch size -> row, ascending ({}: not measured)


def _table_from_json(d: Mapping[str, Any]) -> dict[int, FloorRow]:
    return {int(size): FloorRow.from_json(row) for size, row in d.items()}


def _table_to_json(table: FloorTable) -> dict[str, Any]:
    return {str(size): row.to_json() for size, row in table.items()}


_MODEL_FLOORS = ("model_student", "model_student_idle_gaps", "model_student_torch", "model_teacher")


@dataclass(frozen=True)
class Floors:
    """What the contenders are measured against, in the same run."""

    model_student: FloorTable  # back to back, the worker's thread count
    broker_one_hop: tuple[Point, ...] = ()  # produce → consume, no worker; lowest/highest rate
    # The rest: {} when not measured (and absent from the JSON; older files lack some).
    model_student_idle_gaps: FloorTable = field(default_factory=dict)  # idle gap before calls
    model_student_torch: FloorTable = field(default_factory=dict)  # eager PyTorch
    model_teacher: FloorTable = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Floors:
        tables = {name: _table_from_json(d[name]) for name in _MODEL_FLOORS if name in d}
        hops = tuple(Point.from_json(p) for p in d.get("broker_one_hop", ()))
        return cls(broker_one_hop=hops, **tables)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"broker_one_hop": [p.to_json() for p in self.broker_one_hop]}
        for name in _MODEL_FLOORS:
            table: FloorTable = getattr(self, name)
            if table or name == "model_student":
                out[name] = _table_to_json(table)
        return out


@dataclass(frozen=True)
class BusyProcess:
    """A process using at least 0.2 cores before the run (who else was on the CPU)."""

    pid: int
    cores: float
    cmd: str


@dataclass(frozen=True)
class Environment:
    started_at: str  # UTC, ISO 8601
    machine: str  # "x86_64, 2 CPUs, Linux-…"
    python: str
    load_avg_before: tuple[float, float, float]
    busy_processes_before: tuple[BusyProcess, ...]
    texts: str  # where the texts came from, and how many
    artifact: str  # the student artifact's directory
    artifact_choice: str  # why that artifact
    student_version: str
    student_runtime: str  # "onnxruntime" | "torch"
    model_threads: int
    broker: str  # bootstrap servers, "LocalBroker …" when the bench started one
    load_avg_after: tuple[float, float, float]
    wall_s: float  # the whole run
    cpus: int | None = None  # os.cpu_count(); None: not recorded (older files)
    teacher_version: str | None = None  # when the teacher ran

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Environment:
        return cls(
            **{
                **d,
                "load_avg_before": tuple(d["load_avg_before"]),
                "load_avg_after": tuple(d["load_avg_after"]),
                "busy_processes_before": tuple(
                    BusyProcess(**b) for b in d["busy_processes_before"]
                ),
            }
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"started_at": self.started_at, "machine": self.machine}
        if self.cpus is not None:
            out["cpus"] = self.cpus
        out |= {
            "python": self.python,
            "load_avg_before": list(self.load_avg_before),
            "busy_processes_before": [dataclasses.asdict(b) for b in self.busy_processes_before],
            "texts": self.texts,
            "artifact": self.artifact,
            "artifact_choice": self.artifact_choice,
            "student_version": self.student_version,
            "student_runtime": self.student_runtime,
            "model_threads": self.model_threads,
            "broker": self.broker,
        }
        if self.teacher_version is not None:
            out["teacher_version"] = self.teacher_version
        out |= {"load_avg_after": list(self.load_avg_after), "wall_s": self.wall_s}
        return out


@dataclass(frozen=True)
class Target:
    """One verdict: ``met`` True, False, or None (the run cannot decide it)."""

    target: int  # its number, 1–8
    name: str
    met: bool | None
    detail: str
    # The numbers behind some verdicts; ``extras`` names those this one records, in order.
    ratio: float | None = None  # 1: adaptive / per-event capacity
    ratios: Mapping[str, float] | None = None  # 2: p99 ratio by rate ("25.0" …)
    worse_at: tuple[float, ...] | None = None  # 3: rates where adaptive's p99 was worse
    held_eps: float | None = None  # 4: highest rate held with p99 ≤ 100 ms
    share: float | None = None  # 6: held rate / model-alone ceiling at batch 64
    cores_needed: float | None = None  # 6: the CPU budget (None: none computed)
    worst_ratio: float | None = None  # 7: model time inside / alone
    extras: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Target:
        extra = {k: v for k, v in d.items() if k not in ("target", "name", "met", "detail")}
        if extra.get("worse_at") is not None:
            extra["worse_at"] = tuple(extra["worse_at"])
        return cls(d["target"], d["name"], d["met"], d["detail"], **extra, extras=tuple(extra))

    def to_json(self) -> dict[str, Any]:
        out = {"target": self.target, "name": self.name, "met": self.met, "detail": self.detail}
        for name in self.extras:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class BenchResults:
    """Everything ``bench.json`` holds (see the module docstring)."""

    command: str  # the canonical command line that reproduces the run
    argv: tuple[str, ...]
    # Config and contenders stay the mappings the file holds: older files lack newer
    # BenchConfig/Contender fields, and the dataclasses' defaults for them would misstate those
    # runs (no ramp then, not ramp_s=1.0; Faust's producer, not egress="librdkafka") and add keys
    # when re-written. Written from asdict(BenchConfig) / asdict(Contender) by name.
    config: Mapping[str, Any]
    contenders: Mapping[str, Mapping[str, Any]]
    environment: Environment
    notes: tuple[str, ...]
    floors: Floors
    points: tuple[Point | SkippedPoint, ...]  # in the order they ran
    targets: tuple[Target, ...] = ()
    _extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # unknown keys, kept

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BenchResults:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            command=d["command"],
            argv=tuple(d["argv"]),
            config=dict(d["config"]),
            contenders={name: dict(c) for name, c in d["contenders"].items()},
            environment=Environment.from_json(d["environment"]),
            notes=tuple(d["notes"]),
            floors=Floors.from_json(d["floors"]),
            points=tuple(point_from_json(p) for p in d["points"]),
            targets=tuple(Target.from_json(t) for t in d["targets"]),
            _extra={k: v for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """``bench.json``'s content, in its historical key order."""
        return {
            "command": self.command,
            "argv": list(self.argv),
            "config": dict(self.config),
            "contenders": {name: dict(c) for name, c in self.contenders.items()},
            "environment": self.environment.to_json(),
            "notes": list(self.notes),
            "floors": self.floors.to_json(),
            "points": [p.to_json() for p in self.points],
            "targets": [t.to_json() for t in self.targets],
            **self._extra,
        }
