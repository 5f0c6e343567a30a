"""The soak run's --quick variant: steady load on a real worker process with a real artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]


def test_quick_soak_predicts_everything_and_reports_growth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "STREAMPROC_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMPROC_MODEL_DIR": str(tmp_path / "none"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamproc",
            "soak",
            "--quick",
            "--duration",
            "25",
            "--rate",
            "100",
            "--out",
            str(tmp_path / "soak"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert summary["sent"] == 2500 and summary["missing"] == 0
    for window in ("first_window", "last_window"):
        stats = summary[window]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
        assert stats["rss_mb"] > 50, "the worker's RSS was sampled"
    assert set(summary["growth"]) == {"p50_ms", "p99_ms", "rss_mb"}
    # A leak of a few KiB per event would show in 25 s; warm-up allocations stay well below this.
    assert summary["growth"]["rss_mb"] < 0.25, summary["growth"]
    windows = summary["windows_5s"]
    assert sum(w["events"] for w in windows) == 2500 and len(windows) >= 5
    worst = summary["worst_5s_p99_after_settle"]
    assert worst is None or worst["p99_ms"] == max(w["p99_ms"] for w in windows if w["t_s"] >= 30)
    assert (tmp_path / "soak" / "soak.png").stat().st_size > 10_000
