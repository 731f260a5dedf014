"""The benchmark script runs end to end in its smallest configuration (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pathlib import Path

from tests.helpers import REPO, wait_until_gone

pytestmark = pytest.mark.ray


def test_benchmark_quick_writes_its_table_chart_and_raw_results(tmp_path, own_ray_env):
    proc = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--runners", "single,orchestrator",
                           "--workers", "1", "--steps", "15", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=own_ray_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = (tmp_path / "results.md").read_text()
    assert "| mlp | 1 | single |" in table and "| mlp | 1 | orchestrator |" in table
    assert (tmp_path / "results.png").stat().st_size > 0
    runs = json.loads((tmp_path / "raw.json").read_text())["runs"]
    assert {r["runner"] for r in runs} == {"single", "orchestrator"}
    assert all(r["status"] == "ok" and r["samples_per_sec"] > 0 and r["startup_s"] > 0 for r in runs)
    assert wait_until_gone(Path(own_ray_env["RAY_TMPDIR"])) == []
