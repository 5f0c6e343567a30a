"""The documented local-broker commands: start and stop twice in a row, no JVM left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamproc.broker.command import _alive

pytestmark = pytest.mark.kafka


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", "broker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_start_stop_twice_leaves_no_jvm(tmp_path: Path) -> None:
    env = {**os.environ, "STREAMPROC_BROKER_DIR": str(tmp_path / "broker")}
    for _ in range(2):
        started = _cli("start", "--port", "0", env=env)
        assert started.returncode == 0, started.stderr
        status = _cli("status", env=env)
        assert status.returncode == 0
        state = json.loads(status.stdout)
        assert state["bootstrap_servers"] == started.stdout.strip()
        metadata = AdminClient({"bootstrap.servers": state["bootstrap_servers"]}).list_topics(
            timeout=10
        )
        assert metadata.brokers, "a client's metadata request succeeds"
        stopped = _cli("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not _alive(int(state["pid"])), "the JVM is gone after stop"
        assert _cli("status", env=env).returncode == 1
    assert "not running" in _cli("stop", env=env).stdout


def test_stop_never_signals_a_pid_that_is_not_our_broker(tmp_path: Path) -> None:
    # A stale state file: its pid now belongs to some other process (here a sleep).
    state_dir = tmp_path / "broker"
    state_dir.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state = {"pid": bystander.pid, "bootstrap_servers": "127.0.0.1:1",
                 "data_dir": str(state_dir / "data"), "log": "x"}  # fmt: skip
        (state_dir / "state.json").write_text(json.dumps(state))
        env = {**os.environ, "STREAMPROC_BROKER_DIR": str(state_dir)}
        assert _cli("status", env=env).returncode == 1, "not reported as running"
        stopped = _cli("stop", env=env)
        assert stopped.returncode == 1
        assert f"pid {bystander.pid}" in stopped.stdout and "not our broker" in stopped.stdout
        assert bystander.poll() is None, "the bystander was not signalled"
        assert not (state_dir / "state.json").exists()
    finally:
        bystander.kill()
        bystander.wait()
