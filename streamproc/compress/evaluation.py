"""The compression job's evaluation: every stage's model (teacher, distilled, pruned, quantized)
scored on the test set, sized and timed in one run, for the report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from streamproc.compress import distill as distill_mod
from streamproc.compress.data import LabelledData
from streamproc.compress.prune import PruneConfig
from streamproc.compress.scoring import (
    ModelUnderTest,
    accuracy,
    machine_description,
    macro_f1,
    measure_latency,
    predict,
)
from streamproc.compress.summary import DataInfo, Evaluation, ModelScore
from streamproc.errors import ModelError
from streamproc.model.artifact import WEIGHTS
from streamproc.model.network import StudentConfig, StudentNetwork, count_flops, count_params
from streamproc.model.runtime import load_classifier
from streamproc.model.saving import save_artifact
from streamproc.model.tokenizer import StudentTokenizer

__all__ = ["TrainedModels", "evaluate_models", "files_size"]


def files_size(path: Path) -> str:
    """The total size of the files directly in ``path``, e.g. ``'2.41 MB'``."""
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
class TrainedModels:
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


def evaluate_models(run: TrainedModels, bar: tqdm) -> Evaluation:
    """The report's model rows: accuracy, size, FLOPs and latency of the teacher and of each
    compression stage, measured in one run; raises ModelError if the saved artifact does not
    reproduce the in-memory quantized model."""
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

    def student_row(
        name: str, model: torch.nn.Module, config: StudentConfig, size_bytes: int
    ) -> ModelUnderTest:
        """``config``: the network's shapes (the quantized model keeps the pruned ones)."""
        return ModelUnderTest(
            name,
            "",
            model,
            tokenizer.encode_batch,
            count_params(model),
            size_bytes,
            count_flops(config, avg_tokens).total,
        )

    dc, pc = student.config, pruned.config
    models = [
        ModelUnderTest("teacher", "", teacher, t_encode, count_params(teacher), teacher_size),
        student_row("distilled", student, dc, _weights_size(student, dc, tokenizer, data.labels)),
        student_row("pruned", pruned, pc, _weights_size(pruned, pc, tokenizer, data.labels)),
        student_row("quantized", quantized, pc, (artifact_dir / WEIGHTS).stat().st_size),
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

    rows: dict[str, ModelScore] = {}
    preds: dict[str, np.ndarray] = {}
    for m in models:
        pred = teacher_pred if m.name == "teacher" else predict(m, data.test_texts, 64)
        preds[m.name] = pred
        rows[m.name] = ModelScore(
            accuracy=round(accuracy(pred, data.test_labels), 4),
            macro_f1=round(macro_f1(pred, data.test_labels, data.num_labels), 4),
            agreement=round(float((pred == teacher_pred).mean()), 4),
            params=m.params,
            size_bytes=m.size_bytes,
            flops=m.flops,
        )
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
    teacher_width = int(teacher.encoder.config.hidden_size)
    arch = {
        "teacher": (
            "all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, vocab 30,522) + mean pool + "
            "linear head, "
            f"fine-tuned {tcfg.epochs} epochs on {teacher_meta['train_rows']} train rows "
            f"(lr {tcfg.lr}, batch {tcfg.batch_size}, max {tcfg.max_tokens} tokens)."
        ),
        "distilled": (
            (
                f"{dc.num_layers}-layer post-LN transformer cut from the teacher (its layers "
                f"{list(dcfg.cut.layers)}; per layer the {dcfg.cut.heads} heads and "
                f"{dcfg.cut.ffn} FFN neurons"
                + (
                    f", and {dc.dim} of its {teacher_width} residual dimensions,"
                    if dc.dim < teacher_width
                    else ", all its residual dimensions,"
                )
                + " with the highest gradient-of-gate importance), "
                f"{dc.layer_heads[0]} heads × {dc.head_dim}, token table {dc.embed_dim} wide "
                f"(the teacher's rows, PCA-projected) projected to {dc.dim}, vocab "
                f"{dc.vocab_size}, window {dc.max_tokens}; {dcfg.cut.epochs} epochs "
                f"(lr {dcfg.cut.lr}) on "
                if dcfg.cut is not None
                else f"{dc.num_layers}-layer pre-LN transformer, dim {dc.dim}, "
                f"{dc.layer_heads[0]} heads × {dc.head_dim}, FFN {dc.layer_ffn[0]}, "
                f"vocab {dc.vocab_size} (the teacher's WordPiece pieces most used on the "
                "transfer set; embeddings start from the teacher's, PCA-projected), window "
                f"{dc.max_tokens}; {dcfg.epochs} epochs on "
            )
            + f"{transfer_size} transfer texts, loss {dcfg.alpha}·T²·KL(T={dcfg.temperature}) + "
            f"{1 - dcfg.alpha:.1f}·CE on the labelled rows + {dcfg.feature_weight}·(1 − cos) "
            "between the projected student sentence vector and the teacher's."
        ),
        "pruned": (
            f"heads per layer {list(dc.layer_heads)} → {list(pc.layer_heads)}, FFN neurons "
            f"{list(dc.layer_ffn)} → {list(pc.layer_ffn)}"
            + (f", residual width {dc.dim} → {pc.dim}" if pc.dim != dc.dim else "")
            + " (gradient-of-gate importance on "
            f"{pcfg.score_batches} batches), then {pcfg.finetune_epochs} epochs of distillation "
            f"fine-tuning; FLOPs/seq {(rows['distilled'].flops or 0) / 1e6:.2f} M → "
            f"{(rows['pruned'].flops or 0) / 1e6:.2f} M at {avg_tokens:.1f} tokens."
        ),
        "quantized": "torch.ao quantize_dynamic: every nn.Linear to int8 weights (per tensor), "
        "activations quantized per call; embeddings and LayerNorm stay fp32.",
    }
    return Evaluation(
        data=DataInfo(
            name=data.name,
            description=data.meta.get("description", data.meta.get("path", data.name)),
            train=len(data.train_texts),
            test=len(data.test_texts),
            split=data.meta.get("split", ""),
            labels=tuple(data.labels),
        ),
        models=rows,
        latency=latency,
        latency_calls=f"{repeats[1]} (batch 1) / {repeats[64]} (batch 64)",
        end_to_end=e2e,
        batch_disagreement=disagreement,
        avg_test_tokens=round(avg_tokens, 2),
        student_dim=dc.dim,
        architecture=arch,
        machine=machine_description(),
    )


class _PredictAll:
    """Adapter so measure_latency can time Classifier.predict_batch on raw texts."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def __call__(self, texts: Any, _mask: Any) -> torch.Tensor:
        self.classifier.predict_batch(texts)
        return torch.zeros(1)


def _raw_texts(texts: Any) -> tuple[Any, Any]:
    return list(texts), None
