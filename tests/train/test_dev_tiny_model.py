"""``mixer dev tiny-model DIR`` (issue 24, point 11): the tiny model the trainer tests use, shipped, so the
README's CPU loop has a --model without a download."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import write_sft_build
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_process")


def test_tiny_model_writes_a_checkpoint_with_its_chat_template(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = runner.invoke(app, ["dev", "tiny-model", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    assert model.config.vocab_size == len(tokenizer) and model.num_parameters() < 200_000
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<s><|user|>\nhi\n<|assistant|>\n"  # the Tulu template


def test_off_a_terminal_commands_print_no_library_progress_bars_and_restore_them(tmp_path: Path) -> None:
    """`mixer dev tiny-model` and `mixer tokenize` into a log or a pipe: no transformers/datasets bar ("Writing
    model shards", "Tokenising") redrawn with carriage returns, and the bars are back on afterwards."""
    import datasets
    import transformers.utils.logging as hf_logging

    result = runner.invoke(app, ["dev", "tiny-model", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    data = write_sft_build(tmp_path / "build")
    tok = runner.invoke(app, ["tokenize", str(data), "--model", str(tmp_path / "tiny"), "--max-length", "64",
                              "-o", str(tmp_path / "tok")])
    assert tok.exit_code == 0, tok.output
    for output in (result.output, tok.output):
        assert "\r" not in output and "Writing model shards" not in output and "Tokenising" not in output, output
    assert hf_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()


def test_tiny_model_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me\n")
    result = runner.invoke(app, ["dev", "tiny-model", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me\n"


def test_the_readme_cpu_loop_trains_the_tiny_model(tmp_path: Path) -> None:
    assert runner.invoke(app, ["dev", "tiny-model", str(tmp_path / "tiny")]).exit_code == 0
    data = write_sft_build(tmp_path / "build")
    result = runner.invoke(app, ["train", "sft", "-c", "tiny-cpu", "--model", str(tmp_path / "tiny"),
                                 "--data", str(data), "-o", str(tmp_path / "runs" / "sft"),
                                 "--set", "max_steps=2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "sft" / "config.json").is_file()


def test_tiny_model_rerun_keeps_the_same_model_and_refuses_another_seed(tmp_path: Path) -> None:
    """Running the README's CPU block again: the folder holding the tiny model of the same seed is kept (it
    was refused, so a second run stopped at its second line); another seed is still refused, unchanged."""
    tiny = tmp_path / "tiny"
    assert runner.invoke(app, ["dev", "tiny-model", str(tiny)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in tiny.iterdir()}
    again = runner.invoke(app, ["dev", "tiny-model", str(tiny)])
    assert again.exit_code == 0 and "already holds the tiny model (seed 0)" in again.output
    other = runner.invoke(app, ["dev", "tiny-model", str(tiny), "--seed", "1"])
    assert other.exit_code == 2 and "not an empty folder" in other.output
    assert {p.name: p.read_bytes() for p in tiny.iterdir()} == before
