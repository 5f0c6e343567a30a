"""``/livez`` and ``/readyz`` of a real worker process against a real broker.

The worker's model stalls once (one call takes 8 s) with ``STREAMPROC_READY_STALL_S=2``: the
worker must be ready while idle, not ready (``stalled``) while records sit outstanding with
nothing settling, alive throughout, and ready again once they settle.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streamproc.broker import free_port
from tests.helpers import LiveCollector, WorkerProcess, make_settings, produce_payloads, text_events

pytestmark = pytest.mark.kafka


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:  # not listening yet
        return 0, {}


def _poll(url: str, accept: Any, timeout_s: float) -> tuple[int, dict[str, Any], list[str]]:
    """GET ``url`` every 0.2 s until ``accept(status, body)``; also the reasons seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    status, body = 0, dict[str, Any]()
    while time.monotonic() < deadline:
        status, body = _get(url)
        reason = body.get("reason", str(status))
        if not seen or seen[-1] != reason:
            seen.append(reason)
        if accept(status, body):
            return status, body, seen
        time.sleep(0.2)
    raise AssertionError(f"{url}: last {status} {body}; reasons seen {seen}")


def test_readyz_reports_a_stall_and_recovers_while_livez_stays_up(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(
        kafka_bootstrap,
        unique,
        partitions=1,
        web_port=port,
        max_batch_size=10,
        ready_stall_s=2,
        inference_timeout_s=60,  # the stall is slow, not hung: the worker must not stop
    )
    base = f"http://127.0.0.1:{port}"
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    worker = WorkerProcess(
        settings,
        name="ready",
        log_dir=tmp_path,
        env={"FAKE_WEB": "1", "FAKE_HANG_AFTER": "2", "FAKE_HANG_S": "8"},
    )
    try:
        _poll(f"{base}/livez", lambda s, b: s == 200, 90)
        status, body, before = _poll(f"{base}/readyz", lambda s, b: b.get("reason") == "ok", 90)
        assert body["status"] == "ready" and body["reason"] == "ok", body
        assert body["assigned_partitions"] == 1, body

        produce_payloads(settings, text_events(100))
        status, stalled, _ = _poll(f"{base}/readyz", lambda s, b: b.get("reason") == "stalled", 30)
        assert status == 503, stalled
        assert stalled["status"] == "not_ready"
        assert stalled["outstanding"] > 0 and stalled["stalled_for_s"] > 2, stalled
        assert "STREAMPROC_READY_STALL_S=2" in stalled["detail"], stalled
        live_status, live = _get(f"{base}/livez")
        assert live_status == 200 and live["status"] == "alive", "the event loop still turns"

        status, body, _ = _poll(f"{base}/readyz", lambda s, b: s == 200, 30)
        assert body["reason"] == "ok", body
        assert collector.wait_for_ids({f"e-{i}" for i in range(100)}, 60), worker.log_tail()
    finally:
        worker.stop()
        collector.stop()
    assert worker.proc.returncode == 0, worker.log_tail()
    assert "model call 3 hangs" in worker.log_path.read_text()
    print(f"\n/readyz before ready: {before}; stalled: {stalled['detail']}")
