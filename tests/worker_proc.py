"""A worker process for fault tests: the real worker, serving a FakeClassifier.

Run as ``python -m tests.worker_proc`` with STREAMPROC_* set; the model runs where
``STREAMPROC_MODEL_ISOLATION`` says, as in ``streamproc worker`` (by default in a child process,
which builds the same FakeClassifier from the same FAKE_* variables). ``FAKE_COST_S`` /
``FAKE_COST_PER_ITEM_S`` make batches take time, so a kill lands mid-stream;
``FAKE_STARTED_FILE`` is created when the first batch reaches the model (a test can then kill it
mid-batch); ``FAKE_LOOP_DIES_AFTER=N`` breaks the batch loop after N batches;
``FAKE_HANG_AFTER=N`` makes model call N+1 hang forever (it never returns nor raises, like a
wedged runtime), or for ``FAKE_HANG_S`` seconds if set; with ``FAKE_CALL_LOG=FILE`` calls are
counted across model processes and every call after the N-th hangs (a runtime that stays wedged
through restarts); ``FAKE_HANG_ON=PREFIX`` makes every call whose batch holds a text starting
with PREFIX hang forever (a poison event); ``FAKE_NO_DECLARE=1`` keeps the worker from creating
missing topics (it subscribes to an input topic that may not exist yet);
``FAKE_MISSING_TOPIC_REFRESH_S`` overrides how often it re-reads metadata that lacks the input
topic. Faust's Worker
handles SIGTERM/SIGINT (graceful) exactly as ``streamproc worker`` does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust

from streamproc.model.process import ProcessClassifier
from streamproc.settings import load_settings
from streamproc.stream import consumer
from streamproc.stream.app import create_worker
from streamproc.testing import FakeClassifier


def build_model() -> FakeClassifier:
    """The FakeClassifier the FAKE_* variables describe (also the model process's loader)."""
    model = FakeClassifier(
        version=os.environ.get("FAKE_VERSION", "fake-1"),
        cost_s=float(os.environ.get("FAKE_COST_S", "0")),
        cost_per_item_s=float(os.environ.get("FAKE_COST_PER_ITEM_S", "0")),
    )
    started_file = os.environ.get("FAKE_STARTED_FILE")
    hang_after = os.environ.get("FAKE_HANG_AFTER")
    hang_s = float(os.environ["FAKE_HANG_S"]) if os.environ.get("FAKE_HANG_S") else None
    hang_on = os.environ.get("FAKE_HANG_ON")
    call_log = os.environ.get("FAKE_CALL_LOG")
    calls = [0]

    def on_batch(texts: Sequence[str]) -> None:
        if started_file:
            Path(started_file).touch()
        if hang_on and any(text.startswith(hang_on) for text in texts):
            threading.Event().wait()  # a poison event: the model hangs on it, every time
        calls[0] += 1
        if call_log:  # counted across processes: a restarted model process stays wedged
            with open(call_log, "ab") as handle:
                handle.write(b".")
                calls[0] = handle.tell()
        if hang_after and (
            calls[0] > int(hang_after) if call_log else calls[0] == int(hang_after) + 1
        ):
            logging.getLogger("tests.worker_proc").warning(
                "model call %d hangs (FAKE_HANG_AFTER=%s)", calls[0], hang_after
            )
            threading.Event().wait(hang_s)  # None: forever

    model.on_batch = on_batch
    return model


def main() -> None:
    settings = load_settings()
    logging.basicConfig(  # STREAMPROC_LOG_LEVEL, as `streamproc worker` does
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    model: Any
    if settings.model_isolation == "process":  # the model in a child process, as by default
        # By its importable name: this module runs as __main__, which the child is not.
        from tests.worker_proc import build_model as loader

        model = ProcessClassifier.start(loader)
    else:
        model = build_model()
    worker = create_worker(settings, model=model, web_enabled=os.environ.get("FAKE_WEB") == "1")
    worker.app.model_slot = worker.slot  # stopped with the worker, as `streamproc worker` does
    if os.environ.get("FAKE_MISSING_TOPIC_REFRESH_S"):
        consumer.MISSING_TOPIC_REFRESH_S = float(os.environ["FAKE_MISSING_TOPIC_REFRESH_S"])
    if os.environ.get("FAKE_NO_DECLARE") == "1":
        worker.app.conf.topic_allow_declare = False
    dies_after = os.environ.get("FAKE_LOOP_DIES_AFTER")
    if dies_after:  # an unexpected bug in the pipeline: its batch loop dies after N batches
        encode, batches = worker.pipeline._encode, [0]

        def broken_encode(*args: Any, **kwargs: Any) -> Any:
            batches[0] += 1
            if batches[0] > int(dies_after):
                raise RuntimeError("injected pipeline bug")
            return encode(*args, **kwargs)

        worker.pipeline._encode = broken_encode  # type: ignore[method-assign]
    faust.Worker(worker.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
