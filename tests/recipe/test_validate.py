"""``mixer validate`` lists every missing or bad file in one pass (issue 24, point 12) and has ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import flan_rows, write_jsonl
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def _recipe(tmp_path: Path, make_recipe) -> Path:
    write_jsonl(tmp_path / "raw" / "good.jsonl", flan_rows(5))
    (tmp_path / "raw" / "bad.jsonl").write_text('{"inputs": "q", "targets": "a"}\n{"inputs": \n', encoding="utf-8")
    return make_recipe([{"name": "flan_v2", "files": ["good.jsonl", "missing-1.jsonl", "bad.jsonl"]},
                        {"name": "cot", "files": ["missing-2.jsonl"]},
                        {"name": "science", "adapter": "flan_v2", "files": "nothing-*.jsonl"}])


def test_validate_reports_every_missing_or_bad_file_in_one_pass(tmp_path: Path, make_recipe) -> None:
    result = runner.invoke(app, ["validate", str(_recipe(tmp_path, make_recipe))])
    assert result.exit_code == 2
    text = result.output.replace("\n", " ")
    assert "4 problems" in text
    for name in ("missing-1.jsonl", "missing-2.jsonl", "nothing-*.jsonl", "bad.jsonl, line 2"):
        assert name in text, name
    assert "Traceback" not in text


def test_validate_json_lists_the_sources_and_the_problems(tmp_path: Path, make_recipe) -> None:
    result = runner.invoke(app, ["validate", str(_recipe(tmp_path, make_recipe)), "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 4
    flan = doc["sources"][0]
    assert flan["name"] == "flan_v2" and flan["records_probed"] == 6  # good.jsonl's 5 and bad.jsonl's first
    assert [Path(f).name for f in flan["files"]] == ["good.jsonl", "bad.jsonl"]


def test_validate_passes_a_good_recipe_with_exit_0(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "good.jsonl", flan_rows(5))
    recipe = make_recipe([{"name": "flan_v2", "files": "good.jsonl"}])
    result = runner.invoke(app, ["validate", str(recipe), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert "recipe OK" in runner.invoke(app, ["validate", str(recipe)]).output


def test_validate_from_the_wrong_folder_says_the_relative_raw_dir_hint_once(tmp_path: Path, monkeypatch) -> None:
    # `cd recipes && mixer validate v2-sample.yaml`: every file is missing for one reason, said once, not 12 times
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo / "recipes")
    result = runner.invoke(app, ["validate", "v2-sample.yaml", "--json"])
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) > 1 and all("not found" in p or "no file matches" in p for p in problems)
    hinted = [p for p in problems if "is relative to the folder mixer runs in" in p]
    assert hinted == problems[:1] and "--raw-dir" in hinted[0]


def test_validate_finds_files_cut_short_past_the_probed_records(tmp_path: Path, make_recipe) -> None:
    """The probe reads the first records of a file only; an interrupted download is cut at its end, which
    validate checks too (plain JSON Lines and JSON arrays), so all of them show in the one pass."""
    rows = flan_rows(80)
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "cut.jsonl").write_text(lines[:-20], encoding="utf-8")
    (tmp_path / "raw" / "cut.json").write_text(json.dumps(rows, indent=1)[:-30], encoding="utf-8")
    (tmp_path / "raw" / "whole.jsonl").write_text(lines + "\n\n", encoding="utf-8")
    (tmp_path / "raw" / "whole.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (tmp_path / "raw" / "skipped.jsonl").write_text(lines[:-20], encoding="utf-8")
    recipe = make_recipe([{"name": "flan_v2", "files": ["cut.jsonl", "cut.json", "whole.jsonl", "whole.json"]},
                          {"name": "cot", "files": "skipped.jsonl", "on_error": "skip"}])
    result = runner.invoke(app, ["validate", str(recipe), "--json"])
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert problems == [
        f"{tmp_path / 'raw' / 'cut.jsonl'}: the last line: malformed JSON at column 53: unexpected end of data "
        "(is the file cut short?)",
        f"{tmp_path / 'raw' / 'cut.json'}: truncated JSON array: the file ends without the closing ']' "
        "(an interrupted download?)",
    ]
