"""Run ``streamproc worker`` as a child process (demo, soak, bench) and wait until it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from streamproc.errors import StreamprocError
from streamproc.kafka import consume
from streamproc.settings import Settings

__all__ = ["WorkerProcess", "wait_until_serving", "worker_process"]


class WorkerProcess:
    """A worker in a child process: ``python -m streamproc worker`` (or ``module``) configured by
    ``settings`` through its environment, stdout and stderr in ``log``.

    The one launcher for the demo, the soak and the tests (which add their fake-model worker and
    file waits in ``tests/helpers.py``); ``proc`` is the ``Popen``.
    """

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        module: Sequence[str] = ("streamproc", "worker"),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *module],
            env={**os.environ, **settings.to_env(), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=None if cwd is None else str(cwd),
        )

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.close()

    def stop(self) -> None:
        """SIGTERM (graceful: drain, commit), SIGKILL if it has not exited after 60 s."""
        self.signal(signal.SIGTERM)
        try:
            self.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def worker_process(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker configured by ``settings``; SIGTERM (graceful) on exit, SIGKILL after 60 s."""
    worker = WorkerProcess(settings, log)
    try:
        yield worker.proc
    finally:
        worker.stop()


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
