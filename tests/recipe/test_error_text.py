"""Error text a new user meets (issue 24, point 15): the recipe file and key path are named, a misspelt
``files`` is called a typo, and a malformed JSON line has one line number."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def _build(tmp_path: Path, recipe: dict, raw: str = '{"inputs": "q", "targets": "a"}\n') -> str:
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "raw" / "a.jsonl").write_text(raw, encoding="utf-8")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "raw_dir": str(tmp_path / "raw"), **recipe}), encoding="utf-8")
    result = runner.invoke(app, ["build", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_a_typo_in_a_top_level_key_names_the_recipe_file_and_the_key(tmp_path: Path) -> None:
    text = _build(tmp_path, {"outptu": "x", "sources": [{"name": "flan_v2", "files": "a.jsonl"}]})
    assert text.startswith(f"error: {tmp_path / 'recipe.yaml'}: unknown key(s) 'outptu' (did you mean 'output'?)")
    assert ": :" not in text


def test_file_instead_of_files_is_reported_as_a_typo(tmp_path: Path) -> None:
    text = _build(tmp_path, {"sources": [{"name": "flan_v2", "file": "a.jsonl"}]})
    assert "recipe.yaml: sources[0] (flan_v2): unknown key(s) 'file' (did you mean 'files'?)" in text


def test_a_malformed_json_line_shows_one_line_number(tmp_path: Path) -> None:
    text = _build(tmp_path, {"sources": [{"name": "flan_v2", "files": "a.jsonl"}]},
                  raw='{"inputs": "q", "targets": "a"}\n{"inputs": "x", "targets": }\n')
    assert "a.jsonl, line 2" in text and "malformed JSON at column 28" in text
    assert "line 1" not in text
