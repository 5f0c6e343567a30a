"""The offline job, stage by stage: data → teacher → transfer set → student → prune → quantize →
artifact → report. Each stage shows a tqdm bar; ``quick=True`` runs the very same code on a tiny
stratified slice with tiny epochs (for tests and CI, well under a minute once the teacher package
is installed).

The test fixture :func:`streamproc.testing.build_test_artifact` runs the same student, pruning,
quantization and artifact code without a teacher, in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from streamproc.compress import distill as distill_mod
from streamproc.compress.augment import TransferConfig
from streamproc.compress.data import (
    LabelledData,
    load_dataset,
    load_transfer_set,
    resolve_transfer_corpus,
)
from streamproc.compress.prune import PruneConfig, prune_network, score_importance
from streamproc.compress.report import (
    ModelUnderTest,
    Targets,
    accuracy,
    evaluate_targets,
    machine_description,
    macro_f1,
    measure_latency,
    predict,
    score_classifier,
    write_report,
)
from streamproc.compress.runtimes import build_variants, compare_runtimes
from streamproc.errors import ModelError
from streamproc.model.artifact import (
    WEIGHTS,
    read_manifest,
    record_evaluation,
    save_artifact,
)
from streamproc.model.network import StudentConfig, StudentNetwork, count_flops, count_params
from streamproc.model.quantize import quantize_int8
from streamproc.model.runtime import load_classifier
from streamproc.model.tokenizer import StudentTokenizer, build_subset_tokenizer
from streamproc.settings import default_cache_dir

__all__ = ["JobConfig", "JobResult", "run_job", "run_seed_replicas"]


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
    cache_dir: Path | None = None  # default: default_cache_dir()
    teacher: Any = None  # TeacherConfig; None = defaults (or the quick recipe)
    teacher_seed: int | None = None  # None: ``seed``; another run's seed reuses its cached teacher
    distill: distill_mod.DistillConfig = field(default_factory=distill_mod.DistillConfig)
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
    artifact_dir: Path
    report_paths: dict[str, Path]
    summary: dict[str, Any]


QUICK_DISTILL = dict(vocab_size=1500, epochs=2, augment_per_text=1, layers=2)
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


def run_job(config: JobConfig, *, quiet: bool = False) -> JobResult:
    """Run the whole pipeline; returns the artifact directory, report files and summary."""
    from streamproc.compress.teacher import (
        TeacherConfig,
        load_or_train_teacher,
        teacher_dir,
        teacher_logits,
        teacher_outputs,
    )

    job_start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    cache_dir = config.cache_dir or default_cache_dir()
    dcfg = config.distill
    pcfg = config.prune
    teacher_seed = config.teacher_seed_used
    tcfg = config.teacher or TeacherConfig(seed=teacher_seed)
    xcfg = config.transfer
    if config.quick:
        dcfg = dataclasses.replace(dcfg, **QUICK_DISTILL)
        pcfg = dataclasses.replace(pcfg, **QUICK_PRUNE)
        xcfg = dataclasses.replace(xcfg, limit=QUICK_TRANSFER_LIMIT)
        if config.teacher is None:
            tcfg = TeacherConfig(seed=teacher_seed, epochs=1, max_train_rows=96)
    stages = _Stages(quiet)
    try:
        # 1. data ---------------------------------------------------------------------------
        with stages.stage("data", 1) as bar:
            data = load_dataset(config.dataset, cache_dir=cache_dir, seed=config.seed)
            if config.quick:
                data = data.subset(160, 48, seed=config.seed)
            bar.update(1)
        version = (
            config.version or f"{_slug(data.name)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        )

        # 2. teacher ------------------------------------------------------------------------
        with stages.stage("teacher") as bar:
            teacher, teacher_meta = load_or_train_teacher(
                data, tcfg, cache_dir=cache_dir, progress=_bar_factory(bar)
            )
        teacher_folder = cache_dir / "teachers" / teacher_meta["key"]

        # 3. transfer set: train rows + teacher-labelled augmentations + corpus texts --------
        with stages.stage("transfer", unit="text") as bar:
            teacher_vocab = teacher.tokenizer.get_vocab()
            word_emb = teacher.encoder.embeddings.word_embeddings.weight.detach()
            words = {w.lower() for t in data.train_texts for w in t.split()}
            neighbours = distill_mod.embedding_neighbours(
                sorted(words), teacher_vocab, word_emb, dcfg.neighbours
            )
            augmented = distill_mod.augment_texts(
                data.train_texts,
                neighbours,
                per_text=dcfg.augment_per_text,
                replace_prob=dcfg.replace_prob,
                drop_prob=dcfg.drop_prob,
                seed=config.seed,
                keep_question_words=xcfg.keep_question_words,
            )
            own = list(data.train_texts) + augmented
            corpus = resolve_transfer_corpus(xcfg.corpus, config.dataset)
            external: list[str] = []
            external_meta: dict[str, Any] = {}
            if corpus is not None:
                extra = load_transfer_set(
                    corpus,
                    cache_dir=cache_dir,
                    # Never a test text (Tatoeba holds some TREC test questions); train rows are
                    # in the transfer set already.
                    exclude=[*data.test_texts, *data.train_texts],
                    limit=xcfg.limit,
                    seed=config.seed,
                    top_up=xcfg.top_up,
                )
                external, external_meta = extra.texts, extra.meta
            transfer = own + external
            hard = list(data.train_labels) + [-1] * (len(augmented) + len(external))
            bar.reset(total=len(transfer) + len(data.test_texts))
            soft, soft_features = teacher_outputs(
                teacher,
                own,
                max_tokens=tcfg.max_tokens,
                cache_file=teacher_folder / "transfer.npy",
                progress=bar.update,
            )
            if external:  # its own cache: changing the augmentation does not relabel the corpus
                # Labelled in sorted order: every seed's shuffle of the same texts hits the cache.
                order = sorted(range(len(external)), key=external.__getitem__)
                ext_soft, ext_features = teacher_outputs(
                    teacher,
                    [external[i] for i in order],
                    max_tokens=tcfg.max_tokens,
                    cache_file=teacher_folder / f"transfer-{corpus}.npy",
                    progress=bar.update,
                )
                back = np.argsort(order)  # row of each external text in the sorted labelling
                ext_soft, ext_features = ext_soft[back], ext_features[back]
                soft = np.concatenate([soft, ext_soft])
                soft_features = np.concatenate([soft_features, ext_features])
            test_teacher = teacher_logits(
                teacher,
                data.test_texts,
                max_tokens=tcfg.max_tokens,
                cache_file=teacher_folder / "test.npy",
                progress=bar.update,
            )

        # 4. student: tokenizer + distillation ----------------------------------------------
        torch.set_num_threads(config.student_threads)
        with stages.stage("distill") as bar:
            raw_tok, student_vocab = build_subset_tokenizer(
                (teacher_dir() / "tokenizer.json").read_text(encoding="utf-8"),
                own,  # the data set's own texts pick the vocabulary, as before the corpus
                dcfg.vocab_size,
            )
            tokenizer = StudentTokenizer(raw_tok, dcfg.max_tokens)
            student_config = dcfg.student_config(tokenizer.vocab_size, data.num_labels)
            torch.manual_seed(config.seed)
            student = StudentNetwork(student_config)
            distill_mod.init_from_teacher_embeddings(
                student,
                student_vocab,
                teacher_vocab,
                word_emb,
                teacher.encoder.embeddings.position_embeddings.weight.detach(),
            )
            distill_history = distill_mod.distill(
                student,
                tokenizer,
                transfer,
                soft,
                hard,
                dcfg,
                teacher_features=soft_features,
                progress=_bar_factory(bar),
            )

        # 5. structured pruning + brief recovery ----------------------------------------------
        with stages.stage("prune") as bar:
            bar.reset(total=pcfg.score_batches)
            importance = score_importance(
                student,
                tokenizer,
                transfer,
                soft,
                temperature=dcfg.temperature,
                batch_size=dcfg.batch_size,
                max_batches=pcfg.score_batches,
                seed=config.seed,
                progress=bar.update,
            )
            pruned = prune_network(student, importance, pcfg)
            prune_history = distill_mod.distill(
                pruned,
                tokenizer,
                transfer,
                soft,
                hard,
                dcfg,
                epochs=pcfg.finetune_epochs,
                lr=pcfg.finetune_lr,
                teacher_features=soft_features,
                progress=_bar_factory(bar),
            )

        # 6. quantization ---------------------------------------------------------------------
        with stages.stage("quantize", 1) as bar:
            quantized = quantize_int8(pruned)
            bar.update(1)

        # 7. artifact -------------------------------------------------------------------------
        with stages.stage("artifact", 1) as bar:
            test_lengths = [int(m.sum()) for m in tokenizer.encode_batch(data.test_texts)[1]] or [1]
            avg_tokens = statistics.fmean(test_lengths)
            metadata = {
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
                    "distill": dataclasses.asdict(dcfg),
                    "prune": dataclasses.asdict(pcfg),
                    "transfer": {
                        **dataclasses.asdict(xcfg),
                        "corpus_used": corpus,
                        "corpus_texts": len(external),
                        "corpus_source": external_meta,  # files + sha256, license (CC-BY 2.0 FR)
                    },
                    "transfer_texts": len(transfer),
                    "distill_loss": [round(x, 4) for x in distill_history],
                    "prune_finetune_loss": [round(x, 4) for x in prune_history],
                },
            }
            out_dir = Path(config.out_dir)
            if out_dir.exists() and (out_dir / "manifest.json").is_file():
                shutil.rmtree(out_dir)  # rebuilding the same output directory replaces it
            artifact_dir = save_artifact(
                out_dir,
                model=quantized,
                config=pruned.config,
                tokenizer=tokenizer,
                labels=data.labels,
                version=version,
                metadata=metadata,
                runtime="onnxruntime",  # served by ONNX Runtime: see streamproc/model/onnx.py
            )
            bar.update(1)

        if config.accuracy_only:
            return _seed_result(
                config, data, tokenizer, student, pruned, artifact_dir, teacher_meta, stages
            )

        # 8. report ---------------------------------------------------------------------------
        with stages.stage("report", unit="call") as bar:
            trained = _Trained(
                data=data,
                teacher=teacher,
                teacher_meta=teacher_meta,
                teacher_folder=teacher_folder,
                tcfg=tcfg,
                test_teacher=test_teacher,
                tokenizer=tokenizer,
                student=student,
                pruned=pruned,
                quantized=quantized,
                artifact_dir=artifact_dir,
                avg_tokens=avg_tokens,
                quick=config.quick,
                dcfg=dcfg,
                pcfg=pcfg,
                transfer_size=len(transfer),
            )
            summary = _evaluate(trained, bar)
        # 9. runtimes: the student (and teacher) in torch and ONNX Runtime, fp32 and int8 -------
        with stages.stage("runtimes", unit="call") as bar, tempfile.TemporaryDirectory() as tmp:
            repeats = {1: 10, 64: 3} if config.quick else {1: 200, 64: 40}
            calibration = random.Random(config.seed).sample(transfer, min(512, len(transfer)))
            variants = build_variants(
                teacher=teacher,
                teacher_encode=lambda texts: teacher.encode(texts, tcfg.max_tokens),
                pruned=pruned,
                quantized=quantized,
                served_onnx=artifact_dir / read_manifest(artifact_dir)["runtime"]["file"],
                tokenizer=tokenizer,
                calibration_texts=calibration,  # transfer texts, never test texts
                work_dir=Path(tmp),
                threads=config.runtime_threads,
            )
            bar.reset(total=sum(repeats.values()))
            summary["runtimes"] = compare_runtimes(
                variants,
                data.test_texts,
                data.test_labels,
                threads=config.runtime_threads,
                repeats=repeats,
                progress=bar.update,
            )
        total = time.perf_counter() - job_start
        summary["job"] = {
            "total_seconds": round(total, 1),
            "stage_seconds": {k: round(v, 1) for k, v in stages.seconds.items()},
            "teacher_cached": bool(teacher_meta.get("cached")),
            "teacher_note": (
                "; the teacher came from the cache — its fine-tuning took "
                f"{teacher_meta['train_seconds']:.0f} s "
                "when it was trained, which is added to the total"
                if teacher_meta.get("cached")
                else ""
            ),
            "quick": config.quick,
        }
        if teacher_meta.get("cached"):
            summary["job"]["total_seconds"] = round(total + float(teacher_meta["train_seconds"]), 1)
        summary["transfer"] = {
            "texts": len(transfer),
            "augmented": len(augmented),
            "corpus": corpus or "",
            "corpus_texts": len(external),
            "corpus_license": external_meta.get("license", ""),
        }
        # What a worker serves: the artifact in its own runtime, through predict_batch.
        served = score_classifier(
            load_classifier(artifact_dir, num_threads=1),
            data.test_texts,
            data.test_labels,
            data.labels,
        )
        served["teacher_accuracy"] = summary["models"]["teacher"]["accuracy"]
        record_evaluation(artifact_dir, served)
        summary["served"] = {
            **served,
            "precision": read_manifest(artifact_dir)["runtime"].get("precision", ""),
        }
        summary["artifact"] = {
            "version": version,
            "path": str(artifact_dir),
            "files_summary": f"{_fmt_size(artifact_dir)} on disk (weights + tokenizer + manifest)",
        }
        summary["rebuild_command"] = config.rebuild_command or _default_rebuild(config)
        summary["targets"] = evaluate_targets(summary, Targets())
        report_dir = config.report_dir_for(artifact_dir)
        paths = write_report(summary, report_dir)
        return JobResult(artifact_dir, paths, summary)
    finally:
        torch.set_num_threads(previous_threads)


def _seed_result(
    config: JobConfig,
    data: LabelledData,
    tokenizer: StudentTokenizer,
    student: StudentNetwork,
    pruned: StudentNetwork,
    artifact_dir: Path,
    teacher_meta: dict[str, Any],
    stages: _Stages,
) -> JobResult:
    """An ``accuracy_only`` run's answer: each stage's test accuracy, the served one included."""
    served = score_classifier(
        load_classifier(artifact_dir, num_threads=1),
        data.test_texts,
        data.test_labels,
        data.labels,
    )
    summary: dict[str, Any] = {
        "seed": config.seed,
        "teacher_seed": teacher_meta["config"]["seed"],
        "distilled": distill_mod.evaluate(
            distill_mod.predict_logits(student, tokenizer, data.test_texts), data.test_labels
        ),
        "pruned": distill_mod.evaluate(
            distill_mod.predict_logits(pruned, tokenizer, data.test_texts), data.test_labels
        ),
        "served": served["accuracy"],
        "served_macro_f1": served["macro_f1"],
        "minutes": round(sum(stages.seconds.values()) / 60, 1),
    }
    report_dir = config.report_dir_for(artifact_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "seed.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return JobResult(artifact_dir, {"seed": path}, summary)


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
        json.loads((report_dir / "seeds" / f"seed-{seed}" / "seed.json").read_text())
        for seed in seeds
    ]
    summary = dict(result.summary)
    m = summary["models"]
    summary["seeds"] = [
        {
            "seed": config.seed,
            "teacher_seed": config.teacher_seed_used,
            "distilled": m["distilled"]["accuracy"],
            "pruned": m["pruned"]["accuracy"],
            "served": summary["served"]["accuracy"],
            "served_macro_f1": summary["served"]["macro_f1"],
            "minutes": round(summary["job"]["total_seconds"] / 60, 1),
        },
        *replicas,
    ]
    summary["rebuild_command"] = f"{summary['rebuild_command']} --seeds {len(seeds) + 1}"
    summary["targets"] = evaluate_targets(summary, Targets())
    paths = write_report(summary, report_dir)
    return JobResult(result.artifact_dir, paths, summary)


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


def _fmt_size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return f"{total / 1e6:.2f} MB"


def _weights_size(
    model: torch.nn.Module, cfg: StudentConfig, tokenizer: StudentTokenizer, labels: tuple[str, ...]
) -> int:
    """Bytes of the weights file this model would have as an artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        out = save_artifact(
            Path(tmp) / "a",
            model=model,
            config=cfg,
            tokenizer=tokenizer,
            labels=labels,
            version="size-probe",
        )
        return (out / WEIGHTS).stat().st_size


@dataclass(frozen=True)
class _Trained:
    """What the stages before the report produced: the report's one input."""

    data: LabelledData
    teacher: Any  # compress.teacher.Teacher (imported lazily: it pulls transformers)
    teacher_meta: dict[str, Any]
    teacher_folder: Path
    tcfg: Any  # compress.teacher.TeacherConfig
    test_teacher: np.ndarray  # (N_test, L) teacher logits
    tokenizer: StudentTokenizer
    student: StudentNetwork
    pruned: StudentNetwork
    quantized: torch.nn.Module
    artifact_dir: Path
    avg_tokens: float
    quick: bool
    dcfg: distill_mod.DistillConfig
    pcfg: PruneConfig
    transfer_size: int


def _evaluate(run: _Trained, bar: tqdm) -> dict[str, Any]:
    data, teacher, teacher_meta = run.data, run.teacher, run.teacher_meta
    teacher_folder, tcfg, test_teacher = run.teacher_folder, run.tcfg, run.test_teacher
    tokenizer, student, pruned, quantized = run.tokenizer, run.student, run.pruned, run.quantized
    artifact_dir, avg_tokens, quick = run.artifact_dir, run.avg_tokens, run.quick
    dcfg, pcfg, transfer_size = run.dcfg, run.pcfg, run.transfer_size
    from streamproc.compress.teacher import teacher_dir

    teacher_pred = test_teacher.argmax(1)
    teacher_file = teacher_folder / "teacher.safetensors"
    teacher_size = (
        (teacher_file if teacher_file.is_file() else teacher_dir() / "model.safetensors")
        .stat()
        .st_size
    )

    def t_encode(texts: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return teacher.encode(texts, tcfg.max_tokens)

    models = [
        ModelUnderTest("teacher", "", teacher, t_encode, count_params(teacher), teacher_size),
        ModelUnderTest(
            "distilled",
            "",
            student,
            tokenizer.encode_batch,
            count_params(student),
            _weights_size(student, student.config, tokenizer, data.labels),
            count_flops(student.config, avg_tokens).total,
        ),
        ModelUnderTest(
            "pruned",
            "",
            pruned,
            tokenizer.encode_batch,
            count_params(pruned),
            _weights_size(pruned, pruned.config, tokenizer, data.labels),
            count_flops(pruned.config, avg_tokens).total,
        ),
        ModelUnderTest(
            "quantized",
            "",
            quantized,
            tokenizer.encode_batch,
            count_params(quantized),
            (artifact_dir / WEIGHTS).stat().st_size,
            count_flops(pruned.config, avg_tokens).total,
        ),
    ]
    # The artifact as a worker loads it must compute exactly what the in-memory model does, on
    # the same forward pass (``logits`` may split a batch by length, and dynamic int8 picks its
    # activation scales per pass: the same text in another pass scores slightly differently).
    loaded = load_classifier(artifact_dir, runtime="torch")
    with torch.inference_mode():
        ids, mask = tokenizer.encode_batch(data.test_texts[:64])  # (64, T)
        same_pass = loaded.engine(ids.numpy(), mask.numpy())  # (64, L)
        if not np.array_equal(same_pass, quantized(ids, mask).numpy()):
            raise ModelError("the saved artifact does not reproduce the quantized model's outputs")

    rows: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    for m in models:
        pred = teacher_pred if m.name == "teacher" else predict(m, data.test_texts, 64)
        preds[m.name] = pred
        rows[m.name] = {
            "accuracy": round(accuracy(pred, data.test_labels), 4),
            "macro_f1": round(macro_f1(pred, data.test_labels, data.num_labels), 4),
            "agreement": round(float((pred == teacher_pred).mean()), 4),
            "params": m.params,
            "size_bytes": m.size_bytes,
            "flops": m.flops,
        }
    disagreement = {}
    for m in models[2:]:
        single = predict(m, data.test_texts, 1)
        disagreement[m.name] = round(float((single != preds[m.name]).mean()), 4)

    repeats = {1: 10, 64: 2} if quick else {1: 300, 64: 60}
    bar.reset(total=3 * sum(repeats.values()))
    latency = measure_latency(models, data.test_texts, repeats=repeats, progress=bar.update)
    # End to end (tokenize + forward + softmax) for the artifact as the worker runs it.
    e2e = measure_latency(
        [ModelUnderTest("quantized", "", _PredictAll(loaded), _raw_texts, 0, 0)],
        data.test_texts,
        threads=(2,),
        repeats=repeats,
        progress=bar.update,
    )["quantized"]
    pc, dc = pruned.config, student.config
    arch = {
        "teacher": (
            "all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, vocab 30,522) + mean pool + "
            "linear head, "
            f"fine-tuned {tcfg.epochs} epochs on {teacher_meta['train_rows']} train rows "
            f"(lr {tcfg.lr}, batch {tcfg.batch_size}, max {tcfg.max_tokens} tokens)."
        ),
        "distilled": (
            f"{dc.num_layers}-layer pre-LN transformer, dim {dc.dim}, "
            f"{dc.layer_heads[0]} heads × {dc.head_dim}, FFN {dc.layer_ffn[0]}, "
            f"vocab {dc.vocab_size} "
            "(the teacher's WordPiece pieces most used on the transfer set; embeddings start from "
            f"the teacher's, PCA-projected), window {dc.max_tokens}; {dcfg.epochs} epochs on "
            f"{transfer_size} transfer texts, loss {dcfg.alpha}·T²·KL(T={dcfg.temperature}) + "
            f"{1 - dcfg.alpha:.1f}·CE on the labelled rows + {dcfg.feature_weight}·(1 − cos) "
            "between the projected student sentence vector and the teacher's."
        ),
        "pruned": (
            f"heads per layer {list(dc.layer_heads)} → {list(pc.layer_heads)}, FFN neurons "
            f"{list(dc.layer_ffn)} → {list(pc.layer_ffn)} (gradient-of-gate importance on "
            f"{pcfg.score_batches} batches), then {pcfg.finetune_epochs} epochs of distillation "
            f"fine-tuning; FLOPs/seq {rows['distilled']['flops'] / 1e6:.2f} M → "
            f"{rows['pruned']['flops'] / 1e6:.2f} M at {avg_tokens:.1f} tokens."
        ),
        "quantized": "torch.ao quantize_dynamic: every nn.Linear to int8 weights (per tensor), "
        "activations quantized per call; embeddings and LayerNorm stay fp32.",
    }
    return {
        "data": {
            "name": data.name,
            "description": data.meta.get("description", data.meta.get("path", data.name)),
            "train": len(data.train_texts),
            "test": len(data.test_texts),
            "split": data.meta.get("split", ""),
            "labels": list(data.labels),
        },
        "models": rows,
        "latency": latency,
        "latency_calls": f"{repeats[1]} (batch 1) / {repeats[64]} (batch 64)",
        "end_to_end": e2e,
        "batch_disagreement": disagreement,
        "avg_test_tokens": round(avg_tokens, 2),
        "student_dim": dc.dim,
        "architecture": arch,
        "machine": machine_description(),
    }


class _PredictAll:
    """Adapter so measure_latency can time Classifier.predict_batch on raw texts."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def __call__(self, texts: Any, _mask: Any) -> torch.Tensor:
        self.classifier.predict_batch(texts)
        return torch.zeros(1)


def _raw_texts(texts: Any) -> tuple[Any, Any]:
    return list(texts), None
