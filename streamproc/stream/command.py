"""``streamproc worker``: run one streaming inference worker (scale out with more of them)."""

from __future__ import annotations

import logging

import click

from streamproc.settings import load_settings

__all__ = ["worker"]


@click.command("worker")
@click.option("--web-port", type=int, default=None, help="Override STREAMPROC_WEB_PORT.")
@click.option(
    "--model",
    "model_spec",
    default=None,
    metavar="SPEC",
    help="Override STREAMPROC_MODEL: artifact[:DIR], hf[:DIR], a plugin NAME[:DIR] or "
    "module:factory[:DIR].",
)
def worker(web_port: int | None, model_spec: str | None) -> None:
    """Consume the input topic, predict in adaptive batches, publish predictions.

    Configured by STREAMPROC_* environment variables (see README). SIGTERM/SIGINT shut down
    gracefully: in-flight batches finish and their offsets are committed.
    """
    import faust

    from streamproc.stream.app import create_worker

    overrides: dict[str, object] = {"web_port": web_port} if web_port is not None else {}
    if model_spec is not None:
        overrides["model"] = model_spec
    settings = load_settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    w = create_worker(settings)
    # Before Faust subscribes: a consumer group that subscribes to a topic that does not exist
    # yet is assigned nothing, and only notices the topic at its next metadata refresh (minutes).
    # So `streamproc worker` before the first `streamproc produce` works, as the README orders.
    from streamproc.stream.app import check_topic_layout, ensure_worker_topics

    ensure_worker_topics(settings)
    check_topic_layout(settings)  # exactly_once: one line naming the topics, exit 2
    click.echo(
        f"streamproc worker: model {w.slot().version}, {settings.input_topic} -> "
        f"{settings.output_topic} (dead letters: {settings.dead_letter_topic}), "
        f"metrics http://{settings.web_host}:{settings.web_port}/metrics",
        err=True,
    )
    faust.Worker(w.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
