"""``streamproc model``: inspect, verify and publish versioned model artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from streamproc.model.artifact import resolve_artifact_argument, verify_artifact
from streamproc.model.versions import CURRENT_FILE, publish_artifact

__all__ = ["model"]


@click.group("model")
def model() -> None:
    """Inspect, verify, publish, list and roll back model artifacts."""


@model.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="print the whole manifest as JSON")
def info(path: str, as_json: bool) -> None:
    """Print an artifact's manifest summary (digests are checked first).

    PATH: an artifact directory, or builtin:trec (the model shipped in the package)."""
    artifact = resolve_artifact_argument(path)
    manifest = verify_artifact(artifact)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    cfg = manifest["config"]
    meta = manifest.get("metadata", {})
    dataset = meta.get("dataset", {})
    click.echo(f"version:      {manifest['version']}")
    click.echo(f"created:      {manifest.get('created', '?')}")
    click.echo(
        f"format:       {manifest['format_version']} ({manifest.get('architecture', '?')}, "
        f"quantization {manifest['quantization']})"
    )
    click.echo(f"labels:       {', '.join(manifest['labels'])}")
    click.echo(f"max_tokens:   {manifest['max_tokens']}")
    runtime = manifest.get("runtime") or {"engine": "torch"}
    detail = (
        f" ({runtime.get('precision')}, opset {runtime.get('opset')})" if "file" in runtime else ""
    )
    click.echo(f"runtime:      {runtime['engine']}{detail}")
    click.echo(
        f"network:      dim {cfg['dim']}, heads/layer {cfg['layer_heads']}, "
        f"FFN/layer {cfg['layer_ffn']}, "
        f"vocab {cfg['vocab_size']}"
    )
    if dataset:
        click.echo(
            f"dataset:      {dataset.get('name', '?')} "
            f"({dataset.get('train_rows', '?')} train rows)"
        )
    evaluation = meta.get("evaluation")
    if evaluation:
        click.echo(
            f"evaluation:   accuracy {evaluation['accuracy']:.2%} on {evaluation['rows']} "
            f"{evaluation['split']} rows (macro-F1 {evaluation['macro_f1']:.3f})"
        )
    for name, digest in manifest["files"].items():
        size = (artifact / name).stat().st_size
        click.echo(f"file:         {name} {size:,} bytes sha256 {digest[:16]}…")


@model.command("verify")
@click.argument("path")
def verify(path: str) -> None:
    """Check every file's sha256 against the manifest; exit 5 with one line if anything is off."""
    manifest = verify_artifact(resolve_artifact_argument(path))
    click.echo(
        f"ok: {path} (version {manifest['version']}, {len(manifest['files'])} files verified)"
    )


def model_dir_option(func: Callable[..., None]) -> Callable[..., None]:
    """``--model-dir``, defaulting to STREAMPROC_MODEL_DIR (what the workers watch)."""
    return click.option(
        "--model-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="the directory workers watch: <version>/ dirs and CURRENT "
        "[STREAMPROC_MODEL_DIR, default models]",
    )(func)


def _model_dir(given: Path | None) -> Path:
    from streamproc.settings import load_settings

    return given if given is not None else load_settings().model_dir


@model.command("publish")
@click.argument("artifact")
@model_dir_option
@click.option(
    "--if-missing",
    is_flag=True,
    help="do nothing when MODEL_DIR already has a CURRENT (a container's first-start seed)",
)
def publish(artifact: str, model_dir: Path | None, if_missing: bool) -> None:
    """Copy ARTIFACT into MODEL_DIR/<version>/ and point MODEL_DIR/CURRENT at it.

    ARTIFACT: a directory written by `streamproc distill`, or builtin:trec (the TREC question
    classifier shipped in the package)."""
    directory = _model_dir(model_dir)
    current = directory / CURRENT_FILE
    if if_missing and current.is_file():
        click.echo(f"{current} names {current.read_text().strip()!r}: left as it is")
        return
    version = publish_artifact(resolve_artifact_argument(artifact), directory)
    click.echo(f"published {version} -> {directory / version} (CURRENT updated)")


@model.command("list")
@model_dir_option
def list_command(model_dir: Path | None) -> None:
    """The versions in MODEL_DIR (* = CURRENT): when published, created, runtime, accuracy."""
    from streamproc.model.versions import list_versions

    directory = _model_dir(model_dir)
    versions = list_versions(directory)
    if not versions:
        click.echo(f"{directory}: no versions published")
        return
    rows = [("", "VERSION", "PUBLISHED", "CREATED", "RUNTIME", "ACCURACY")]
    for v in versions:
        accuracy = f"{v.accuracy:.2%}" if v.accuracy is not None else "-"
        if v.problem:
            rows.append(
                ("*" if v.current else "", v.version, "", "", f"unreadable: {v.problem}", "")
            )
            continue
        rows.append(
            (
                "*" if v.current else "",
                v.version,
                v.published_at or "-",
                v.created,
                v.runtime,
                accuracy,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())
    if not any(v.current for v in versions):
        click.echo(f"(CURRENT names no version here: {directory}/CURRENT)", err=True)


@model.command("rollback")
@click.argument("version", required=False)
@model_dir_option
def rollback_command(version: str | None, model_dir: Path | None) -> None:
    """Point CURRENT back at VERSION, or at the version it named before (undo the last publish).

    Atomic, as publish is; the artifact is verified first. Workers swap it in at their next poll."""
    from streamproc.model.versions import rollback

    directory = _model_dir(model_dir)
    before, after = rollback(directory, version)
    click.echo(f"rolled back {before or '(none)'} -> {after} in {directory} (CURRENT updated)")


@model.command("export-onnx")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--version", required=True, help="the new artifact's version name")
@click.option(
    "--precision",
    type=click.Choice(["int8-dynamic", "fp32"]),
    default="int8-dynamic",
    show_default=True,
    help="int8-dynamic: ORT's dynamic quantization of every MatMul weight",
)
def export_onnx_command(source: str, out: Path, version: str, precision: str) -> None:
    """Re-write SOURCE as a new artifact OUT served by ONNX Runtime (needs torch and onnx).

    The weights are the same; the graph is exported and (int8) quantized by ONNX Runtime, so the
    scores move slightly: run `streamproc model evaluate OUT --record` before publishing it."""
    from streamproc.model.artifact import load_artifact
    from streamproc.model.saving import save_artifact

    loaded = load_artifact(resolve_artifact_argument(source))
    metadata = {k: v for k, v in loaded.manifest.get("metadata", {}).items() if k != "evaluation"}
    metadata["exported_from"] = {
        "version": loaded.version,
        "files": loaded.manifest["files"],
        "evaluation": loaded.manifest.get("metadata", {}).get("evaluation"),
    }
    save_artifact(
        out,
        model=loaded.model,
        config=loaded.config,
        tokenizer=loaded.tokenizer,
        labels=loaded.labels,
        version=version,
        metadata=metadata,
        runtime="onnxruntime",
        onnx_precision=precision,  # type: ignore[arg-type]
    )
    click.echo(f"wrote {out} (version {version}, onnxruntime {precision})")


@model.command("evaluate")
@click.argument("path")
@click.option("--dataset", default=None, help="[the artifact's own data set] name or file")
@click.option(
    "--runtime",
    type=click.Choice(["auto", "onnxruntime", "torch"]),
    default="auto",
    show_default=True,
)
@click.option("--record", is_flag=True, help="write the result into the manifest's evaluation")
def evaluate(path: str, dataset: str | None, runtime: str, record: bool) -> None:
    """Score an artifact on its data set's test split, as the worker runs it (predict_batch).

    PATH: an artifact directory, or builtin:trec."""
    from streamproc.compress.data import load_dataset
    from streamproc.compress.scoring import score_artifact
    from streamproc.model.artifact import record_evaluation
    from streamproc.settings import default_cache_dir

    artifact = resolve_artifact_argument(path)
    manifest = verify_artifact(artifact)
    name = dataset or manifest.get("metadata", {}).get("dataset", {}).get("name")
    if not name:
        raise click.UsageError("the artifact names no data set: pass --dataset")
    data = load_dataset(name, cache_dir=default_cache_dir())
    result = score_artifact(artifact, data, runtime=runtime)
    meta = manifest.get("metadata", {})
    for earlier in (meta.get("evaluation"), (meta.get("exported_from") or {}).get("evaluation")):
        if earlier and "teacher_accuracy" in earlier:
            result["teacher_accuracy"] = earlier["teacher_accuracy"]
            break
    click.echo(
        f"{manifest['version']} ({result['runtime']}): accuracy {result['accuracy']:.2%}, "
        f"macro-F1 {result['macro_f1']:.3f} on {result['rows']} {name} test rows; labels at "
        f"batch 1 vs 64 differ for {result['batch_disagreement']:.2%}"
    )
    if record:
        record_evaluation(artifact, result)
        click.echo(f"recorded in {artifact / 'manifest.json'}")
