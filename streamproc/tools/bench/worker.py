"""The worker of ``streamproc bench``: one process per contender, driven over a pipe; both ends
(the child here, and :class:`BenchWorker`, the parent's handle).

Why a separate process: the worker must not share a GIL with the load generator and the
consumer that time it (that would charge their Python work to the worker and vice versa), and its
CPU time must be readable on its own from ``/proc/<pid>/stat``. Why one process for many load
points: torch's import and the model load cost seconds; the Faust app itself is rebuilt for every
point (fresh topics, fresh consumer group, fresh batching policy) inside the same process.

Protocol: the config is one JSON argument; commands arrive as JSON lines on stdin, and each gets
exactly one JSON line back on the original stdout (everything else the process prints goes to
stderr, so logs cannot corrupt the protocol)::

    {"cmd": "start", "policy": "adaptive" | "fixed:SIZE:WINDOW_S", "ingress": "batched" | "stream",
     "settings": {...}}
    {"cmd": "mark"}     -> model/batch counters now (the parent subtracts two marks)
    {"cmd": "stop"}     -> graceful stop of the current app (drains, commits), then counters
    {"cmd": "exit"}

Run as ``python -m streamproc.tools.bench.worker '<json>'``; not a user-facing command.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TextIO

from streamproc.errors import ConfigError, StreamprocError

__all__ = ["BenchWorker", "load_model", "main", "make_policy"]

# counter -> (sample name, labels it must have): summed over every other label's values.
_COUNTERS: dict[str, tuple[str, dict[str, str]]] = {
    "batches": ("streamproc_inference_seconds_count", {}),
    "inference_s": ("streamproc_inference_seconds_sum", {}),
    "call_s": ("streamproc_stage_seconds_sum", {"stage": "model_call"}),
    "batch_wait_s": ("streamproc_batch_wait_seconds_sum", {}),
    "events": ("streamproc_batch_size_sum", {}),
}


# --- the parent's side: start a worker child and talk to it ---------------------------------------
class BenchWorker:
    """This module run as a child process, serving one contender's model over JSON lines."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamproc.tools.bench.worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._lines: Queue[str] = Queue()
        threading.Thread(target=self._read, name="bench-worker-reader", daemon=True).start()
        self.ready = self._reply(timeout_s=180.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except Empty:
            raise StreamprocError(
                f"bench worker silent for {timeout_s:.0f}s{self._tail()}"
            ) from None
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise StreamprocError(f"bench worker: {reply.get('error')}{self._tail()}")
        return reply

    def request(self, cmd: str, timeout_s: float = 90.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise StreamprocError(f"bench worker exited ({self.proc.returncode}){self._tail()}")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout_s)

    def close(self, *, kill: bool = False) -> None:
        """``exit`` politely; ``kill=True`` when it still holds a backlog it would drain first."""
        if self.proc.poll() is None and not kill:
            with contextlib.suppress(Exception):
                self.request("exit", timeout_s=60.0)
                self.proc.wait(30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")[-1500:]
            return f"\n--- {self.log_path} (tail) ---\n{text}"
        return ""


# --- the child's side -----------------------------------------------------------------------------
def make_policy(spec: str, settings: Any) -> Any:
    """``adaptive`` (from settings) or ``fixed:SIZE:WINDOW_S`` (faust ``take(SIZE, WINDOW_S)``)."""
    from streamproc.stream.batching import AdaptiveBatchController, FixedBatchPolicy

    if spec == "adaptive":
        return AdaptiveBatchController.from_settings(settings)
    kind, _, rest = spec.partition(":")
    size, _, window = rest.partition(":")
    if kind != "fixed" or not size.isdigit():
        raise ConfigError(f"unknown batching policy {spec!r}: adaptive | fixed:SIZE:WINDOW_S")
    return FixedBatchPolicy(size=int(size), window_s=float(window or 0))


def load_model(kind: str, config: dict[str, Any]) -> Any:
    """The contender's model: ``student`` (artifact), ``teacher`` (cached fp32), ``passthrough``."""
    if kind == "student":
        from streamproc.model.runtime import load_classifier

        load = functools.partial(
            load_classifier,
            Path(config["artifact"]),
            num_threads=int(config.get("model_threads") or 0) or None,
            runtime=config.get("runtime") or "auto",
        )
        if config.get("isolation", "process") == "process":
            from streamproc.model.process import ProcessClassifier

            return ProcessClassifier.start(load)
        return load()
    if kind == "teacher":
        from streamproc.compress.teacher_model import load_teacher_classifier

        return load_teacher_classifier(Path(config["cache_dir"]), config.get("labels") or ())
    if kind == "passthrough":
        from streamproc.testing import FakeClassifier

        return FakeClassifier(version="passthrough")  # no model cost: Kafka + Faust + pipeline
    raise ConfigError(f"unknown model kind {kind!r}")


def _counters(worker: Any) -> dict[str, float]:
    totals = dict.fromkeys(_COUNTERS, 0.0)
    for family in worker.metrics.registry.collect():
        for sample in family.samples:
            for name, (metric, labels) in _COUNTERS.items():
                if sample.name == metric and labels.items() <= sample.labels.items():
                    totals[name] += float(sample.value)
    return totals


def _loop_factory(config: dict[str, Any]) -> Any:
    """The contender's event loop: asyncio's own, or uvloop's."""
    if config.get("event_loop", "asyncio") == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _serve(config: dict[str, Any], proto: TextIO) -> None:
    from streamproc.settings import load_settings
    from streamproc.stream.app import create_worker
    from streamproc.stream.hot_reload import close_model
    from streamproc.testing import running_worker

    threads = int(config.get("model_threads") or 0)
    if config.get("switch_interval_s"):
        # Experiment knob: how long a thread holding the GIL runs before yielding to a waiting
        # one (Python's default 5 ms). The inference thread re-takes the GIL after every torch op.
        sys.setswitchinterval(float(config["switch_interval_s"]))
    if threads > 0 and config["model"] == "teacher":
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    model = load_model(config["model"], config)
    # Warm the model (first calls allocate, and lazy kernels get picked): timings start warm.
    for size in (1, 8, 1, 32):
        model.predict_batch(["warming up the model before the benchmark"] * size)

    def reply(**fields: Any) -> None:
        proto.write(json.dumps(fields) + "\n")
        proto.flush()

    reply(ok=True, event="ready", version=model.version, load_s=time.perf_counter() - started)
    stack = contextlib.ExitStack()
    worker: Any = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "start":
                settings = load_settings(**msg["settings"], model_threads=threads)
                policy = make_policy(msg["policy"], settings)
                batched = msg.get("ingress", "batched") == "batched"

                def factory(
                    settings: Any = settings, policy: Any = policy, batched: bool = batched
                ) -> Any:
                    return create_worker(
                        settings,
                        model=model,
                        policy=policy,
                        web_enabled=False,
                        batched_ingress=batched,
                    )

                worker = stack.enter_context(
                    running_worker(factory, loop_factory=_loop_factory(config))
                )
                reply(ok=True, event="started", policy=repr(policy))
            elif cmd == "mark":
                reply(ok=True, event="mark", counters=_counters(worker))
            elif cmd == "stop":
                counters = _counters(worker)
                t0 = time.perf_counter()
                stack.close()
                reply(ok=True, event="stopped", counters=counters, stop_s=time.perf_counter() - t0)
                worker = None
            elif cmd == "exit":
                break
            else:
                reply(ok=False, error=f"unknown command {cmd!r}")
        except Exception as exc:
            traceback.print_exc()
            reply(ok=False, error=f"{type(exc).__name__}: {exc}")
    stack.close()
    close_model(model)  # a model process: stop the child
    reply(ok=True, event="exited")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    config = json.loads(argv[0])
    # The protocol keeps the real stdout; anything else printed (Faust, warnings) goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        _serve(config, proto)
    except Exception as exc:
        traceback.print_exc()
        proto.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        proto.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
