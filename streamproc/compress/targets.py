"""The bars a compressed model must reach (:class:`Targets`) and the verdict on each, read from
the job's summary (:func:`job_verdicts`); the speed bars of the runtime comparison come from
:func:`~streamproc.compress.runtimes.runtime_targets`.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamproc.compress.runtimes import runtime_targets
from streamproc.compress.summary import JobSummary, TargetVerdict

__all__ = ["Targets", "job_verdicts"]


@dataclass(frozen=True)
class Targets:
    """What the job's report judges (the bars a compressed model must reach)."""

    teacher_accuracy: float = 0.96
    student_relative_accuracy: float = 0.97
    student_absolute_accuracy: float = 0.94  # above Kim 2014's CNN (93.6%) on TREC-6
    param_reduction: float = 10.0
    latency_reduction: float = 10.0
    prune_flops_cut: float = 0.30
    prune_max_drop_pts: float = 0.5
    quant_speedup: float = 1.5
    quant_max_drop_pts: float = 0.5
    job_minutes: float = 30.0
    batch_disagreement: float = 0.005


def job_verdicts(summary: JobSummary, targets: Targets) -> tuple[TargetVerdict, ...]:
    """Each target with its measured value and whether it was met."""
    m = summary.models
    t, d, p, q = m["teacher"], m["distilled"], m["pruned"], m["quantized"]
    lat = summary.latency
    runtimes = summary.runtimes  # reports from before the runtime comparison lack it
    # The accuracy a worker gets (the artifact in its own runtime; older reports: torch int8),
    # the median over the seeds when there are several.
    served_accuracy = summary.judged_accuracy
    who = "served student" if summary.served is not None else "quantized"
    seeds = summary.seeds
    of_seeds = ""
    if len(seeds) > 1:  # judged by the median over the seeds, each one listed
        of_seeds = (
            f" (median of {len(seeds)} seeds: " + " / ".join(f"{s.served:.1%}" for s in seeds) + ")"
        )
    rows: list[TargetVerdict] = []

    def add(name: str, measured: str, met: bool) -> None:
        rows.append(TargetVerdict(name, measured, bool(met)))

    add(
        f"teacher accuracy ≥ {targets.teacher_accuracy:.0%}",
        f"{t.accuracy:.2%}",
        t.accuracy >= targets.teacher_accuracy,
    )
    rel = served_accuracy / t.accuracy if t.accuracy else 0.0
    add(
        f"{who} ≥ {targets.student_relative_accuracy:.0%} of teacher accuracy",
        f"{rel:.2%}{of_seeds and ' (median seed)'}",
        rel >= targets.student_relative_accuracy,
    )
    add(
        f"{who} accuracy ≥ {targets.student_absolute_accuracy:.1%}",
        f"{served_accuracy:.2%}{of_seeds}",
        served_accuracy >= targets.student_absolute_accuracy,
    )
    ratio = t.params / max(1, q.params)
    add(
        f"quantized ≥ {targets.param_reduction:.0f}× fewer parameters",
        f"{ratio:.1f}×",
        ratio >= targets.param_reduction,
    )
    for batch in (1, 64) if runtimes is None else ():
        key = f"b{batch}_t2"
        speed = lat["teacher"][key].median_ms / lat["quantized"][key].median_ms
        add(
            f"quantized ≥ {targets.latency_reduction:.0f}× lower latency than teacher, "
            f"batch {batch}, "
            "2 threads (median)",
            f"{speed:.1f}×",
            speed >= targets.latency_reduction,
        )
    cut = 1 - (p.flops or 0) / (d.flops or 1)
    drop = (d.accuracy - p.accuracy) * 100
    add(
        f"pruning removes ≥ {targets.prune_flops_cut:.0%} of student FLOPs",
        f"{cut:.1%}",
        cut >= targets.prune_flops_cut,
    )
    add(
        f"pruning costs ≤ {targets.prune_max_drop_pts} pts accuracy",
        f"{drop:+.1f} pts",
        drop <= targets.prune_max_drop_pts + 1e-9,
    )
    if runtimes is not None:  # speed judged in the served runtime, same-runtime ratios
        rows.extend(
            runtime_targets(
                runtimes,
                latency_reduction=targets.latency_reduction,
                quant_speedup=targets.quant_speedup,
                max_drop=targets.quant_max_drop_pts,
            )
        )
    for batch in (1, 64) if runtimes is None else ():
        key = f"b{batch}_t2"
        speed = lat["pruned"][key].median_ms / lat["quantized"][key].median_ms
        add(
            f"quantization ≥ {targets.quant_speedup}× over fp32 (pruned) student, batch {batch}, "
            "2 threads",
            f"{speed:.2f}×",
            speed >= targets.quant_speedup,
        )
    qdrop = (p.accuracy - q.accuracy) * 100
    add(
        f"quantization costs ≤ {targets.quant_max_drop_pts} pts accuracy",
        f"{qdrop:+.1f} pts",
        qdrop <= targets.quant_max_drop_pts + 1e-9,
    )
    # What users get: the served graph through predict_batch (older reports: torch int8).
    served_dis = summary.served.batch_disagreement if summary.served else None
    dis = summary.batch_disagreement["quantized"] if served_dis is None else served_dis
    add(
        f"{'served ' if served_dis is not None else ''}int8 labels batch 1 vs batch 64 disagree "
        f"< {targets.batch_disagreement:.1%}",
        f"{dis:.2%}",
        dis < targets.batch_disagreement,
    )
    minutes = summary.job.total_seconds / 60
    add(
        f"whole job < {targets.job_minutes:.0f} min on this machine",
        f"{minutes:.1f} min",
        minutes < targets.job_minutes,
    )
    return tuple(rows)
