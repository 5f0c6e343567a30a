"""``streamproc distill``: run the offline compression job from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from streamproc.compress.data import BUILTIN_DATASETS

__all__ = ["distill"]


@click.command("distill")
@click.option(
    "--dataset",
    default="trec",
    show_default=True,
    metavar="NAME|PATH",
    help=f"built-in data set ({', '.join(sorted(BUILTIN_DATASETS))}) or a JSONL/CSV/Parquet file "
    "with 'text' and 'label' columns",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="artifact directory to write (default: artifacts/<dataset>)",
)
@click.option(
    "--version", default=None, help="artifact version name (default: <dataset>-<UTC timestamp>)"
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="where report.md/.json/.png go (default: <out>-report beside the artifact)",
)
@click.option(
    "--quick", is_flag=True, help="same pipeline on a tiny slice with tiny epochs (tests/CI)"
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="torch threads for training (latency is measured at 1 and 2 threads regardless)",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="data set wheels and fine-tuned teachers (default: $STREAMPROC_CACHE_DIR or "
    "~/.cache/streamproc)",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="train the student with this many seeds (SEED, SEED+1, ...) and judge accuracy by their "
    "median; the artifact and the speed figures are SEED's",
)
@click.option(
    "--teacher-seed",
    type=int,
    default=None,
    help="use the fine-tuned teacher of this seed (default: --seed)",
)
@click.option(
    "--accuracy-only",
    is_flag=True,
    help="train, prune, quantize and score only; writes seed.json, no latency or report (what "
    "--seeds runs for the other seeds)",
)
@click.option("--quiet", is_flag=True, help="no progress bars")
def distill(
    dataset: str,
    out_dir: Path | None,
    version: str | None,
    report_dir: Path | None,
    quick: bool,
    seed: int,
    threads: int,
    cache_dir: Path | None,
    seeds: int,
    teacher_seed: int | None,
    accuracy_only: bool,
    quiet: bool,
) -> None:
    """Fine-tune the teacher, distil a student, prune it, quantize it to int8, write an artifact
    and a report (teacher vs distilled vs pruned vs quantized on the held-out test split)."""
    from streamproc.compress.config import JobConfig
    from streamproc.compress.job import run_job
    from streamproc.compress.seeds import run_seed_replicas

    name = Path(dataset).stem if dataset not in BUILTIN_DATASETS else dataset
    out = out_dir or Path("artifacts") / name
    config = JobConfig(
        dataset=dataset,
        out_dir=out,
        version=version,
        report_dir=report_dir,
        quick=quick,
        seed=seed,
        threads=threads,
        cache_dir=cache_dir,
        teacher_seed=teacher_seed,
        accuracy_only=accuracy_only,
    )
    result = run_job(config, quiet=quiet)
    if result.seed is not None:  # --accuracy-only
        s = result.seed
        click.echo(
            f"seed {s.seed} (teacher of seed {s.teacher_seed}): distilled "
            f"{s.distilled:.2%}, pruned {s.pruned:.2%}, served {s.served:.2%} "
            f"in {s.minutes:.1f} min -> {result.report_paths['seed']}"
        )
        return
    if seeds > 1:
        result = run_seed_replicas(result, config, [seed + k for k in range(1, seeds)], quiet=quiet)
    summary = result.summary
    assert summary is not None
    q, t = summary.models["quantized"], summary.models["teacher"]
    met = sum(r.met for r in summary.targets)
    click.echo(f"artifact: {result.artifact_dir} (version {summary.artifact.version})")
    click.echo(f"report:   {result.report_paths['md']}")
    click.echo(
        f"teacher {t.accuracy:.2%} -> quantized student {q.accuracy:.2%} "
        f"({t.params / max(1, q.params):.1f}x fewer params); "
        f"{met}/{len(summary.targets)} targets met in "
        f"{summary.job.total_seconds / 60:.1f} min"
    )
