"""``streamproc demo``: the whole product end to end on one machine, in a few minutes.

1. a Kafka broker: ``STREAMPROC_BOOTSTRAP_SERVERS`` if set, else a local KRaft broker started for
   the demo (jars from Maven Central, cached) and stopped afterwards;
2. a model: the version ``<model-dir>/CURRENT`` names, else the artifact ``streamproc distill``
   wrote under ``artifacts/trec``, else a ``--quick`` run of the offline job built now;
3. a worker (``streamproc worker``) with its live dashboard;
4. the TREC test questions produced at a steady rate, with bad events mixed in, after 20
   warm-up events whose latency is shown apart (the first events after a start pay for the
   consumer group's first fetches and the broker's warm-up);
5. predictions read back and scored against the true labels; bad events read from the
   dead-letter topic with their reasons.
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import orjson

from streamproc.broker import configured_or_local_broker
from streamproc.errors import StreamprocError
from streamproc.kafka import consume_count, ensure_topics
from streamproc.settings import Settings, load_settings
from streamproc.tools.worker_process import wait_until_serving, worker_process

__all__ = ["demo"]

_WARMUP = 20  # events sent and read back before the measured ones


@contextlib.contextmanager
def _broker(settings: Settings) -> Iterator[str]:
    if "bootstrap_servers" in settings.model_fields_set:
        click.echo(f"[1/5] broker: using {settings.bootstrap_servers}")
    else:
        click.echo("[1/5] broker: starting a local Kafka (KRaft) on 127.0.0.1 …")
    with configured_or_local_broker(settings) as (bootstrap, local):
        if local is not None:
            click.echo(f"      up at {bootstrap}")
        yield bootstrap
    if local is not None:
        click.echo("      broker stopped")


def _ensure_model(model_dir: Path, quick: bool) -> str:
    """Serve what ``model_dir/CURRENT`` names; else publish the full ``make distill`` artifact if
    it was built, else the TREC classifier shipped in the package (``--quick-model``: a fresh
    ``--quick`` one, for tests)."""
    from streamproc.model.artifact import builtin_artifact
    from streamproc.model.versions import publish_artifact, resolve_current

    if not quick:
        with contextlib.suppress(StreamprocError):
            current = resolve_current(model_dir)
            click.echo(f"[2/5] model: serving {current.name} from {model_dir}")
            return current.name
    built = Path("artifacts/trec")
    if quick:
        from streamproc.compress.config import JobConfig
        from streamproc.compress.job import run_job

        click.echo("[2/5] model: running the offline job in --quick mode (a test-sized model) …")
        built = Path("artifacts/trec-quick")
        run_job(
            JobConfig(
                dataset="trec",
                out_dir=built,
                quick=True,
                report_dir=built.with_name("trec-quick-report"),
            )
        )
    elif not (built / "manifest.json").exists():
        built = builtin_artifact("trec")
    version = publish_artifact(built, model_dir)
    click.echo(f"[2/5] model: published {version} ({built}) to {model_dir}")
    return version


@click.command("demo")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Events to send (the 500 TREC test questions, cycled).",
)
@click.option("--rate", type=click.FloatRange(min=1), default=250.0, show_default=True)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the model is published and served from. [STREAMPROC_MODEL_DIR, default models]",
)
@click.option(
    "--quick-model",
    is_flag=True,
    help="Build and serve a fresh --quick model (test-sized, low accuracy) instead.",
)
@click.option("--web-port", type=int, default=6066, show_default=True)
def demo(count: int, rate: float, model_dir: Path | None, quick_model: bool, web_port: int) -> None:
    """Broker, model, worker, producer and consumer, end to end, with a summary."""
    base = load_settings()
    model_dir = model_dir if model_dir is not None else base.model_dir
    from streamproc.compress.data import load_dataset
    from streamproc.settings import default_cache_dir
    from streamproc.tools.produce import produce_events

    data = load_dataset("trec", cache_dir=default_cache_dir())
    with _broker(base) as bootstrap:
        run = uuid.uuid4().hex[:6]
        settings = load_settings(
            bootstrap_servers=bootstrap,
            model_dir=model_dir,
            web_port=web_port,
            app_id=f"streamproc-demo-{run}",
            input_topic=f"demo-input-{run}",
            output_topic=f"demo-predictions-{run}",
            dead_letter_topic=f"demo-dead-letter-{run}",
        )
        version = _ensure_model(model_dir, quick_model)
        ensure_topics(
            settings.confluent_config(),
            {
                settings.input_topic: settings.input_partitions,
                settings.output_topic: settings.input_partitions,
                settings.dead_letter_topic: settings.input_partitions,
            },
            replication_factor=settings.replication_factor,
        )
        click.echo(f"[3/5] worker: starting; live dashboard http://127.0.0.1:{web_port}/dashboard/")
        log = Path(".streamproc/demo-worker.log")
        with worker_process(settings, log) as worker:
            ready = wait_until_serving(settings, worker, log)
            click.echo(f"      worker serving after {ready:.1f}s (log: {log})")
            texts = data.test_texts
            # The first events after a start pay for the group's first fetches and the broker's
            # warm-up (hundreds of ms on 2 shared cores): measured apart, as the bench does.
            produce_events(settings, texts, count=_WARMUP, rate=rate, id_prefix="w")
            warmup = {  # by id: a read can return more than it was asked for
                out["id"]: out["latency_ms"] or 0.0
                for out in map(
                    orjson.loads, (r.value for r in _read(settings, settings.output_topic, _WARMUP))
                )
                if out["id"].startswith("w-")
            }.values()
            click.echo(
                f"      warm-up: {len(warmup)} events, latency max {max(warmup, default=0):.0f} ms "
                "(not in the figures below)"
            )
            click.echo(
                f"[4/5] producing {count} TREC questions at {rate:.0f}/s (+ one bad event per 50) …"
            )
            stats = produce_events(
                settings, texts, count=count, rate=rate, id_prefix="q", bad_every=50
            )
            click.echo(f"      sent {stats.sent} in {stats.seconds:.1f}s")
            click.echo("[5/5] reading predictions …")
            outputs = [
                r
                for r in _read(settings, settings.output_topic, _WARMUP + count)
                if orjson.loads(r.value)["id"].startswith("q-")
            ]
            dead = _read(settings, settings.dead_letter_topic, count // 50, timeout_s=30)
    _summary(outputs, dead, data.labels, data.test_labels, count, version)


def _read(settings: Settings, topic: str, count: int, timeout_s: float = 180.0) -> list:
    group = f"demo-{uuid.uuid4().hex}"
    return consume_count(
        settings.confluent_config(), topic, count, group_id=group, timeout_s=timeout_s
    )


def _summary(
    outputs: list, dead: list, labels: tuple[str, ...], truth: list[int], count: int, version: str
) -> None:
    preds = [orjson.loads(r.value) for r in outputs]
    ids = {p["id"] for p in preds}
    correct = sum(p["label"] == labels[truth[int(p["id"][2:]) % len(truth)]] for p in preds)
    latencies = sorted(p["latency_ms"] for p in preds if p.get("latency_ms") is not None)
    sizes = collections.Counter(p["batch_size"] for p in preds)
    reasons = collections.Counter(r.headers.get("streamproc-reason", b"?").decode() for r in dead)
    click.echo("")
    click.echo(
        f"model {version}: {len(ids)}/{count} events predicted "
        f"({'all' if len(ids) == count else 'MISSING SOME'}), "
        f"accuracy vs. TREC labels {correct / max(1, len(preds)):.1%}"
    )
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        click.echo(
            f"event-to-prediction latency: p50 {statistics.median(latencies):.1f} ms, "
            f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
        )
    click.echo(f"batch sizes: {dict(sorted(sizes.items()))}")
    click.echo(f"dead-lettered: {sum(reasons.values())} ({dict(reasons)})")
    for p in preds[:5]:
        click.echo(f"  e.g. {p['id']}: {p['label']} ({p['score']:.2f})")
    if len(ids) != count:
        raise StreamprocError(
            f"only {len(ids)} of {count} predictions arrived (see .streamproc/demo-worker.log)"
        )
