"""What `mixer train` checks before tokenising or loading weights (issue 24, points 6, 7 and 8): a bf16 recipe
on a host without CUDA, an epoch count that trains nothing, a model folder that does not exist, an output
folder that cannot be written. Each is one line and exit 2, and no run folder is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.train.cli import check_host
from mixer.train.config import load_config
from mixer.train.deps import cuda_available

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_process")


def _train(tmp_path: Path, *args: str, model: str | None = None, out: Path | None = None):
    out = out or tmp_path / "run"
    result = runner.invoke(app, ["train", "sft", "--model", model or str(tiny_assets().model),
                                 "--data", str(tiny_assets().sft_data), "-o", str(out), *args])
    return result, " ".join(result.output.split())


@pytest.mark.skipif(cuda_available(), reason="the check is for hosts without CUDA")
def test_a_bf16_recipe_without_cuda_says_so_and_names_the_cpu_recipes(tmp_path: Path) -> None:
    result, text = _train(tmp_path, "-c", "tulu2-sft")
    assert result.exit_code == 2
    assert "needs a CUDA GPU" in text and "-c tiny-cpu" in text and "--set bf16=false" in text
    assert "use_cpu" not in text and "Traceback" not in text
    assert not (tmp_path / "run").exists()


def test_use_cpu_true_lets_a_bf16_recipe_run_on_cpu(tmp_path: Path) -> None:
    cfg = load_config("sft", "train/tulu2-sft.yaml", ["use_cpu=true"], model=str(tiny_assets().model),
                      data=str(tiny_assets().sft_data), output_dir=str(tmp_path / "run"))
    check_host(cfg)  # accepted: transformers trains bf16 on CPU when asked to


def test_zero_epochs_is_refused_instead_of_saving_the_base_model(tmp_path: Path) -> None:
    result, text = _train(tmp_path, "-c", "tiny-cpu", "--set", "num_train_epochs=0")
    assert result.exit_code == 2 and "nothing would be trained" in text
    assert not (tmp_path / "run").exists()
    steps, _ = _train(tmp_path, "-c", "tiny-cpu", "--set", "num_train_epochs=0", "--set", "max_steps=1",
                      "--dry-run")
    assert steps.exit_code == 0, steps.output  # max_steps alone says how long to train


def test_a_missing_model_folder_is_named_not_sent_to_the_hub(tmp_path: Path) -> None:
    result, text = _train(tmp_path, "-c", "tiny-cpu", model=str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert f"--model {tmp_path / 'nope'}: no such model folder" in text and "mixer dev tiny-model" in text
    assert "Repo id" not in text and not (tmp_path / "run").exists()


def test_a_typo_in_a_relative_model_path_shaped_like_a_hub_id_is_named_not_sent_to_the_hub(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model runs/sft-typo` looks like a Hub id (org/name); with `runs/` a folder here it is a local typo, so
    the run says the folder is missing instead of asking huggingface.co and printing a connection error."""
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    result, text = _train(tmp_path, "-c", "tiny-cpu", model="runs/sft-typo", out=tmp_path / "run")
    assert result.exit_code == 2
    assert "--model runs/sft-typo: no such model folder" in text and "mixer dev tiny-model" in text
    assert "huggingface.co" not in text and not (tmp_path / "run").exists()


def test_commands_that_load_a_tokenizer_name_a_missing_local_model_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """tokenize, check-template and gatt load a tokenizer straight from --model/--policy: a missing folder whose
    parent exists is named as such, one line, before any Hub request."""
    (tmp_path / "runs").mkdir()
    dialogues = tmp_path / "d.jsonl"
    dialogues.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    data = str(tiny_assets().sft_data)
    for args, label in ((["tokenize", data, "--model", "runs/nope", "--max-length", "64"], "--model runs/nope"),
                        (["check-template", data, "--model", "runs/nope"], "--model runs/nope"),
                        (["gatt", "--policy", "runs/nope", "--dialogues", str(dialogues), "-o", "g"], "runs/nope")):
        result = runner.invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2, (args, text)
        assert f"{label}: no such model folder" in text and "huggingface.co" not in text, (args, text)


def test_an_unwritable_output_folder_is_found_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x\n")
    result, text = _train(tmp_path, "-c", "tiny-cpu", out=tmp_path / "a-file" / "run")
    assert result.exit_code == 2 and "cannot be written" in text and "nothing was trained" in text
    assert "Tokenizing" not in result.output and "Loading weights" not in result.output


@pytest.mark.skipif(cuda_available(), reason="pinned memory is kept where there is a GPU")
def test_a_cpu_run_does_not_pin_memory_so_torch_does_not_warn(tmp_path: Path) -> None:
    import warnings

    from mixer.train.trainer import derived_kwargs

    cfg = load_config("sft", "train/tiny-cpu.yaml", ["max_steps=1"], model=str(tiny_assets().model),
                      data=str(tiny_assets().sft_data), output_dir=str(tmp_path / "run"))
    assert derived_kwargs(cfg, 12, 1)["dataloader_pin_memory"] is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _ = _train(tmp_path, "-c", "tiny-cpu", "--set", "max_steps=1")
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if "pin_memory" in str(w.message)]
    explicit = load_config("sft", "train/tiny-cpu.yaml", ["dataloader_pin_memory=true"])
    assert "dataloader_pin_memory" not in derived_kwargs(explicit, 12, 1)  # a user's own choice stands
