"""``streamproc model``: inspect, verify and publish versioned model artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streamproc.model.artifact import (
    publish_artifact,
    resolve_artifact_argument,
    verify_artifact,
)

__all__ = ["model"]


@click.group("model")
def model() -> None:
    """Inspect, verify and publish model artifacts."""


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
    """Check every file's sha256 against the manifest; exit 2 with one line if anything is off."""
    manifest = verify_artifact(resolve_artifact_argument(path))
    click.echo(
        f"ok: {path} (version {manifest['version']}, {len(manifest['files'])} files verified)"
    )


@model.command("publish")
@click.argument("artifact")
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="the directory workers watch: gets <version>/ and an atomically replaced CURRENT",
)
def publish(artifact: str, model_dir: Path) -> None:
    """Copy ARTIFACT into MODEL_DIR/<version>/ and point MODEL_DIR/CURRENT at it.

    ARTIFACT: a directory written by `streamproc distill`, or builtin:trec (the TREC question
    classifier shipped in the package)."""
    version = publish_artifact(resolve_artifact_argument(artifact), model_dir)
    click.echo(f"published {version} -> {model_dir / version} (CURRENT updated)")
