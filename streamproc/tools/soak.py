"""``streamproc soak``: a long steady run that checks memory and latency stay flat.

A real ``streamproc worker`` process serves the real model; a producer sends at a steady, moderate
rate for the whole duration; a consumer records event-to-prediction latency; the worker's resident
memory is sampled from ``/proc``. The report compares the first and the last window of the run
(after a warm-up) and says how much each grew.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson

from streamproc.broker import configured_or_local_broker
from streamproc.errors import StreamprocError
from streamproc.kafka import consume, ensure_topics
from streamproc.plotting import pyplot
from streamproc.settings import Settings, load_settings
from streamproc.tools.worker_process import wait_until_serving, worker_process

__all__ = ["SETTLE_S", "SoakResult", "run_soak", "soak"]

SETTLE_S = 30.0  # the first seconds (worker warm-up, first rebalance) are not judged


@dataclass
class SoakResult:
    duration_s: float
    rate: float
    sent: int
    received: int
    missing: int
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    latency_ms: list[tuple[float, float]] = field(default_factory=list)  # (t received, ms)

    def window_stats(self, start: float, end: float) -> dict[str, float]:
        lat = sorted(v for t, v in self.latency_ms if start <= t < end)
        rss = [v for t, v in self.rss_mb if start <= t < end]
        if not lat or not rss:
            return {}
        return {
            "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "rss_mb": sum(rss) / len(rss),
        }

    def windows(self, seconds: float = 5.0) -> list[dict[str, float]]:
        """p50 / p99 per ``seconds`` of receive time: what the plot shows and the target reads."""
        buckets: dict[int, list[float]] = {}
        for t, v in self.latency_ms:
            buckets.setdefault(int(t // seconds), []).append(v)
        out = []
        for index in sorted(buckets):
            lat = sorted(buckets[index])
            out.append(
                {
                    "t_s": index * seconds,
                    "events": len(lat),
                    "p50_ms": lat[len(lat) // 2],
                    "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                }
            )
        return out

    def summary(self, warmup_s: float) -> dict[str, Any]:
        span = self.duration_s - warmup_s
        window = max(5.0, span / 5)
        first = self.window_stats(warmup_s, warmup_s + window)
        last = self.window_stats(self.duration_s - window, self.duration_s + 60)
        growth = {
            key: (last[key] / first[key] - 1.0) if first.get(key) else None
            for key in ("p50_ms", "p99_ms", "rss_mb")
            if key in last
        }
        windows = self.windows()
        settled = [w for w in windows if w["t_s"] >= SETTLE_S]
        worst = max(settled, key=lambda w: w["p99_ms"], default=None)
        return {
            "duration_s": self.duration_s,
            "rate_per_s": self.rate,
            "sent": self.sent,
            "received": self.received,
            "missing": self.missing,
            "first_window": first,
            "last_window": last,
            "growth": growth,
            # The soak's bar: p99 ≤ 100 ms in every 5-s window after the first 30 s.
            "worst_5s_p99_after_settle": worst,
            "windows_5s": windows,
        }


def _rss_mb(pid: int) -> float | None:
    """Resident MiB of the worker and its model process (if it runs one)."""
    from streamproc.tools.bench.load import child_pids

    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                own = int(line.split()[1]) / 1024.0
                return own + sum(_rss_mb(child) or 0.0 for child in child_pids(pid))
    except OSError:
        return None
    return None


def run_soak(
    settings: Settings,
    *,
    duration_s: float,
    rate: float,
    texts: list[str],
    log: Path,
    progress: Any = None,
) -> SoakResult:
    """Drive one worker at ``rate`` events/s for ``duration_s``; sample RSS and latency."""
    from streamproc.tools.produce import produce_events

    ensure_topics(
        settings.confluent_config(),
        {
            settings.input_topic: settings.input_partitions,
            settings.output_topic: settings.input_partitions,
            settings.dead_letter_topic: settings.input_partitions,
        },
        replication_factor=settings.replication_factor,
    )
    count = int(duration_s * rate)
    result = SoakResult(duration_s=duration_s, rate=rate, sent=0, received=0, missing=0)
    stop = threading.Event()
    received: set[str] = set()
    with worker_process(settings, log) as proc:
        wait_until_serving(settings, proc, log)
        start = time.time()

        def read() -> None:
            for record in consume(
                settings.confluent_config(),
                [settings.output_topic],
                group_id=f"soak-{uuid.uuid4().hex}",
                timeout_s=duration_s + 180,
                stop=lambda _: stop.is_set(),
            ):
                now = time.time()
                out = orjson.loads(record.value or b"{}")
                if not out.get("id", "").startswith("s-"):
                    continue  # the warm-up event
                received.add(out["id"])
                if out.get("ts") is not None:
                    result.latency_ms.append((now - start, now * 1000.0 - out["ts"]))

        def sample() -> None:
            while not stop.is_set():
                rss = _rss_mb(proc.pid)
                if rss is not None:
                    result.rss_mb.append((time.time() - start, rss))
                if progress is not None:
                    progress(len(received))
                stop.wait(1.0)

        threads = [
            threading.Thread(target=read, daemon=True),
            threading.Thread(target=sample, daemon=True),
        ]
        for thread in threads:
            thread.start()
        stats = produce_events(settings, texts, count=count, rate=rate, id_prefix="s")
        result.sent = stats.sent
        deadline = time.time() + 60
        while len(received) < count and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(30)
    result.received = len(received)
    result.missing = count - len({f"s-{i}" for i in range(count)} & received)
    return result


def _plot(result: SoakResult, path: Path) -> None:
    plt = pyplot("the soak plot")
    if plt is None:
        return

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot([t for t, _ in result.rss_mb], [v for _, v in result.rss_mb], color="tab:blue")
    ax1.set_ylabel("worker RSS (MiB)")
    windows = result.windows()
    ax2.plot([w["t_s"] for w in windows], [w["p50_ms"] for w in windows], label="p50")
    ax2.plot([w["t_s"] for w in windows], [w["p99_ms"] for w in windows], label="p99")
    ax2.axvline(SETTLE_S, color="0.8", linewidth=0.8)
    ax2.set_ylabel("latency per 5 s (ms)")
    ax2.set_xlabel("seconds")
    ax2.set_yscale("log")
    ax2.legend()
    fig.suptitle(f"soak: {result.rate:.0f} events/s for {result.duration_s:.0f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command("soak")
@click.option(
    "--duration",
    type=click.FloatRange(min=5),
    default=600.0,
    show_default=True,
    help="Seconds of steady load.",
)
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True)
@click.option("--quick", is_flag=True, help="45 s at 200/s with a small test artifact (CI).")
@click.option(
    "--artifact",
    type=click.Path(path_type=Path),
    default=None,
    help="Model artifact dir or builtin:trec (default: <model dir>/CURRENT, else builtin:trec; "
    "--quick: a small test artifact).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("streamproc-results/soak"),
    show_default=True,
    help="Report directory (the repository's own run: --out docs/results/soak).",
)
def soak(duration: float, rate: float, quick: bool, artifact: Path | None, out: Path) -> None:
    """Steady load on one worker with the real model: do memory and latency stay flat?"""
    from tqdm import tqdm

    from streamproc.model.versions import publish_artifact
    from streamproc.tools.served_model import choose_artifact

    if quick:
        duration, rate = min(duration, 45.0), min(rate, 200.0)
    base = load_settings()
    work = Path(tempfile.mkdtemp(prefix="streamproc-soak-"))
    model_dir = work / "models"
    artifact, _how = choose_artifact(artifact, quick=quick, scratch=work, model_dir=base.model_dir)
    version = publish_artifact(artifact, model_dir)
    texts = [f"question {i}: what is the population of city number {i}?" for i in range(500)]
    try:
        with configured_or_local_broker(base) as (bootstrap, _):
            run = uuid.uuid4().hex[:8]
            settings = load_settings(
                bootstrap_servers=bootstrap,
                app_id=f"soak-{run}",
                input_topic=f"soak-in-{run}",
                output_topic=f"soak-out-{run}",
                dead_letter_topic=f"soak-dlq-{run}",
                model_dir=model_dir,
                web_port=base.web_port,
            )
            out.mkdir(parents=True, exist_ok=True)
            with tqdm(total=int(duration * rate), unit="ev", desc=f"soak {version}") as bar:
                result = run_soak(
                    settings,
                    duration_s=duration,
                    rate=rate,
                    texts=texts,
                    log=out / "worker.log",
                    progress=lambda n: bar.update(n - bar.n),
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = result.summary(warmup_s=min(30.0, duration / 5))
    summary["model_version"] = version
    summary["command"] = "streamproc soak " + " ".join(sys.argv[2:])
    (out / "soak.json").write_text(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    _plot(result, out / "soak.png")
    lines = [
        f"# Soak: {rate:.0f} events/s for {duration:.0f} s, model {version}",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Sent {result.sent}, predicted {result.received}, missing {result.missing}.",
        "",
        "| window | p50 ms | p99 ms | worker RSS MiB |",
        "|---|---|---|---|",
    ]
    for name in ("first_window", "last_window"):
        w = summary[name]
        if w:
            lines.append(
                f"| {name.split('_')[0]} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} | "
                f"{w['rss_mb']:.1f} |"
            )
    growth = {k: f"{v:+.1%}" for k, v in summary["growth"].items() if v is not None}
    lines += ["", f"Growth, last window vs first: {growth}"]
    worst = summary["worst_5s_p99_after_settle"]
    if worst:
        verdict = "MET" if worst["p99_ms"] <= 100 else "MISSED"
        lines += [
            "",
            f"p99 ≤ 100 ms in every 5-s window after the first {SETTLE_S:.0f} s: **{verdict}** "
            f"(worst window: {worst['p99_ms']:.1f} ms at {worst['t_s']:.0f} s, "
            f"{worst['events']} events).",
        ]
    lines += ["", "![soak](soak.png)"]
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    if result.missing:
        raise StreamprocError(f"{result.missing} events were not predicted")
