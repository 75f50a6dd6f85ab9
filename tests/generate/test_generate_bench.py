"""bench/gpu_check.sh's `generate` part runs on CPU in its tiny-model mode, so the GPU figures of issue 20
(continuous batching vs padded generate) come from a script that works when a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_generate_part_measures_both_modes_in_cpu_smoke_mode(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "GC_CPU_SMOKE": "1", "OUT": str(out), "WORK": str(work), "PY": sys.executable,
           "PARTS": "generate"}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parts"]["generate"].startswith("ok"), summary["parts"]
    report = json.loads((out / "generate.json").read_text())
    (row,) = report["results"]
    assert row["model_size"] == "tiny"
    for mode in ("continuous", "padded"):
        # 8 prompts x 2 samples x 8 new tokens, end-of-sequence disabled: the same work in both modes
        assert row[mode]["output_tokens"] == 8 * 2 * 8 and row[mode]["tokens_per_s"] > 0, row[mode]
    assert row["continuous"]["failed"] == 0 and row["speedup_continuous_vs_padded"] > 0
    assert {"torch", "transformers"} <= set(report["versions"]) and report["date"] and report["command"]
    assert "generate: continuous vs padded" in proc.stdout
