"""What each SPIN iteration trains on: from iteration 1 on, the previous iteration's pairs and its own (the
paper's §6.1: 50k pairs at iteration 0, 100k at iterations 1-3; the authors' config_iter1.yaml mixes
SPIN_iter0 and SPIN_iter1), or its own alone with --no-previous-pairs; the card names the iterations and
their counts; the data is the same bytes when written again; a run folder keeps its choice on resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.generate.spin import PAIR_SCHEMA, SPIN_MARKER, write_training_pairs

REPO = Path(__file__).resolve().parents[2]


def _pairs(out: Path, iteration: int, ids: list[str]) -> None:
    """Iteration ``iteration``'s pairs as generate_pairs writes them: gold chosen, the model's answer rejected."""
    rows = [{"dataset": f"spin_iter{iteration}", "id": i, "prompt": [{"role": "user", "content": f"q {i}"}],
             "chosen": [{"role": "assistant", "content": f"gold {i}"}],
             "rejected": [{"role": "assistant", "content": f"iter {iteration} says {i}"}]} for i in ids]
    folder = out / f"iter-{iteration}" / "pairs" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), folder / "train-00000-of-00001.parquet")


def test_iteration_1_trains_on_iteration_0s_pairs_and_its_own(tmp_path: Path) -> None:
    _pairs(tmp_path, 0, ["p0", "p1", "p2"])
    _pairs(tmp_path, 1, ["p0", "p1", "p2"])
    card = write_training_pairs(tmp_path, 1, previous_pairs=True)
    assert card == {"iteration": 1, "previous_pairs": True, "pairs_from": {"iter-0": 3, "iter-1": 3}, "pairs": 6}
    assert json.loads((tmp_path / "iter-1" / "train" / "card.json").read_text()) == card
    rows = pq.read_table(tmp_path / "iter-1" / "train" / "data").to_pylist()
    assert [(r["dataset"], r["id"]) for r in rows] == [
        ("spin_iter0", "p0"), ("spin_iter0", "p1"), ("spin_iter0", "p2"),
        ("spin_iter1", "p0"), ("spin_iter1", "p1"), ("spin_iter1", "p2")]
    assert [r["rejected"][0]["content"] for r in rows][::3] == ["iter 0 says p0", "iter 1 says p0"]
    assert not list(tmp_path.glob("iter-1/.train.tmp-*"))


def test_iteration_0_and_current_only_train_on_their_own_pairs(tmp_path: Path) -> None:
    _pairs(tmp_path, 0, ["a", "b"])
    _pairs(tmp_path, 1, ["a", "b"])
    assert write_training_pairs(tmp_path, 0, previous_pairs=True)["pairs_from"] == {"iter-0": 2}
    only = write_training_pairs(tmp_path, 1, previous_pairs=False)
    assert (only["pairs_from"], only["pairs"]) == ({"iter-1": 2}, 2)
    rows = pq.read_table(tmp_path / "iter-1" / "train" / "data").to_pylist()
    assert {r["dataset"] for r in rows} == {"spin_iter1"}


def test_training_pairs_are_the_same_bytes_when_written_again(tmp_path: Path) -> None:
    for run in ("one", "two"):
        _pairs(tmp_path / run, 0, ["x", "y"])
        _pairs(tmp_path / run, 1, ["x", "y"])
        write_training_pairs(tmp_path / run, 1, previous_pairs=True)
    data = "iter-1/train/data/train-00000-of-00001.parquet"
    assert (tmp_path / "one" / data).read_bytes() == (tmp_path / "two" / data).read_bytes()


def test_missing_previous_pairs_are_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    _pairs(tmp_path, 1, ["x"])
    with pytest.raises(MixerError, match="iteration 0's pairs are missing"):
        write_training_pairs(tmp_path, 1, previous_pairs=True)
    assert sorted(p.name for p in (tmp_path / "iter-1").iterdir()) == ["pairs"]


def _spin(out: Path, *extra: str) -> object:
    a = tiny_assets()
    return CliRunner().invoke(app, ["spin", "--model", str(a.model), "--data", str(a.sft_data), "--output", str(out),
                                    "--iterations", "1", "--config", str(REPO / "train" / "tiny-cpu-dpo.yaml"),
                                    "--max-prompts", "2", *extra])


def _finished_run(out: Path, previous_pairs: bool | None) -> None:
    """A run folder whose iteration 0 is done (pairs, model), as an earlier `mixer spin` left it; ``None``: a
    marker from before --previous-pairs existed (those runs trained on their own pairs only)."""
    a = tiny_assets()
    settings = {"model": str(a.model), "data": str(a.sft_data), "config": str(REPO / "train" / "tiny-cpu-dpo.yaml"),
                "set": [], "seed": 42, "max_prompts": 2,
                "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512}}
    if previous_pairs is not None:
        settings["previous_pairs"] = previous_pairs
    _pairs(out, 0, ["a", "b"])
    shutil.copytree(a.model, out / "iter-0" / "model")
    (out / SPIN_MARKER).write_text(json.dumps(settings), encoding="utf-8")


def test_a_run_keeps_its_choice_of_pairs_on_resume(tmp_path: Path) -> None:
    _finished_run(tmp_path / "old", None)
    kept = _spin(tmp_path / "old", "--no-previous-pairs")
    assert kept.exit_code == 0, kept.output
    assert "iteration 0: done earlier, kept" in kept.output
    changed = _spin(tmp_path / "old")
    assert changed.exit_code == 2
    assert "other settings (previous_pairs)" in changed.output
    _finished_run(tmp_path / "new", True)
    assert _spin(tmp_path / "new").exit_code == 0


def test_a_resume_takes_the_same_model_typed_from_another_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # before, --model runs/sft and later ../runs/sft (run from another folder) were refused as other settings
    a = tiny_assets()
    shutil.copytree(a.model, tmp_path / "runs" / "sft")
    config = str(REPO / "train" / "tiny-cpu-dpo.yaml")
    out = tmp_path / "spin"
    _pairs(out, 0, ["a", "b"])
    shutil.copytree(a.model, out / "iter-0" / "model")
    settings = {"model": "runs/sft", "data": str(a.sft_data), "config": config, "set": [], "seed": 42,
                "max_prompts": 2, "previous_pairs": True,
                "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512},
                "paths": {"model": str((tmp_path / "runs" / "sft").resolve()),
                          "data": str(Path(a.sft_data).resolve()), "config": str(Path(config).resolve())}}
    (out / SPIN_MARKER).write_text(json.dumps(settings), encoding="utf-8")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    args = ["spin", "--data", str(a.sft_data), "--output", str(out), "--iterations", "1", "--config", config,
            "--max-prompts", "2"]
    kept = CliRunner().invoke(app, [*args, "--model", "../runs/sft"])
    assert kept.exit_code == 0, kept.output
    assert "iteration 0: done earlier, kept" in kept.output
    other = CliRunner().invoke(app, [*args, "--model", str(a.model)])  # another model is still refused
    assert other.exit_code == 2 and "other settings (model)" in other.output
