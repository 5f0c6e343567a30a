"""Large events under a memory cap: the byte bound (STREAMPROC_MAX_BUFFERED_BYTES), not the
event count, decides how much a worker holds.

~94 MiB of 200-KiB events wait in Kafka for a slow model. Bounded by count alone (4,096 events)
the worker would take all of them in — their raw bytes, the decoded texts and the batches sent to
the model process. With a 4-MiB byte bound it holds a few MiB of them at a time: the worker's
memory (its model process included) may grow by far less than the backlog, and every event is
still predicted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import WorkerProcess, collect, make_settings, produce_payloads

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]

EVENTS = 480
TEXT_BYTES = 200 * 1024
BYTE_BOUND = 4 * 1024 * 1024
#: Growth allowed over the idle worker (measured here: ~30 MiB with the 4-MiB bound; 314 MiB
#: with the bound lifted, the whole ~94-MiB backlog taken in, decoded and copied).
GROWTH_CAP_MIB = 64


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (the model process), in MiB."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rss_kib = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            total += int(rss_kib.split()[1]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def test_large_events_are_held_by_bytes_not_by_count(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1, max_buffered_bytes=BYTE_BOUND)
    worker = WorkerProcess(
        settings,
        name="big",
        log_dir=tmp_path,
        env={"FAKE_COST_S": "0.02", "FAKE_COST_PER_ITEM_S": "0.01"},  # ~80 events/s
    )
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss_mib(worker.proc.pid))

    try:
        # Let it start (one small event through), then measure the idle worker.
        produce_payloads(settings, [(b"warm", orjson.dumps({"id": "warm", "text": "hi"}))])
        collect(settings, settings.output_topic, 1, unique=unique, timeout_s=120)
        time.sleep(1.0)
        idle = peak[0] = _tree_rss_mib(worker.proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        filler = "x" * TEXT_BYTES
        produce_payloads(
            settings,
            [
                (f"k{i}".encode(), orjson.dumps({"id": f"big-{i}", "text": f"{i} {filler}"}))
                for i in range(EVENTS)
            ],
        )
        records = collect(
            settings, settings.output_topic, EVENTS + 1, unique=f"{unique}-all", timeout_s=180
        )
        done.set()
        sampler.join()
    finally:
        done.set()
        worker.stop()
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert {f"big-{i}" for i in range(EVENTS)} <= ids, worker.log_tail()
    growth = peak[0] - idle
    print(f"\nidle {idle:.0f} MiB, peak {peak[0]:.0f} MiB, growth {growth:.0f} MiB")
    assert growth < GROWTH_CAP_MIB, (idle, peak[0])
