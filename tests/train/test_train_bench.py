"""The trainer throughput benchmark runs without a GPU (tiny model) and says so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


def test_benchmark_runs_on_cpu_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    rc = bench.main(["--model-size", "tiny", "--examples", "24", "--max-length", "128", "--batch-size", "4",
                     "--steps", "2", "--warmup", "1", "--json", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "no GPU" in captured.err or "cuda" in json.loads(out.read_text())["device"].lower()
    results = json.loads(out.read_text())["results"]
    assert {r["batching"] for r in results} == {"padded", "padding_free", "packed"}
    for r in results:
        assert r["tokens_per_s"] > 0 and 0 <= r["padding_fraction"] < 1
    assert next(r for r in results if r["batching"] == "padding_free")["padding_fraction"] == 0
    assert "| attention | batching |" in captured.out
    assert json.loads(out.read_text())["master_weights"] == "copy"  # mixer train's one-process default
    autocast = tmp_path / "a.json"
    assert bench.main(["--model-size", "tiny", "--examples", "24", "--max-length", "128", "--batch-size", "4",
                       "--steps", "2", "--warmup", "1", "--modes", "packed", "--master-weights", "fp32",
                       "--json", str(autocast)]) == 0
    assert json.loads(autocast.read_text())["results"][0]["tokens_per_s"] > 0
