"""The offline job, stage by stage: data → teacher → transfer set → student → prune → quantize →
artifact → report. Each stage shows a tqdm bar; ``quick=True`` runs the very same code on a tiny
stratified slice with tiny epochs (for tests and CI, well under a minute once the teacher package
is installed).

:func:`run_job` reads as the list of stages; each stage is one function below it, taking what
the earlier stages made. The evaluation is :mod:`streamproc.compress.evaluation`, extra seeds are
:mod:`streamproc.compress.seeds`. The test fixture :func:`streamproc.testing.build_test_artifact`
runs the same student, pruning, quantization and artifact code without a teacher, in seconds.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from streamproc.compress import distill as distill_mod
from streamproc.compress.augment import TransferConfig, resolve_substitutions
from streamproc.compress.config import JobConfig, JobResult
from streamproc.compress.cut import CutConfig, cut_from_teacher
from streamproc.compress.data import LabelledData, load_dataset
from streamproc.compress.evaluation import TrainedModels, evaluate_models, files_size
from streamproc.compress.prune import (
    PruneConfig,
    prune_network,
    score_importance,
    score_width,
)
from streamproc.compress.report import write_report
from streamproc.compress.runtimes import build_variants, compare_runtimes
from streamproc.compress.scoring import score_artifact
from streamproc.compress.seeds import accuracy_only_result
from streamproc.compress.summary import (
    ArtifactInfo,
    JobSummary,
    JobTimes,
    RuntimeComparison,
    ServedScore,
    TransferInfo,
)
from streamproc.compress.targets import Targets, job_verdicts
from streamproc.compress.transfer import TeacherLabelledSet, build_transfer_set
from streamproc.model.artifact import read_manifest, record_evaluation
from streamproc.model.network import StudentNetwork
from streamproc.model.quantize import quantize_int8
from streamproc.model.saving import save_artifact
from streamproc.model.tokenizer import SPECIAL_TOKENS, StudentTokenizer, build_subset_tokenizer
from streamproc.settings import default_cache_dir

__all__ = ["run_job"]

QUICK_DISTILL: dict[str, Any] = dict(vocab_size=1500, epochs=2, augment_per_text=1, layers=2)
QUICK_CUT: dict[str, Any] = dict(layers=(0,), heads=2, ffn=64, score_batches=2, epochs=1)
QUICK_PRUNE = dict(score_batches=4, finetune_epochs=1)
QUICK_TRANSFER_LIMIT = 64  # corpus texts in a --quick run


class _Stages:
    """One tqdm bar per stage, and wall time per stage."""

    def __init__(self, quiet: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.quiet = quiet

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "step") -> Iterator[tqdm]:
        start = time.perf_counter()
        bar = tqdm(
            total=total,
            desc=f"{name:<10}",
            unit=unit,
            disable=self.quiet,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )
        try:
            yield bar
        finally:
            bar.close()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _bar_factory(bar: tqdm) -> Callable[..., Callable[[int], None]]:
    def factory(total: int, *_: Any) -> Callable[[int], None]:
        bar.reset(total=total)
        return bar.update

    return factory


@dataclass(frozen=True)
class _Recipe:
    """The run's stage settings once ``quick`` and the defaults are applied."""

    distill: distill_mod.DistillConfig
    prune: PruneConfig
    teacher: Any  # compress.teacher.TeacherConfig (imported lazily: it pulls transformers)
    transfer: TransferConfig
    cache_dir: Path


def _recipe(config: JobConfig) -> _Recipe:
    from streamproc.compress.teacher import TeacherConfig

    seed = config.teacher_seed_used
    recipe = _Recipe(
        # The run's seed also orders the student's batches (DistillConfig.seed stayed 0 for every
        # --seeds replica before, so replicas differed only in initialisation and augmentations).
        distill=dataclasses.replace(config.distill, seed=config.seed),
        prune=config.prune,
        teacher=config.teacher or TeacherConfig(seed=seed),
        transfer=config.transfer,
        cache_dir=config.cache_dir or default_cache_dir(),
    )
    if not config.quick:
        return recipe
    distill = dataclasses.replace(recipe.distill, **QUICK_DISTILL)
    if distill.cut is not None:
        distill = dataclasses.replace(distill, cut=dataclasses.replace(distill.cut, **QUICK_CUT))
    return dataclasses.replace(
        recipe,
        distill=distill,
        prune=dataclasses.replace(recipe.prune, **QUICK_PRUNE),
        transfer=dataclasses.replace(
            recipe.transfer,
            limit=QUICK_TRANSFER_LIMIT,
            substitutions_per_text=min(
                1, resolve_substitutions(recipe.transfer.substitutions_per_text, config.dataset)
            ),
        ),
        teacher=config.teacher or TeacherConfig(seed=seed, epochs=1, max_train_rows=96),
    )


def run_job(config: JobConfig, *, quiet: bool = False) -> JobResult:
    """Run the whole pipeline; returns the artifact directory, report files and summary."""
    from streamproc.compress.teacher import load_or_train_teacher

    job_start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    recipe = _recipe(config)
    stages = _Stages(quiet)
    try:
        with stages.stage("data", 1) as bar:
            data = _load_data(config, recipe)
            bar.update(1)
        version = (
            config.version or f"{_slug(data.name)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        )
        with stages.stage("teacher") as bar:
            teacher, teacher_meta = load_or_train_teacher(
                data, recipe.teacher, cache_dir=recipe.cache_dir, progress=_bar_factory(bar)
            )
        teacher_folder = recipe.cache_dir / "teachers" / teacher_meta["key"]
        with stages.stage("transfer", unit="text") as bar:
            transfer = build_transfer_set(
                data,
                teacher,
                distill=recipe.distill,
                transfer=recipe.transfer,
                max_tokens=recipe.teacher.max_tokens,
                cache_dir=recipe.cache_dir,
                dataset=config.dataset,
                seed=config.seed,
                teacher_folder=teacher_folder,
                bar=bar,
            )
        torch.set_num_threads(config.student_threads)
        with stages.stage("distill") as bar:
            tokenizer, student, distill_loss = _distill_student(
                config, recipe, data, teacher, transfer, bar
            )
        with stages.stage("prune") as bar:
            pruned, prune_loss = _prune_student(config, recipe, student, tokenizer, transfer, bar)
        with stages.stage("quantize", 1) as bar:
            quantized = quantize_int8(pruned)
            bar.update(1)
        with stages.stage("artifact", 1) as bar:
            metadata = _artifact_metadata(
                config, recipe, data, teacher_meta, transfer, distill_loss, prune_loss
            )
            artifact_dir = _save_artifact(
                config, data, tokenizer, pruned, quantized, version, metadata
            )
            bar.update(1)
        if config.accuracy_only:
            return accuracy_only_result(
                config,
                data,
                tokenizer,
                student,
                pruned,
                artifact_dir,
                teacher_meta,
                stages.seconds,
            )

        with stages.stage("report", unit="call") as bar:
            test_lengths = [int(m.sum()) for m in tokenizer.encode_batch(data.test_texts)[1]]
            trained = TrainedModels(
                data=data,
                teacher=teacher,
                teacher_meta=teacher_meta,
                teacher_folder=teacher_folder,
                tcfg=recipe.teacher,
                test_teacher=transfer.test_teacher,
                tokenizer=tokenizer,
                student=student,
                pruned=pruned,
                quantized=quantized,
                artifact_dir=artifact_dir,
                avg_tokens=statistics.fmean(test_lengths or [1]),
                quick=config.quick,
                dcfg=recipe.distill,
                pcfg=recipe.prune,
                transfer_size=len(transfer.texts),
            )
            evaluation = evaluate_models(trained, bar)
        with stages.stage("runtimes", unit="call") as bar:
            runtimes = _compare_runtimes(config, trained, transfer.texts, bar)
        summary = JobSummary.from_evaluation(
            evaluation,
            runtimes=runtimes,
            job=_job_times(config, stages, teacher_meta, time.perf_counter() - job_start),
            transfer=TransferInfo(
                texts=len(transfer.texts),
                augmented=transfer.augmented,
                substituted=transfer.substituted,
                corpus=transfer.corpus or "",
                corpus_texts=len(transfer.external),
                corpus_license=transfer.external_meta.get("license", ""),
            ),
            served=_score_served(artifact_dir, data, evaluation.models["teacher"].accuracy),
            artifact=ArtifactInfo(
                version=version,
                path=str(artifact_dir),
                files_summary=f"{files_size(artifact_dir)} on disk (weights + tokenizer + "
                "manifest)",
            ),
            rebuild_command=config.rebuild_command or _default_rebuild(config),
        )
        summary = dataclasses.replace(summary, targets=job_verdicts(summary, Targets()))
        paths = write_report(summary, config.report_dir_for(artifact_dir))
        return JobResult(artifact_dir, paths, summary)
    finally:
        torch.set_num_threads(previous_threads)


# --- the stages, in order ----------------------------------------------------------------------
def _load_data(config: JobConfig, recipe: _Recipe) -> LabelledData:
    data = load_dataset(config.dataset, cache_dir=recipe.cache_dir, seed=config.seed)
    return data.subset(160, 48, seed=config.seed) if config.quick else data


def _distill_student(
    config: JobConfig,
    recipe: _Recipe,
    data: LabelledData,
    teacher: Any,
    transfer: TeacherLabelledSet,
    bar: tqdm,
) -> tuple[StudentTokenizer, StudentNetwork, list[float]]:
    """The student's tokenizer (a subset of the teacher's vocabulary), the student with the
    teacher's embeddings projected in, distilled on the transfer set; its loss per epoch."""
    from streamproc.compress.teacher import teacher_dir

    dcfg = recipe.distill
    raw_tok, student_vocab = build_subset_tokenizer(
        (teacher_dir() / "tokenizer.json").read_text(encoding="utf-8"),
        transfer.own,  # the data set's own texts pick the vocabulary, as before the corpus
        dcfg.vocab_size,
    )
    tokenizer = StudentTokenizer(raw_tok, dcfg.max_tokens)
    torch.manual_seed(config.seed)
    if dcfg.cut is not None:
        cut = dcfg.cut
        return _cut_student(config, dcfg, cut, teacher, transfer, tokenizer, student_vocab, bar)
    student = StudentNetwork(dcfg.student_config(tokenizer.vocab_size, data.num_labels))
    embeddings = teacher.encoder.embeddings
    distill_mod.init_from_teacher_embeddings(
        student,
        student_vocab,
        teacher.tokenizer.get_vocab(),
        embeddings.word_embeddings.weight.detach(),
        embeddings.position_embeddings.weight.detach(),
    )
    return tokenizer, student, _distil(student, tokenizer, transfer, dcfg, bar)


def _distil(
    student: StudentNetwork,
    tokenizer: StudentTokenizer,
    transfer: TeacherLabelledSet,
    dcfg: distill_mod.DistillConfig,
    bar: tqdm,
    **overrides: Any,
) -> list[float]:
    """:func:`distill_mod.distill` on the whole transfer set (``overrides``: epochs, lr, …)."""
    return distill_mod.distill(
        student,
        tokenizer,
        transfer.texts,
        transfer.soft,
        transfer.hard,
        dcfg,
        teacher_features=transfer.features,
        progress=_bar_factory(bar),
        **overrides,
    )


def _cut_student(
    config: JobConfig,
    dcfg: distill_mod.DistillConfig,
    cut: CutConfig,
    teacher: Any,
    transfer: TeacherLabelledSet,
    tokenizer: StudentTokenizer,
    student_vocab: list[str],
    bar: tqdm,
) -> tuple[StudentTokenizer, StudentNetwork, list[float]]:
    """The student cut from the teacher (:mod:`streamproc.compress.cut`), then distilled."""
    bar.reset(total=(1 if cut.width is None else 2) * cut.score_batches)
    student, selection = cut_from_teacher(
        teacher,
        student_vocab,
        tokenizer,
        transfer.texts,
        transfer.soft,
        cut,
        max_tokens=dcfg.max_tokens,
        pad_id=SPECIAL_TOKENS.index("[PAD]"),
        temperature=dcfg.temperature,
        batch_size=dcfg.batch_size,
        dropout=dcfg.dropout,
        seed=config.seed,
        progress=bar.update,
    )
    history = _distil(
        student, tokenizer, transfer, dcfg, bar, epochs=cut.epochs, lr=cut.lr, feature_map=selection
    )
    return tokenizer, student, history


def _prune_student(
    config: JobConfig,
    recipe: _Recipe,
    student: StudentNetwork,
    tokenizer: StudentTokenizer,
    transfer: TeacherLabelledSet,
    bar: tqdm,
) -> tuple[StudentNetwork, list[float]]:
    """Structured pruning (whole heads and FFN neurons, and the residual width of a post-LN
    student wider than ``PruneConfig.width``) and a brief distillation to recover."""
    dcfg, pcfg = recipe.distill, recipe.prune
    c = student.config  # a pre-LN student keeps its width (its stream is not LN outputs)
    narrow = pcfg.width is not None and c.norm == "post" and pcfg.width < c.dim
    bar.reset(total=(2 if narrow else 1) * pcfg.score_batches)
    scoring: dict[str, Any] = dict(
        temperature=dcfg.temperature,
        batch_size=dcfg.batch_size,
        max_batches=pcfg.score_batches,
        seed=config.seed,
        progress=bar.update,
    )
    importance = score_importance(student, tokenizer, transfer.texts, transfer.soft, **scoring)
    if narrow:
        width = score_width(student, tokenizer, transfer.texts, transfer.soft, **scoring)
        importance = dataclasses.replace(importance, width=width)
    pruned = prune_network(student, importance, pcfg)
    history = _distil(
        pruned, tokenizer, transfer, dcfg, bar, epochs=pcfg.finetune_epochs, lr=pcfg.finetune_lr
    )
    return pruned, history


def _artifact_metadata(
    config: JobConfig,
    recipe: _Recipe,
    data: LabelledData,
    teacher_meta: dict[str, Any],
    transfer: TeacherLabelledSet,
    distill_loss: list[float],
    prune_loss: list[float],
) -> dict[str, Any]:
    """The manifest's ``dataset`` and ``training`` sections: how the artifact was made."""
    return {
        "dataset": {
            "name": data.name,
            "labels": list(data.labels),
            "train_rows": len(data.train_texts),
            "test_rows": len(data.test_texts),
            **data.meta,
        },
        "training": {
            "seed": config.seed,
            "quick": config.quick,
            "teacher": {k: v for k, v in teacher_meta.items() if k != "cached"},
            "distill": dataclasses.asdict(recipe.distill),
            "prune": dataclasses.asdict(recipe.prune),
            "transfer": {
                **dataclasses.asdict(recipe.transfer),
                "substituted_texts": transfer.substituted,
                "corpus_used": transfer.corpus,
                "corpus_texts": len(transfer.external),
                "corpus_source": transfer.external_meta,  # files + sha256, license (CC-BY 2.0 FR)
            },
            "transfer_texts": len(transfer.texts),
            "distill_loss": [round(x, 4) for x in distill_loss],
            "prune_finetune_loss": [round(x, 4) for x in prune_loss],
        },
    }


def _save_artifact(
    config: JobConfig,
    data: LabelledData,
    tokenizer: StudentTokenizer,
    pruned: StudentNetwork,
    quantized: torch.nn.Module,
    version: str,
    metadata: dict[str, Any],
) -> Path:
    out_dir = Path(config.out_dir)
    if out_dir.exists() and (out_dir / "manifest.json").is_file():
        shutil.rmtree(out_dir)  # rebuilding the same output directory replaces it
    return save_artifact(
        out_dir,
        model=quantized,
        config=pruned.config,
        tokenizer=tokenizer,
        labels=data.labels,
        version=version,
        metadata=metadata,
        runtime="onnxruntime",  # served by ONNX Runtime: see streamproc/model/onnx.py
    )


def _compare_runtimes(
    config: JobConfig, run: TrainedModels, transfer_texts: list[str], bar: tqdm
) -> RuntimeComparison:
    """The student (and teacher) in torch and ONNX Runtime, fp32 and int8, timed in one run."""
    repeats = {1: 10, 64: 3} if config.quick else {1: 200, 64: 40}
    calibration = random.Random(config.seed).sample(transfer_texts, min(512, len(transfer_texts)))
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(
            teacher=run.teacher,
            teacher_encode=lambda texts: run.teacher.encode(texts, run.tcfg.max_tokens),
            pruned=run.pruned,
            quantized=run.quantized,
            served_onnx=run.artifact_dir / read_manifest(run.artifact_dir)["runtime"]["file"],
            tokenizer=run.tokenizer,
            calibration_texts=calibration,  # transfer texts, never test texts
            work_dir=Path(tmp),
            threads=config.runtime_threads,
            served_threads=config.served_threads,
        )
        bar.reset(total=sum(repeats.values()))
        return compare_runtimes(
            variants,
            run.data.test_texts,
            run.data.test_labels,
            threads=config.runtime_threads,
            repeats=repeats,
            progress=bar.update,
        )


def _job_times(
    config: JobConfig, stages: _Stages, teacher_meta: dict[str, Any], seconds: float
) -> JobTimes:
    """Wall time per stage and in all; a cached teacher's fine-tuning time is added back."""
    cached = bool(teacher_meta.get("cached"))
    if cached:
        seconds += float(teacher_meta["train_seconds"])
    return JobTimes(
        total_seconds=round(seconds, 1),
        stage_seconds={k: round(v, 1) for k, v in stages.seconds.items()},
        teacher_cached=cached,
        teacher_note=(
            "; the teacher came from the cache — its fine-tuning took "
            f"{teacher_meta['train_seconds']:.0f} s "
            "when it was trained, which is added to the total"
            if cached
            else ""
        ),
        quick=config.quick,
    )


def _score_served(artifact_dir: Path, data: LabelledData, teacher_accuracy: float) -> ServedScore:
    """What a worker serves: the artifact in its own runtime, through predict_batch; the score is
    recorded in the artifact's manifest too."""
    served = score_artifact(artifact_dir, data)
    served["teacher_accuracy"] = teacher_accuracy
    record_evaluation(artifact_dir, served)
    precision = read_manifest(artifact_dir)["runtime"].get("precision", "")
    return ServedScore(**served, precision=precision)


def _default_rebuild(config: JobConfig) -> str:
    parts = ["streamproc distill", f"--dataset {config.dataset}", f"--out {config.out_dir}"]
    if config.report_dir:
        parts.append(f"--report-dir {config.report_dir}")
    if config.version:
        parts.append(f"--version {config.version}")
    if config.seed:
        parts.append(f"--seed {config.seed}")
    if config.quick:
        parts.append("--quick")
    return " ".join(parts)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-.") or "model"
