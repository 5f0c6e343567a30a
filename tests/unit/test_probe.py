"""The container HEALTHCHECK probe against a real local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streamproc.tools.probe import main, probe


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/livez" else 503)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_probe_passes_on_200_and_names_the_failure_otherwise(server: int) -> None:
    assert probe("/livez", port=server) is None
    assert probe("/readyz", port=server) == f"http://127.0.0.1:{server}/readyz: HTTP 503"


def test_probe_reads_the_port_from_the_settings(
    server: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMPROC_WEB_PORT", str(server))
    assert main(["/livez"]) == 0
    monkeypatch.setenv("STREAMPROC_WEB_PORT", "1")  # nothing listens there
    assert main(["/livez"]) == 1
    assert "unhealthy: http://127.0.0.1:1/livez" in capsys.readouterr().err
