"""A classifier served from a child process: the model's Python work never takes the worker's GIL.

In a thread, a model call is not only the runtime's graph (which releases the GIL): tokenizing,
padding, the softmax and building one :class:`Prediction` per text all hold the GIL, and each
hand-back waits for the event loop to let go of it. Measured on 2 cores (``docs/results/
bench-egress``), the student then took 1.4–2.1× its time alone, and the worker process never used
more than one core. :class:`ProcessClassifier` runs any :class:`TextClassifier` in a child
interpreter instead; the worker's event loop sends a batch's texts over a socket pair and is woken
(``loop.add_reader``, no thread) when the predictions come back.

- The child is ``python -m streamproc.model.process FD``: a fresh interpreter (no fork of a
  process holding librdkafka's and the loop's threads). It gets the parent's ``sys.path`` first,
  then a picklable *loader* (a module-level function and its arguments) that builds the model.
- Messages are pickled (``multiprocessing.connection`` framing): for a batch of 64 TREC questions
  a few kilobytes each way, well under the model's own time (the bench reports the round trip
  next to the model's time, which the child measures itself).
- A child that dies (crash, OOM kill) fails every call in flight with :class:`ModelProcessDied`,
  which the pipeline treats as fatal: the worker stops loudly rather than dead-lettering events
  for a model that is gone. When the worker dies, the child sees its socket close and exits.
- :meth:`ProcessClassifier.close` lets the child answer what it was sent, then stops it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from streamproc.errors import ModelError, ModelProcessDied, StreamprocError
from streamproc.model.base import ClassifierIdentity, Prediction, TextClassifier

__all__ = ["ProcessClassifier"]

log = logging.getLogger(__name__)

#: How long a child may take to import and load its model (ONNX Runtime: ~1 s; a large
#: Hugging Face model from disk: tens of seconds).
LOAD_TIMEOUT_S = 300.0
#: How long close() waits for a child to exit by itself before killing it.
_CLOSE_GRACE_S = 10.0


class ProcessClassifier(ClassifierIdentity):
    """A :class:`TextClassifier` whose model lives in a child process.

    ``predict_batch`` (blocking) serves the contract's checks and offline callers;
    :meth:`predict_batch_async` is what the pipeline awaits on the event loop, and it also
    returns the seconds the model took inside the child. The child answers calls in the order
    they were sent; a blocking call is refused while asynchronous ones are outstanding.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        conn: Connection,
        *,
        version: str,
        labels: Sequence[str],
        max_tokens: int,
        runtime: str,
        loader: Callable[[], TextClassifier] | None = None,
        load_timeout_s: float = LOAD_TIMEOUT_S,
    ) -> None:
        super().__init__(version=version, labels=labels, max_tokens=max_tokens)
        self.runtime = runtime
        self.pid = process.pid
        self._process = process
        self._conn = conn
        self._busy = threading.Lock()  # one request at a time, whichever path sends it
        self._pending: collections.deque[asyncio.Future[tuple[list[Prediction], float]]] = (
            collections.deque()
        )
        self._reader: asyncio.AbstractEventLoop | None = None
        self._dead: str | None = None  # why the child is gone, once it is
        self._closing = False
        self._loader = loader  # what restart() builds the model with again (None: no restart)
        self._load_timeout_s = load_timeout_s

    # -- start -----------------------------------------------------------------------------
    @classmethod
    def start(
        cls, loader: Callable[[], TextClassifier], *, timeout_s: float = LOAD_TIMEOUT_S
    ) -> ProcessClassifier:
        """Start a child, build the model there with ``loader()`` and wait until it serves.

        ``loader`` must be picklable (a module-level function, or a ``functools.partial`` of
        one). Its :class:`~streamproc.errors.StreamprocError` is raised here again, same type
        and message; anything else it raises becomes a :class:`ModelError`.
        """
        process, conn, (version, labels, max_tokens, runtime) = _spawn(loader, timeout_s)
        return cls(
            process,
            conn,
            version=version,
            labels=labels,
            max_tokens=max_tokens,
            runtime=runtime,
            loader=loader,
            load_timeout_s=timeout_s,
        )

    async def restart(self) -> None:
        """Replace the child with a fresh one built by the same loader: for a call that hung.

        The call in flight is given up (its caller's wait was already cancelled); the old child
        is killed. Awaited on the event loop (the new child loads in a worker thread)."""
        if self._loader is None:
            raise ModelError("this model process cannot be restarted (no loader)")
        self._abandon_calls()
        old_process, old_conn = self._process, self._conn
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(_stop, old_process, old_conn, grace_s=0))
        process, conn, identity = await loop.run_in_executor(
            None, _spawn, self._loader, self._load_timeout_s
        )
        if identity[0] != self._version:
            _stop(process, conn, grace_s=0)
            raise ModelError(
                f"the restarted model process serves {identity[0]!r}, not {self._version!r}"
            )
        self._process, self._conn, self.pid = process, conn, process.pid
        self._dead = None
        log.warning("model %s restarted in child process %d", self._version, process.pid)

    # -- calls -----------------------------------------------------------------------------
    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order (blocking)."""
        if not self._busy.acquire(blocking=False):
            raise ModelError("the model process is already serving a call")
        try:
            self._check_alive()
            if self._pending:  # their answers come first, and only the loop's reader reads them
                raise ModelError("the model process is serving asynchronous calls")
            try:
                self._conn.send(list(texts))
                reply = self._conn.recv()
            except (EOFError, OSError):
                self._died()
                raise ModelProcessDied(self._dead or "the model process died") from None
            return _unpack(reply)[0]
        finally:
            self._busy.release()

    async def predict_batch_async(self, texts: Sequence[str]) -> tuple[list[Prediction], float]:
        """One prediction per text, in order, and the model's own seconds in the child.

        Awaited on the event loop, which is woken when the answer arrives. Cancelling the wait
        (a timeout) leaves the call to the child: its answer is then read and dropped."""
        if not self._busy.acquire(blocking=False):
            raise ModelError("the model process is already serving a call")
        try:
            self._check_alive()
            loop = asyncio.get_running_loop()
            future: asyncio.Future[tuple[list[Prediction], float]] = loop.create_future()
            if self._reader is None:
                loop.add_reader(self._conn.fileno(), self._on_readable)
                self._reader = loop
            self._pending.append(future)
            try:
                self._conn.send(list(texts))  # the child reads as we write: never blocks long
            except OSError:
                self._pending.remove(future)  # raised here, not through the future
                self._died()
                raise ModelProcessDied(self._dead or "the model process died") from None
        finally:
            self._busy.release()
        return await future

    def _on_readable(self) -> None:
        """The loop's reader: resolve the oldest call with the child's answer."""
        try:
            while self._conn.poll():
                reply = self._conn.recv()
                future = self._pending.popleft()
                if future.cancelled():
                    continue
                try:
                    future.set_result(_unpack(reply))
                except ModelError as exc:
                    future.set_exception(exc)
        except (EOFError, OSError):
            self._died()
        if not self._pending and self._reader is not None:
            self._reader.remove_reader(self._conn.fileno())
            self._reader = None

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise ModelProcessDied(self._dead)
        if self._closing:
            raise ModelError(f"model {self._version}'s process is closed")

    def _died(self) -> None:
        """The child's socket closed: it is gone. Fail every call in flight."""
        if self._dead is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)  # its socket closed: it is exiting
            self._dead = (
                f"the process serving model {self._version} (pid {self.pid}) exited: "
                f"{_exit_description(self._process)}"
            )
            if not self._closing:
                log.critical("%s", self._dead)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.remove_reader(self._conn.fileno())
            self._reader = None
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(ModelProcessDied(self._dead))

    # -- stop ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A call was sent and its answer not yet read."""
        return bool(self._pending)

    def _abandon_calls(self) -> None:
        """Stop reading answers and give up every call in flight (on the event loop)."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.remove_reader(self._conn.fileno())
            self._reader = None
        for future in self._pending:
            if not future.done():
                future.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Stop the child: at once if a call is still outstanding (nobody waits for it any
        more: a timed-out, maybe hung call), else once it exits by itself (killed after a grace
        period). Blocking; idempotent."""
        if self._closing:
            return
        self._closing = True
        abandoned = bool(self._pending)
        self._abandon_calls()
        _stop(self._process, self._conn, grace_s=0 if abandoned else _CLOSE_GRACE_S)


def _spawn(
    loader: Callable[[], TextClassifier], timeout_s: float
) -> tuple[subprocess.Popen[bytes], Connection, tuple[str, tuple[str, ...], int, str]]:
    """A child serving ``loader()``'s model: its process, our end of the socket, and the model's
    version, labels, window and runtime."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamproc.model.process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    try:
        conn.send(list(sys.path))  # so the loader's module imports as it does here
        conn.send((loader, logging.getLogger().getEffectiveLevel()))
        if not conn.poll(timeout_s):
            raise ModelError(f"the model process did not load its model within {timeout_s:g}s")
        reply = conn.recv()
    except (EOFError, OSError) as exc:
        _stop(process, conn, grace_s=0)
        raise ModelProcessDied(
            f"the model process exited while loading its model "
            f"({_exit_description(process)}; {type(exc).__name__})"
        ) from None
    except BaseException:
        _stop(process, conn, grace_s=0)
        raise
    if reply[0] == "error":
        _stop(process, conn, grace_s=_CLOSE_GRACE_S)
        raise _rebuild_error(reply[1], reply[2])
    _, version, labels, max_tokens, runtime = reply
    log.info("model %s serves from child process %d", version, process.pid)
    return process, conn, (version, tuple(labels), int(max_tokens), runtime)


def _stop(process: subprocess.Popen[bytes], conn: Connection, *, grace_s: float) -> None:
    with contextlib.suppress(OSError):
        conn.send(None)  # "no more calls": the child answers what it has, then exits
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        if grace_s:
            log.warning("model process %d did not stop in %gs: killing it", process.pid, grace_s)
        process.kill()
        process.wait()
    conn.close()


def _exit_description(process: subprocess.Popen[bytes]) -> str:
    code = process.poll()
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _unpack(reply: tuple[Any, ...]) -> tuple[list[Prediction], float]:
    if reply[0] == "ok":
        return reply[1], reply[2]
    raise ModelError(reply[1])  # the model raised on this batch: the pipeline bisects it


def _rebuild_error(kind: str, message: str) -> StreamprocError:
    """The child's load failure, as the same streamproc error type where it is one."""
    import streamproc.errors as errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, StreamprocError) and cls is not errors.EventError:
        return cls(message)
    return ModelError(f"loading the model failed: {kind}: {message}")


# -- the child ---------------------------------------------------------------------------------
def _exit_with_parent(interval_s: float = 0.5) -> None:
    """End this process once the worker that started it is gone, even while the model is stuck
    in a call (then nobody reads the socket's end-of-file): a daemon thread watches the parent
    pid. (``PR_SET_PDEATHSIG`` would fire when the *thread* that started us exits, which the
    worker's executor threads may do.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="streamproc-parent-watch", daemon=True).start()


def _serve(conn: Connection) -> None:
    """Load the model, answer ``texts`` messages until ``None`` or the parent goes away."""
    # Ctrl-C, or a SIGTERM sent to the whole process group, is the worker's to handle: it
    # drains (with this model) and then stops us. A worker that dies closes our socket, and
    # the watch thread ends us if we are stuck in a model call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    try:
        paths = conn.recv()
        sys.path[:0] = [p for p in paths if p not in sys.path]
        loader, level = conn.recv()
        logging.basicConfig(level=level, format="%(levelname)s model-process: %(message)s")
        model = loader()
    except EOFError:
        return
    except Exception as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(
        (
            "ready",
            model.version,
            tuple(model.labels),
            model.max_tokens,
            getattr(model, "runtime", "custom"),
        )
    )
    while True:
        try:
            texts = conn.recv()
        except EOFError:
            return  # the worker is gone
        if texts is None:
            return
        started = time.perf_counter()
        try:
            predictions = model.predict_batch(texts)
            reply: tuple[Any, ...] = ("ok", predictions, time.perf_counter() - started)
        except Exception as exc:
            reply = ("failed", f"{type(exc).__name__}: {exc}"[:2000])
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:  # unpicklable
            conn.send(("failed", f"the model's answer cannot be sent back: {exc}"))


def main(argv: Sequence[str]) -> None:
    conn = Connection(int(argv[0]))
    try:
        _serve(conn)
    finally:
        conn.close()
        sys.stdout.flush()
        os._exit(0)  # no interpreter teardown: the model's runtime threads need no joining


if __name__ == "__main__":
    main(sys.argv[1:])
