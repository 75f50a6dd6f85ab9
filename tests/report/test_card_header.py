"""What a reader of a build's card meets (issue 24, point 16): ``datasets.load_dataset(OUT)`` reads the
card's front matter without a warning, and a recipe without a length limit says so in words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import flan_rows, write_jsonl
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def test_load_dataset_on_a_build_reads_the_card_without_a_warning(sample_build, tmp_path: Path) -> None:
    code = ("import datasets, sys; ds = datasets.load_dataset(sys.argv[1], cache_dir=sys.argv[2]); "
            "print(ds['train'].num_rows, ds['train'].info.splits['train'].num_examples)")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code, str(sample_build.out), str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = sample_build.card["totals"]["records"]
    assert done.stdout.split() == [str(rows), str(rows)]
    assert "Ignoring part of dataset_info" not in done.stderr and "malformed" not in done.stderr


def test_a_card_without_max_tokens_says_no_token_limit_not_none(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(6))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl"}])
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0
    card = runner.invoke(app, ["card", str(tmp_path / "out")])
    assert card.exit_code == 0 and "no token limit" in card.output and "None" not in card.output
    readme = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "no token limit" in readme and "max tokens None" not in readme
