"""``streamproc bench --quick`` end to end against the session broker: the numbers are sane.

Runs the real CLI in a subprocess (as CI and a developer would), so a hung worker process or a
stray thread cannot outlive the test, and checks what the issue asks of the output: every event
accounted for, latencies positive and ordered, throughput positive, and every report file there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_accounts_for_every_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {**os.environ, "STREAMPROC_BOOTSTRAP_SERVERS": kafka_bootstrap}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc", "bench", "--quick", "--out", str(out)],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=290,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 300, f"--quick took {elapsed:.0f}s"

    for name in (
        "bench.json",
        "bench.md",
        "README-snippet.md",
        "latency_vs_load.png",
        "throughput_vs_load.png",
        "burst_lag.png",
    ):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (out / "latency_vs_load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads((out / "bench.json").read_text())
    assert "--quick" in results["command"]
    assert results["command"] in (out / "bench.md").read_text()
    points = [p for p in results["points"] if "skipped" not in p]
    measured = points + results["floors"]["broker_one_hop"]
    contenders = {p["contender"] for p in points}
    assert {"adaptive", "per-event", "take64", "passthrough"} <= contenders
    assert {p["profile"] for p in points} == {"rate", "burst"}
    for p in measured:
        where = f"{p['contender']} {p['profile']} @{p['offered_eps']}/s"
        assert p["sent"] > 0, where
        assert p["delivered"] == p["sent"], f"{where}: {p['delivered']}/{p['sent']} delivered"
        assert p["undelivered"] == 0, where
        assert p["throughput_eps"] > 0, where
        lat = p["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], f"{where}: {lat}"
    for p in points:
        if p["profile"] == "burst":
            assert p["burst"]["drained"] and p["burst"]["drain_s"] > 0, p["burst"]
            assert p["burst"]["peak_lag"] >= p["burst"]["events"] // 4, p["burst"]
    student = results["floors"]["model_student"]
    assert student["1"]["batch_ms"] > 0
    # Issue 5's four, then the hot path's (5–8; a --quick run has no rate ≤ 100 ev/s for 8).
    assert [t["target"] for t in results["targets"]][:7] == [1, 2, 3, 4, 5, 6, 7]
    assert all(t["met"] in (True, False, None) for t in results["targets"])
