"""SPIN end to end on CPU with the tiny Llama: two iterations, each with its pairs, card and model in its own
folder; iteration 1 trains on iteration 0's pairs and its own; a run stopped after iteration 1 resumes at
iteration 2 without redoing it; bad input writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.cli import app

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "train" / "tiny-cpu-dpo.yaml"), "--set", "max_steps=2", "--max-new-tokens", "6",
        "--chat-template", "tulu", "--max-prompts", "4"]


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _spin(out: Path, iterations: int, data: Path | None = None) -> object:
    a = tiny_assets()
    return CliRunner().invoke(app, ["spin", "--model", str(a.model), "--data", str(data or a.sft_data),
                                    "--output", str(out), "--iterations", str(iterations), *TINY])


def test_two_iterations_with_a_stop_after_the_first(tmp_path: Path) -> None:
    out = tmp_path / "spin"
    first = _spin(out, 1)
    assert first.exit_code == 0, first.output
    model0 = out / "iter-0" / "model"
    weights = sorted(model0.glob("*.safetensors"))
    assert weights
    stamp = {p: p.stat().st_mtime_ns for p in weights}
    assert not (out / "iter-1").exists()

    second = _spin(out, 2)  # resumes: iteration 0 is kept, iteration 1 generated with iteration 0's model
    assert second.exit_code == 0, second.output
    assert "iteration 0: done earlier, kept" in second.output
    assert {p: p.stat().st_mtime_ns for p in weights} == stamp
    for t in (0, 1):
        pairs = pq.read_table(out / f"iter-{t}" / "pairs" / "data").to_pylist()
        assert len(pairs) == 4
        gold = pq.read_table(tiny_assets().sft_data / "data").to_pylist()[:4]
        assert [p["chosen"][0]["content"] for p in pairs] == [g["messages"][-1]["content"] for g in gold]
        assert all(p["rejected"][0]["role"] == "assistant" for p in pairs)
        card = json.loads((out / f"iter-{t}" / "pairs" / "card.json").read_text())
        assert card["iteration"] == t and card["pairs"] == 4
        assert (out / f"iter-{t}" / "model" / "config.json").is_file()
    assert json.loads((out / "iter-1" / "pairs" / "card.json").read_text())["generator"] == str(model0)
    used = [json.loads((out / f"iter-{t}" / "train" / "card.json").read_text())["pairs_from"] for t in (0, 1)]
    assert used == [{"iter-0": 4}, {"iter-0": 4, "iter-1": 4}]
    trained = pq.read_table(out / "iter-1" / "train" / "data").to_pylist()
    own = [pq.read_table(out / f"iter-{t}" / "pairs" / "data").to_pylist() for t in (0, 1)]
    assert [(r["dataset"], r["id"]) for r in trained] == [(r["dataset"], r["id"]) for rows in own for r in rows]


def test_a_preference_build_has_no_gold_answers_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "spin"
    result = _spin(out, 1, data=tiny_assets().pref_data)
    assert result.exit_code == 2
    assert "gold answers" in result.output
    assert not out.exists()


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_max_prompts_below_1_is_refused_not_read_as_every_row(tmp_path: Path, limit: str) -> None:
    # before, 0 took every row (`rows[:0] if 0 else rows`) and -1 every row but the last
    a = tiny_assets()
    out = tmp_path / "spin"
    result = CliRunner().invoke(app, ["spin", "--model", str(a.model), "--data", str(a.sft_data), "--output", str(out),
                                      "--iterations", "1", *TINY[:-1], limit])
    assert result.exit_code == 2 and "--max-prompts must be at least 1" in result.output
    assert not out.exists()


@pytest.mark.parametrize("marker", ["{not json", "[1, 2]"])
def test_an_unreadable_spin_marker_is_a_clear_error_and_the_folder_is_left_alone(tmp_path: Path, marker: str) -> None:
    out = tmp_path / "spin"
    out.mkdir()
    (out / "spin.json").write_text(marker)
    result = _spin(out, 1)
    assert result.exit_code == 2, result.output
    assert "spin.json" in result.output and "Traceback" not in result.output
    assert [p.name for p in out.iterdir()] == ["spin.json"] and (out / "spin.json").read_text() == marker


def test_a_folder_that_is_not_a_model_is_named_before_the_run_folder_is_made(tmp_path: Path) -> None:
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    out = tmp_path / "spin"
    result = CliRunner().invoke(app, ["spin", "--model", str(not_a_model), "--data", str(tiny_assets().sft_data),
                                      "--output", str(out), "--iterations", "1", *TINY])
    assert result.exit_code == 2 and "--model" in result.output and "not a model folder" in result.output
    assert not out.exists()


def _model_without_weights(tmp_path: Path) -> Path:
    """A --model that passes the checks but fails to load (as a hub id offline would)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_assets().model / name).read_bytes())
    return broken


def test_a_run_that_failed_before_its_first_part_takes_new_settings(tmp_path: Path) -> None:
    # a --model that passes the checks but fails to load (a hub id offline, here a model folder without weights)
    # used to lock the run folder: the rerun with the right model was refused as "other settings"
    a, broken = tiny_assets(), _model_without_weights(tmp_path)
    out = tmp_path / "spin"
    data = ["--data", str(a.sft_data), "--output", str(out), "--iterations", "1", *TINY]
    first = CliRunner().invoke(app, ["spin", "--model", str(broken), *data])
    assert first.exit_code != 0 and (out / "spin.json").is_file()
    assert not [p for p in out.glob("iter-*/*") if p.name in ("pairs", "train", "model")]
    second = CliRunner().invoke(app, ["spin", "--model", str(a.model), *data])
    assert second.exit_code == 0, second.output
    assert json.loads((out / "spin.json").read_text())["model"] == str(a.model)
    assert (out / "iter-0" / "model" / "config.json").is_file()
    again = CliRunner().invoke(app, ["spin", "--model", str(broken), *data])  # now there is a part to keep
    assert again.exit_code == 2 and "other settings (model)" in again.output


def test_an_unreadable_gold_file_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    data = tmp_path / "gold"
    (data / "data").mkdir(parents=True)
    (data / "data" / "train-00000-of-00001.parquet").write_text("not parquet")
    out = tmp_path / "spin"
    result = _spin(out, 1, data=data)
    assert result.exit_code == 2 and "not a readable Parquet file" in result.output, result.output
    assert not out.exists()


def test_answers_kept_in_shards_lock_the_settings_as_a_finished_part_does(tmp_path: Path) -> None:
    # shards of a stopped generation are work to keep: a rerun with other settings must not take them as its own
    a, broken = tiny_assets(), _model_without_weights(tmp_path)
    out = tmp_path / "spin"
    data = ["--data", str(a.sft_data), "--output", str(out), "--iterations", "1", *TINY]
    assert CliRunner().invoke(app, ["spin", "--model", str(broken), *data]).exit_code != 0
    shard = out / "iter-0" / "pair-shards" / "pairs-00000.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"answers of the first model")
    again = CliRunner().invoke(app, ["spin", "--model", str(a.model), *data])
    assert again.exit_code == 2 and "other settings (model)" in again.output
    assert shard.read_bytes() == b"answers of the first model"
