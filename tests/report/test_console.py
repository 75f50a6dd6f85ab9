"""One wrapper turns a user's error into ``error: <message>`` and exit 2, and Ctrl-C into one line and exit
130, for ``mixer``, ``mixer train`` and ``mixer generate`` alike (issue 22: one CLI error wrapper)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def test_train_and_dev_errors_print_one_error_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "sft", "--config", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.startswith("error: config ") and "neither a file nor a shipped recipe" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["dev", "tiny-model", str(tmp_path / "full")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("command", [["train", "sft", "--model", "m", "--data", "d", "-o", "o", "--dry-run"],
                                     ["generate", "--policy", "p", "--reward-model", "r", "--data", "d", "-o", "o"]])
def test_ctrl_c_in_train_and_generate_prints_one_line_and_exits_130(monkeypatch: pytest.MonkeyPatch,
                                                                     command: list[str]) -> None:
    import mixer.generate.run
    import mixer.train.cli

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mixer.train.cli, "load_config", interrupt)
    monkeypatch.setattr(mixer.generate.run, "GenerateConfig", interrupt)
    result = runner.invoke(app, command)
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == "interrupted"
