"""benchmarks/gpu.py runs its tiny version on the CPU, so the script a GPU session runs never rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_benchmark_runs_tiny_on_the_cpu_and_writes_its_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Another benchmark\n\nkept as it is\n", encoding="utf-8")
    command = [sys.executable, "gpu.py", "--model", "tiny-sdxl", "--sizes", "64", "--panels", "2,3"]
    command += ["--steps", "3", "--repeats", "1", "--out", str(results)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = results.read_text(encoding="utf-8")
    assert "## Another benchmark\n\nkept as it is" in text
    assert "## GPU: step time, seconds per panel, peak device memory" in text
    for row in ("| plain, 1 panel |", "| read, 1 panel, device bank + cached projections |", "| write, 3 panels |"):
        assert row in text
    assert "| 64 | 3 |" in text and "byte-identical" in text
