"""`make demo` as a new user runs it: no model published, no artifacts built — the shipped TREC
classifier must be served and score like a real model."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_demo_serves_the_shipped_model_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        web_port = s.getsockname()[1]
    env = {**os.environ, "STREAMPROC_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "streamproc", "demo", "--count", "150", "--rate", "100",
         "--model-dir", str(tmp_path / "models"), "--web-port", str(web_port)],
        cwd=tmp_path,  # a fresh directory: no artifacts/, no models/
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "resources/models/trec" in out, "the shipped artifact was published"
    summary = re.search(r"(\d+)/150 events predicted .*accuracy vs\. TREC labels ([\d.]+)%", out)
    assert summary, out[-3000:]
    assert int(summary.group(1)) == 150
    assert float(summary.group(2)) >= 90.0, out[-3000:]
    assert "dead-lettered: 3" in out
