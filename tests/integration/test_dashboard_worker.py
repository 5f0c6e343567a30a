"""The live dashboard of a real worker process, fed through a real broker, in headless Chromium."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streamproc.broker import free_port
from tests.helpers import WorkerProcess, collect, make_settings, produce_payloads, text_events
from tests.integration.test_dashboard import ARTIFACTS, _render, find_chromium

pytestmark = pytest.mark.kafka


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_of_a_running_worker(kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    chromium = find_chromium()
    port = free_port()
    settings = make_settings(kafka_bootstrap, unique, web_port=port)
    worker = WorkerProcess(
        settings, name="web", log_dir=tmp_path, env={"FAKE_WEB": "1", "FAKE_VERSION": "dash-v7"}
    )
    try:
        produce_payloads(settings, [*text_events(1500), (b"bad", b"{oops")])
        collect(settings, settings.output_topic, 1500, unique=unique, timeout_s=120)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/dashboard/data.json", timeout=10) as response:
            data = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        # Only our routes: Faust's own pages (which list the app, its topics and tables) are off.
        faust_pages = {
            path: _status(f"{base}{path}") for path in ("/", "/router/", "/table/", "/graph/")
        }
        ours = {path: _status(f"{base}{path}") for path in ("/livez", "/readyz", "/healthz")}
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "dashboard-worker.png"
        dom = _render(chromium, f"{base}/dashboard/", screenshot)
    finally:
        worker.stop()
    assert faust_pages == dict.fromkeys(faust_pages, 404), faust_pages
    assert ours == dict.fromkeys(ours, 200), ours
    assert data["model_version"] == "dash-v7"
    assert data["totals"]["produced"] >= 1500, data["totals"]
    assert data["dead_letters"] == {"malformed_json": 1}
    assert "streamproc_predictions_produced_total" in metrics
    assert 'streamproc_dead_letters_total{reason="malformed_json"} 1.0' in metrics
    assert dom.text["status"].strip() == "live"
    assert dom.text["model-version"].strip() == "dash-v7"
    assert {row["data-reason"] for row in dom.rows if row.get("data-reason")} == {"malformed_json"}
    assert screenshot.read_bytes().startswith(b"\x89PNG")
