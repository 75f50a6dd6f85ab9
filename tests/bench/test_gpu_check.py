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


def _shape_for_card(tmp_path: Path, memory_mib: int) -> str:
    """What gpu_check.sh prints about the model shape on a card with ``memory_mib`` (a stand-in nvidia-smi)."""
    fake = tmp_path / f"bin{memory_mib}"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(
        "#!/bin/sh\ncase \"$*\" in *memory.total,driver*) echo 'name, memory.total [MiB], driver_version'; "
        f"echo 'NVIDIA Card, {memory_mib} MiB, 580';; *) echo '{memory_mib}';; esac\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PARTS": "none",
           "OUT": str(tmp_path / f"o{memory_mib}"), "WORK": str(tmp_path / f"w{memory_mib}"), "PY": sys.executable}
    env.pop("MODEL_SIZE", None)
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("model shape:"))
    return line


def test_gpu_check_picks_the_7b_shape_on_an_h200_and_a_3b_shape_on_an_80_gb_h100(tmp_path: Path) -> None:
    assert _shape_for_card(tmp_path, 143771).startswith("model shape: 7b (auto: 143771 MiB")
    assert _shape_for_card(tmp_path, 81559).startswith("model shape: 3b (auto: 81559 MiB")
    assert _shape_for_card(tmp_path, 40960).startswith("model shape: 1b")


def test_gpu_check_ablation_measures_each_lever_in_cpu_smoke_mode(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "GC_CPU_SMOKE": "1", "OUT": str(out), "WORK": str(work), "PY": sys.executable,
           "PDB": "2", "AB_STEPS": "3", "AB_BINS": "2", "AB_EXAMPLES": "4", "PARTS": "env assets ablation"}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "ablation.json").read_text())
    by_name = {r["variant"]: r for r in data["results"]}
    assert list(by_name) == ["baseline", "padding_free", "tokens16k", "liger", "compile", "ckpt_every_other", "fa3",
                             "fa4"]
    for name in ("baseline", "padding_free", "tokens16k", "compile", "ckpt_every_other"):
        assert by_name[name]["status"] == "ok" and by_name[name]["tokens_per_s"] > 0, by_name[name]
    assert by_name["compile"]["compile_s"] > 0
    assert by_name["fa3"]["status"].startswith("skipped")  # no CUDA here
    assert by_name["liger"]["status"].startswith("skipped")  # Triton kernels: CUDA only
    assert list((out / "results").glob("ablation-*-cpu-tiny.json"))
    assert "ablation (tiny" in proc.stdout and "tokens16k" in proc.stdout
