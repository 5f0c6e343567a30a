"""The worker's web pages on a real Faust web server, and the live page in headless Chromium.

By default the server is Faust's own web service (``app.web``: aiohttp, the same code path a
worker runs) started alone in a thread, serving a :class:`StreamMetrics` fed with synthetic
activity; no broker is needed. Point ``DASHBOARD_URL`` at a running worker
(e.g. ``http://127.0.0.1:6066``) to run the same checks against it instead.

The Chromium test needs Debian's ``chromium`` (``apt-get install -y --no-install-recommends
chromium``). Without it the test fails when ``CI`` is set and is skipped otherwise. Its
screenshot is kept at ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import faust
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamproc.broker import free_port
from streamproc.stream.dashboard import register_web
from streamproc.stream.metrics import METRIC_NAMES, StreamMetrics

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
INSTALL_HINT = "apt-get update && apt-get install -y --no-install-recommends chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: this machine has no internet
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

MODEL_VERSION = "v2026.11.22-int8"
LAGS = {0: 1234, 1: 56, 2: 0, 3: 789}
INPUT_TOPIC = "streamproc-input"
DEAD = {"malformed_json": 3, "empty_text": 2, "payload_too_large": 1}


@dataclass
class Server:
    url: str  # base, no trailing slash
    metrics: StreamMetrics | None  # None: an external worker


def _synthetic_metrics() -> StreamMetrics:
    m = StreamMetrics()
    m.set_model_version("v-old")
    m.set_model_version(MODEL_VERSION)
    m.record_model_reload(ok=True)
    m.record_model_reload(ok=False)
    for partition, lag in LAGS.items():
        m.set_lag(INPUT_TOPIC, partition, lag)
    m.set_lag(INPUT_TOPIC, 9, 5)
    m.forget_partition(INPUT_TOPIC, 9)  # revoked: must not show up
    m.record_consumed(2010 + sum(DEAD.values()))
    for reason, n in DEAD.items():
        for _ in range(n):
            m.record_dead_letter(reason)
    for size, target in ((16, 32), (64, 64), (48, 64)):
        m.record_batch(
            size=size, wait_s=0.004, inference_s=0.002 + size * 0.0004, target_size=target
        )
    m.record_predictions([(i % 100 + 1) / 1000 for i in range(2000)] + [None] * 10)
    m.set_buffered(17)
    return m


@contextlib.contextmanager
def serve(metrics: StreamMetrics) -> Iterator[str]:
    """Faust's web service (only it: no broker) serving ``metrics`` in a thread; yields the URL."""
    port = free_port()
    started = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            app = faust.App(
                f"streamproc-dashboard-test-{port}",
                broker="kafka://127.0.0.1:1",  # never contacted: only the web service starts
                web_host="127.0.0.1",
                web_bind="127.0.0.1",
                web_port=port,
                loop=loop,
            )
            register_web(app, metrics)

            async def main() -> None:
                stop = state["stop"] = asyncio.Event()
                await app.web.start()
                started.set()
                await stop.wait()
                await app.web.stop()

            state["loop"] = loop
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test below
            state["error"] = exc
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="dashboard-test-web", daemon=True)
    thread.start()
    assert started.wait(30), "Faust web server did not start within 30 s"
    if "error" in state:
        raise state["error"]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "Faust web server thread did not stop"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    external = os.environ.get("DASHBOARD_URL")
    if external:
        yield Server(external.rstrip("/"), None)
        return
    metrics = _synthetic_metrics()
    with serve(metrics) as url:
        yield Server(url, metrics)


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


# --------------------------------------------------------------------------- HTTP
def test_metrics_endpoint_is_prometheus_text_with_our_names(server: Server) -> None:
    status, content_type, body = _get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(body.decode()))
    sample_names = {s.name for f in families for s in f.samples}
    for name in METRIC_NAMES:
        assert name in sample_names or f"{name}_bucket" in sample_names, name
    # Faust's own sensors share the registry, under their own prefix
    assert any(f.name.startswith("faust_") for f in families)
    if server.metrics is not None:
        lag = {
            s.labels["partition"]: s.value
            for f in families
            for s in f.samples
            if s.name == "streamproc_consumer_lag"
        }
        assert lag == {str(p): float(v) for p, v in LAGS.items()}
        info = [s.labels for f in families for s in f.samples if s.name == "streamproc_model_info"]
        assert info == [{"version": MODEL_VERSION}]


def test_data_json_is_the_snapshot(server: Server) -> None:
    status, content_type, body = _get(f"{server.url}/dashboard/data.json")
    assert status == 200
    assert content_type.startswith("application/json")
    data = json.loads(body)
    for key in ("ts", "uptime_s", "model_version", "totals", "throughput", "lag", "batch"):
        assert key in data
    assert {"p50", "p95", "p99", "max"} <= set(data["latency_ms"])
    if server.metrics is not None:
        assert data["model_version"] == MODEL_VERSION
        assert data["lag"]["total"] == sum(LAGS.values())
        assert data["dead_letters"] == dict(sorted(DEAD.items()))


def test_healthz_and_pages(server: Server) -> None:
    status, content_type, body = _get(f"{server.url}/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, content_type, body = _get(f"{server.url}/dashboard/")
    assert status == 200
    assert content_type.startswith("text/html")
    # self-contained: nothing is loaded from another origin
    page = body.decode()
    assert "<script src" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
    status, content_type, body = _get(f"{server.url}/dashboard")  # redirect is followed
    assert status == 200
    assert content_type.startswith("text/html")


def test_livez_and_readyz(server: Server) -> None:
    status, content_type, body = _get(f"{server.url}/livez")
    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body)["status"] == "alive"
    status, content_type, body = _get(f"{server.url}/readyz")
    assert content_type.startswith("application/json")
    ready = json.loads(body)
    assert status == (200 if ready["status"] == "ready" else 503)
    assert ready["reason"] and ready["detail"]
    if server.metrics is not None:  # a web server without a pipeline is never ready
        assert status == 503
        assert ready["reason"] == "not_started"


@pytest.mark.parametrize(
    "path", ["/metrics", "/dashboard/", "/dashboard/data.json", "/healthz", "/livez", "/readyz"]
)
def test_pages_are_read_only(server: Server, path: str) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, _, _ = _get(f"{server.url}{path}", method=method)
        assert status == 405, (method, path, status)


# --------------------------------------------------------------------------- Chromium
def find_chromium() -> str:
    """Chromium's path; fails (in CI) or skips (elsewhere) the calling test without it."""
    for candidate in (os.environ.get("CHROMIUM_BIN"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    message = f"headless Chromium not found; install it with: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


class _ById(HTMLParser):
    """Text and attributes of every element that has an id, plus table rows with data-*."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.rows: list[dict[str, str | None]] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, id)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        ident = a.get("id")
        if ident:
            self.attrs[ident] = a
            self.text.setdefault(ident, "")
        if tag == "tr" and ("data-partition" in a or "data-reason" in a):
            self.rows.append(a)
        if tag not in {"meta", "link", "br", "img", "input", "canvas"}:
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text[ident] += data


def _render(chromium: str, url: str, screenshot: Path) -> _ById:
    """Load ``url`` in headless Chromium, let its JS poll for 3 s (virtual time), dump the DOM."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    parser = _ById()
    parser.feed(done.stdout)
    assert parser.text, f"chromium dumped no DOM; stderr: {done.stderr[-2000:]}"
    return parser


def test_dashboard_renders_live_values_in_chromium(server: Server) -> None:
    chromium = find_chromium()  # in the test, not a fixture: a missing browser FAILS in CI
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)

    dom = _render(chromium, f"{server.url}/dashboard/", screenshot)
    data = json.loads(_get(f"{server.url}/dashboard/data.json")[2])

    # the page polled data.json: its placeholders were replaced by the snapshot's values
    assert dom.text["status"].strip() == "live", dom.text["status"]
    assert dom.text["model-version"].strip() == data["model_version"]
    partitions = {row["data-partition"] for row in dom.rows if row.get("data-partition")}
    assert partitions == {f"{p['topic']}/{p['partition']}" for p in data["lag"]["partitions"]}
    reasons = {row["data-reason"] for row in dom.rows if row.get("data-reason")}
    assert reasons == set(data["dead_letters"])
    for ident in ("tp-in", "tp-out", "lag-total", "lat-p50", "lat-p95", "lat-p99", "batch-target"):
        assert dom.attrs[ident].get("data-value") is not None, f"#{ident} was not filled in"

    if server.metrics is not None:  # synthetic activity: exact values
        assert dom.text["model-version"].strip() == MODEL_VERSION
        assert dom.text["lag-total"].strip() == f"{sum(LAGS.values()):,}"  # 2,079
        assert dom.attrs["lag-total"]["data-value"] == str(sum(LAGS.values()))
        assert dom.text["dead-total"].strip() == str(sum(DEAD.values()))
        assert dom.text["batch-last"].strip() == "48"
        assert dom.text["batch-target"].strip() == "64"
        lat = data["latency_ms"]
        assert float(dom.attrs["lat-p99"]["data-value"] or "nan") == lat["p99"]
        assert dom.text["lat-p99"].strip() == f"{lat['p99']:.1f}".removesuffix(".0")
        assert 1.0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] <= 100.0
        assert "1,234" in dom.text["lag-table"]
        assert dom.text["tot-reload-refused"].strip() == "1"

    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "screenshot is not a PNG"
    assert len(png) > 10_000, "screenshot is suspiciously small (blank page?)"


def test_dashboard_of_a_worker_that_has_seen_nothing_yet(tmp_path: Path) -> None:
    """A fresh worker (no events, no partitions, no model yet): the page renders, no JS error."""
    chromium = find_chromium()
    with serve(StreamMetrics()) as url:
        dom = _render(chromium, f"{url}/dashboard/", tmp_path / "empty.png")
    # render() throwing would turn the status into "offline: <error>"
    assert dom.text["status"].strip() == "live", dom.text["status"]
    assert dom.text["model-version"].strip() == "–"
    assert dom.text["lag-total"].strip() == "0"
    assert dom.text["lat-p99"].strip() == "–"
    assert "no partitions assigned" in dom.text["lag-table"]
    assert "none" in dom.text["dead-table"]
