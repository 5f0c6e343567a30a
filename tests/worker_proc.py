"""A worker process for fault tests: the real worker, serving a FakeClassifier.

Run as ``python -m tests.worker_proc`` with STREAMPROC_* set. ``FAKE_COST_S`` /
``FAKE_COST_PER_ITEM_S`` make batches take time, so a kill lands mid-stream;
``FAKE_STARTED_FILE`` is created when the first batch reaches the model (a test can then kill it
mid-batch). Faust's Worker handles SIGTERM/SIGINT (graceful) exactly as ``streamproc worker`` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust

from streamproc.settings import load_settings
from streamproc.stream.app import create_worker
from streamproc.testing import FakeClassifier


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    model = FakeClassifier(
        version=os.environ.get("FAKE_VERSION", "fake-1"),
        cost_s=float(os.environ.get("FAKE_COST_S", "0")),
        cost_per_item_s=float(os.environ.get("FAKE_COST_PER_ITEM_S", "0")),
    )
    started_file = os.environ.get("FAKE_STARTED_FILE")
    if started_file:
        model.on_batch = lambda texts: Path(started_file).touch()
    worker = create_worker(settings, model=model, web_enabled=os.environ.get("FAKE_WEB") == "1")
    faust.Worker(worker.app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
