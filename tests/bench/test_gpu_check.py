"""bench/gpu_check.sh runs end to end on CPU in its tiny-model mode (GC_CPU_SMOKE=1): the GPU check's
plumbing (assets, mixer's SFT/DPO trainers, the summary) is kept working between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_end_to_end_in_cpu_smoke_mode(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "GC_CPU_SMOKE": "1", "OUT": str(out), "WORK": str(work), "PY": sys.executable,
           "STEPS": "3", "PDB": "2", "ACCUM": "2"}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert all(status.startswith("ok") for status in summary["parts"].values()), summary["parts"]
    sft = json.loads((out / "sft.json").read_text())["results"]
    assert [r["variant"] for r in sft] == ["sdpa/padded", "auto/padding_free", "auto/packed", "auto/packed/autocast",
                                           "torch_varlen/padded"]
    assert all(r["status"] == "ok" and r["tokens_per_s"] > 0 for r in sft), sft
    assert sft[1]["runtime"]["attn_implementation"] == "sdpa"  # CPU: auto is SDPA
    assert abs(json.loads((out / "dpo.json").read_text())["first_loss_minus_ln2"]) < 1e-3
    assert json.loads((out / "qlora.json").read_text())["status"].startswith("skipped")
    assert "== gpu_check" in proc.stdout and "DPO first loss" in proc.stdout
