"""Run ``streamproc worker`` as a child process (demo, soak, bench) and wait until it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from streamproc.errors import StreamprocError
from streamproc.kafka import consume
from streamproc.settings import Settings

__all__ = ["wait_until_serving", "worker_process"]


@contextlib.contextmanager
def worker_process(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker configured by ``settings``; SIGTERM (graceful) on exit, SIGKILL after 60 s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamproc", "worker"],
            env={**os.environ, **settings.to_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_until_serving(
    settings: Settings, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0
) -> float:
    """Send one warm-up event and wait for its prediction: the worker has joined its group and
    loaded its model. Returns the seconds it took."""
    from streamproc.tools.produce import produce_events

    started = time.monotonic()
    produce_events(
        settings, ["is the worker up?"], count=1, id_prefix=f"warmup-{uuid.uuid4().hex[:6]}"
    )
    answered = list(
        consume(
            settings.confluent_config(),
            [settings.output_topic],
            group_id=f"warmup-{uuid.uuid4().hex}",
            stop=lambda seen: len(seen) >= 1 or proc.poll() is not None,
            timeout_s=timeout_s,
        )
    )
    if proc.poll() is not None or not answered:
        raise StreamprocError(f"the worker did not start serving (see {log})")
    return time.monotonic() - started
