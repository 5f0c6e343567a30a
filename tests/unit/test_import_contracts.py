"""The import contracts in pyproject.toml ([tool.importlinter]) hold: serving never imports the
offline job, the tools or the test doubles; the layers point one way; the batching controller and
the offset ledger stay pure. Checked statically by import-linter (indirect chains included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold() -> None:
    code = "from importlinter.cli import lint_imports as f; raise SystemExit(f(no_cache=True))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout
