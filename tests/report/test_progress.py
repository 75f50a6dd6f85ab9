"""Build progress (issue 24, point 9): on a terminal every stage is named while it runs, with a bar where
it counts its work; off a terminal stderr holds no progress at all."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import flan_rows, write_jsonl
from rich.console import Console
from typer.testing import CliRunner

from mixer.build import build
from mixer.cli import app
from mixer.recipe.load import load_recipe
from mixer.report import progress

runner = CliRunner()


def _recipe(tmp_path: Path, make_recipe) -> Path:
    rows = flan_rows(30) + [{"inputs": "Ask ChatGPT", "targets": "no"}]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(30))  # b repeats a: exact dedup drops them
    return make_recipe([{"name": "flan_v2", "files": "a.jsonl"},
                        {"name": "cot", "adapter": "flan_v2", "files": "b.jsonl", "take": 10}])


def test_on_a_terminal_every_stage_is_named_with_its_time_and_drops(
        tmp_path: Path, make_recipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "SHOWN_AFTER_S", 0.0)  # every stage's closing line, however fast
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    build(load_recipe(_recipe(tmp_path, make_recipe)), progress.build_reporter(console, quiet=False), workers=1)
    text = screen.getvalue()
    for label in ("read+normalise+filter", "exact dedup", "select+tokens", "shuffle", "write", "card"):
        assert f"✓ {label} " in text, label
    assert "sources" in text and "0/2" in text  # select's own bar, counted per source
    assert "exact dedup" in text and "30 dropped" in text.split("✓ exact dedup", 1)[1].splitlines()[0]


def test_off_a_terminal_a_build_prints_no_progress_on_stderr(tmp_path: Path, make_recipe) -> None:
    result = runner.invoke(app, ["build", str(_recipe(tmp_path, make_recipe))])
    assert result.exit_code == 0, result.output
    warning, summary = result.stderr.splitlines()  # the take cot cannot fill, and the one closing line
    assert warning.startswith("warning: source 'cot': take 10") and summary.startswith("wrote 30 records")


def test_quiet_or_off_a_terminal_means_warnings_only() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(progress.build_reporter(terminal, quiet=False), progress.StageProgress)
    assert not isinstance(progress.build_reporter(terminal, quiet=True), progress.StageProgress)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    assert not isinstance(progress.build_reporter(pipe, quiet=False), progress.StageProgress)


def test_generate_bar_shows_prompts_done_tokens_per_second_and_eta() -> None:
    screen = io.StringIO()
    bar = progress.GenerateProgress(Console(file=screen, force_terminal=True, width=120, color_system=None))
    with bar:
        bar(10, 40, 0, 0.0)  # an earlier run did 10: done, but not part of the speed
        assert bar.describe() == "10/40 prompts"
        bar(10, 40, 500, 5.0)  # 10 prompts, 500 tokens in 5 s: 100 tokens/s, 0.5 s a prompt, 20 left
        assert bar.describe() == "20/40 prompts · 100.0 tokens/s · ETA 0:00:10"
    assert "20/40 prompts" in screen.getvalue()
