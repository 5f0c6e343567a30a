"""``streamproc broker start|stop|status|fetch``: a detached broker for development.

The state (pid, address, data directory) lives in ``STREAMPROC_BROKER_DIR``'s ``state.json``;
``stop`` signals a pid only if it still runs our broker (a stale file's pid may be anything).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from streamproc.broker.jars import DEFAULT_KAFKA_VERSION, ensure_kafka_jars
from streamproc.broker.local import STOP_GRACE_S, LocalBroker
from streamproc.errors import BrokerError
from streamproc.settings import tool_environment

__all__ = ["broker_command"]


def _state_dir() -> Path:
    return tool_environment().broker_dir


def _read_state() -> dict[str, object] | None:
    path = _state_dir() / "state.json"
    if not path.exists():
        return None
    state: dict[str, object] = json.loads(path.read_text())
    return state


def _is_our_broker(pid: int, data_dir: str) -> bool:
    """Whether ``pid`` runs the Kafka broker with our data directory (its server.properties is
    on the JVM's command line): a pid from a stale state file may belong to anything by now."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0") if cmdline.exists() else _ps_args(pid)
    except OSError:
        return False
    config = str(Path(data_dir) / "server.properties").encode()
    return b"kafka.Kafka" in args and config in args


def _ps_args(pid: int) -> list[bytes]:
    """The command line of ``pid`` where there is no /proc (macOS), one word per item."""
    done = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True)
    return done.stdout.split()


def _running(state: dict[str, object] | None) -> bool:
    """The state file names a live process that is our broker."""
    if not state:
        return False
    pid = int(str(state["pid"]))
    return _alive(pid) and _is_our_broker(pid, str(state["data_dir"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); check /proc where available.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


@click.group("broker")
def broker_command() -> None:
    """Start, stop or inspect the local Kafka broker (KRaft, jars from Maven Central)."""


@broker_command.command("fetch")
@click.option("--version", "version", default=DEFAULT_KAFKA_VERSION, show_default=True)
def fetch_command(version: str) -> None:
    """Download the broker jars into the cache (CI does this once)."""
    click.echo(ensure_kafka_jars(version))


@broker_command.command("start")
@click.option("--version", "version", default=DEFAULT_KAFKA_VERSION, show_default=True)
@click.option("--port", type=int, default=9092, show_default=True, help="0 = any free port")
def start_command(version: str, port: int) -> None:
    """Start a detached broker on 127.0.0.1 and print its bootstrap servers."""
    state = _read_state()
    if state and _running(state):
        click.echo(f"already running: {state['bootstrap_servers']} (pid {state['pid']})")
        return
    state_dir = _state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    if port and not _port_free(port):
        raise BrokerError(f"port {port} on 127.0.0.1 is taken; pass --port 0 for any free port")
    broker = LocalBroker(version=version, port=port, data_dir=state_dir / "data", detach=True)
    broker.start()
    assert broker.pid is not None
    state = {
        "pid": broker.pid,
        "bootstrap_servers": broker.bootstrap_servers,
        "version": version,
        "data_dir": str(broker.data_dir),
        "log": str(broker.log_file),
    }
    (state_dir / "state.json").write_text(json.dumps(state, indent=2))
    broker._process = None  # forget it: `broker stop` stops it by pid
    click.echo(broker.bootstrap_servers)


@broker_command.command("stop")
def stop_command() -> None:
    """Stop the detached broker and wait until its JVM is gone."""
    state = _read_state()
    if state and _alive(int(str(state["pid"]))) and not _running(state):
        click.echo(
            f"pid {state['pid']} in {_state_dir() / 'state.json'} is not our broker (no "
            f"kafka.Kafka with {state['data_dir']}): not signalling it; state file removed"
        )
        (_state_dir() / "state.json").unlink(missing_ok=True)
        sys.exit(1)
    if not state or not _alive(int(str(state["pid"]))):
        click.echo("not running")
        (_state_dir() / "state.json").unlink(missing_ok=True)
        return
    pid = int(str(state["pid"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    (_state_dir() / "state.json").unlink(missing_ok=True)
    click.echo(f"stopped (pid {pid})")


@broker_command.command("status")
def status_command() -> None:
    """Print the detached broker's address, or 'not running' (exit 1)."""
    state = _read_state()
    if _running(state):
        click.echo(json.dumps(state, indent=2))
        return
    click.echo("not running")
    sys.exit(1)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
