"""One load point of ``streamproc bench``, typed: :class:`Point` and its parts.

Part of :mod:`.results` (which re-exports them; its docstring describes the JSON form). A field
that is None is a key the JSON lacks, except where a field's comment says it is written as null.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchSummary",
    "BurstOutcome",
    "CpuUsage",
    "LatencySummary",
    "ModelUse",
    "Point",
    "Ramp",
    "SkippedPoint",
    "point_from_json",
]


def _not_none(obj: Any) -> dict[str, Any]:
    """The dataclass's fields that are not None, in field order (a None field is an absent key)."""
    return {
        f.name: getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if getattr(obj, f.name) is not None
    }


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds over a point's events; all None when there were none (JSON ``{}``)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LatencySummary:
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return _not_none(self)


@dataclass(frozen=True)
class BatchSummary:
    """Batch sizes as events saw them (event-weighted); all None when no event had a batch."""

    event_p50: int | None = None  # the batch a typical event ran in
    event_mean: float | None = None
    max: int | None = None
    batches_est: int | None = None  # sum of 1/size over events

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchSummary:
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return _not_none(self)


_WAIT_KEYS = (
    "worker_wait_per_run",
    "model_process_wait_per_run",
    "broker_wait_per_run",
    "model_process_cpu_s",
)


@dataclass(frozen=True)
class CpuUsage:
    """Cores (CPU s / wall s over the measured window) by party; None: not measured there."""

    worker_cores: float | None = None  # the worker process tree (its model process included)
    broker_cores: float | None = None
    bench_cores: float | None = None  # this process: load generator and collector
    machine_cores: float | None = None
    other_cores: float | None = None  # everything else on the machine: contention
    worker_wait_per_run: float | None = None  # run-queue s per s on a CPU (schedstat)
    model_process_wait_per_run: float | None = None
    broker_wait_per_run: float | None = None
    model_process_cpu_s: float | None = None  # s, over the window
    worker_ms_per_event: float | None = None  # absent from the JSON when None
    # Keys an older file lacks (the run-queue waits came later): left out again by to_json.
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CpuUsage:
        return cls(**d, absent=frozenset(k for k in _WAIT_KEYS if k not in d))

    def to_json(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self.absent and f.name not in ("absent", "worker_ms_per_event")
        }
        if self.worker_ms_per_event is not None:
            out["worker_ms_per_event"] = self.worker_ms_per_event
        return out


@dataclass(frozen=True)
class ModelUse:
    """The model's work inside the worker over the measured window (from its counters)."""

    batches: int
    busy_fraction: float  # of the window's wall time
    ms_per_event: float  # the model's own time, where it runs
    call_ms_per_event: float | None = None  # the call as the pipeline waits (older files: none)
    cpu_ms_per_event: float | None = None  # the model process's CPU time (a model process only)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelUse:
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return _not_none(self)


@dataclass(frozen=True)
class Ramp:
    """A rate point's load before its measurement started (delivered, not in the statistics)."""

    seconds: float
    events: int
    latency_ms: LatencySummary

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Ramp:
        return cls(d["seconds"], d["events"], LatencySummary.from_json(d["latency_ms"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "events": self.events,
            "latency_ms": self.latency_ms.to_json(),
        }


@dataclass(frozen=True)
class BurstOutcome:
    events: int  # the backlog sent at once
    at_s: float  # seconds after the load started
    steady_eps: float  # the steady load it came on top of
    peak_lag: int  # events sent, not yet predicted
    drained: bool
    drain_s: float | None  # first burst event sent → last one's prediction; None: not drained
    burst_delivered: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BurstOutcome:
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Point:
    """One contender (or the broker alone: ``contender == "broker"``) at one load profile."""

    contender: str
    profile: str  # "rate" | "burst"
    offered_eps: float  # as configured (an int in files whose rates were ints)
    offered_achieved_eps: float
    measured_s: float
    sent: int
    delivered: int
    undelivered: int
    duplicates: int
    throughput_eps: float  # delivered ev/s over the measured events' receive span
    latency_ms: LatencySummary  # received − sent
    worker_latency_ms: LatencySummary  # the prediction's own latency_ms
    batch: BatchSummary
    cpu: CpuUsage
    errors: tuple[str, ...]  # the first few
    stopped_cleanly: bool  # False: the worker kept a backlog and was killed
    saturated: bool = False
    saturation_reason: str = ""
    ramp: Ramp | None = None  # None: none recorded (older files)
    p99_by_second_ms: tuple[float, ...] | None = None  # per second sent; None: older files
    model: ModelUse | None = None  # None: no worker (broker alone)
    burst: BurstOutcome | None = None  # burst profile only
    lag_series: tuple[tuple[float, int], ...] | None = None  # (s since load start, lag), burst
    model_version: str | None = None  # rate points: the version the worker served

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Point:
        ramp, by_second, lag = d.get("ramp"), d.get("p99_by_second_ms"), d.get("lag_series")
        return cls(
            **{k: d[k] for k in _POINT_PLAIN},
            latency_ms=LatencySummary.from_json(d["latency_ms"]),
            worker_latency_ms=LatencySummary.from_json(d["worker_latency_ms"]),
            batch=BatchSummary.from_json(d["batch"]),
            cpu=CpuUsage.from_json(d["cpu"]),
            errors=tuple(d["errors"]),
            ramp=Ramp.from_json(ramp) if ramp is not None else None,
            p99_by_second_ms=tuple(by_second) if by_second is not None else None,
            model=ModelUse.from_json(d["model"]) if "model" in d else None,
            burst=BurstOutcome.from_json(d["burst"]) if "burst" in d else None,
            lag_series=tuple((t, lag) for t, lag in lag) if lag is not None else None,
            model_version=d.get("model_version"),
        )

    def to_json(self) -> dict[str, Any]:
        """The point as ``run_point`` has always laid it out."""
        out: dict[str, Any] = {
            "contender": self.contender,
            "profile": self.profile,
            "offered_eps": self.offered_eps,
            "offered_achieved_eps": self.offered_achieved_eps,
            "measured_s": self.measured_s,
            "sent": self.sent,
            "delivered": self.delivered,
            "undelivered": self.undelivered,
        }
        if self.ramp is not None:
            out["ramp"] = self.ramp.to_json()
        out["duplicates"] = self.duplicates
        out["throughput_eps"] = self.throughput_eps
        out["latency_ms"] = self.latency_ms.to_json()
        out["worker_latency_ms"] = self.worker_latency_ms.to_json()
        if self.p99_by_second_ms is not None:
            out["p99_by_second_ms"] = list(self.p99_by_second_ms)
        out["batch"] = self.batch.to_json()
        out["cpu"] = self.cpu.to_json()
        out["errors"] = list(self.errors)
        out["stopped_cleanly"] = self.stopped_cleanly
        if self.model is not None:
            out["model"] = self.model.to_json()
        if self.burst is not None:
            out["burst"] = self.burst.to_json()
        if self.lag_series is not None:
            out["lag_series"] = [[t, lag] for t, lag in self.lag_series]
        out["saturated"] = self.saturated
        out["saturation_reason"] = self.saturation_reason
        if self.model_version is not None:
            out["model_version"] = self.model_version
        return out


_POINT_PLAIN = (
    "contender", "profile", "offered_eps", "offered_achieved_eps", "measured_s", "sent",
    "delivered", "undelivered", "duplicates", "throughput_eps", "stopped_cleanly", "saturated",
    "saturation_reason",
)  # fmt: skip


@dataclass(frozen=True)
class SkippedPoint:
    """A burst a contender did not run: it had saturated below the burst's steady rate."""

    contender: str
    skipped: str  # why
    profile: str = "burst"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SkippedPoint:
        return cls(contender=d["contender"], skipped=d["skipped"], profile=d["profile"])

    def to_json(self) -> dict[str, Any]:
        return {"contender": self.contender, "profile": self.profile, "skipped": self.skipped}


def point_from_json(d: Mapping[str, Any]) -> Point | SkippedPoint:
    return SkippedPoint.from_json(d) if "skipped" in d else Point.from_json(d)
