"""The command line, through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import flan_rows, write_jsonl
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def _recipe(tmp_path: Path, make_recipe, **source: object) -> Path:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(12))
    return make_recipe([{"name": "flan_v2", "files": "a.jsonl", **source}])


def test_build_then_card_and_show(tmp_path: Path, make_recipe) -> None:
    recipe = _recipe(tmp_path, make_recipe, take=10)
    result = runner.invoke(app, ["build", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    card = runner.invoke(app, ["card", str(out)])
    assert card.exit_code == 0 and "flan_v2" in card.output and "records per source" in card.output
    as_json = runner.invoke(app, ["card", str(out), "--json"])
    assert json.loads(as_json.output)["totals"]["records"] == 10
    show = runner.invoke(app, ["show", str(out), "-n", "2", "--source", "flan"])
    assert show.exit_code == 0 and show.output.count("flan_v2 ·") == 2 and "assistant" in show.output


def test_build_overrides_out_and_seed(tmp_path: Path, make_recipe) -> None:
    recipe = _recipe(tmp_path, make_recipe)
    result = runner.invoke(app, ["build", str(recipe), "--out", str(tmp_path / "elsewhere"), "--seed", "9", "-q"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "elsewhere" / "card.json").read_text())
    assert card["recipe"]["seed"] == 9


def test_user_error_exits_2_with_one_message_and_no_traceback(tmp_path: Path, make_recipe) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"inputs": "x"}\n')
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl"}])
    result = runner.invoke(app, ["build", str(recipe), "-q"])
    assert result.exit_code == 2
    assert "error:" in result.output and "a.jsonl, line 1" in result.output and "'targets'" in result.output
    assert "Traceback" not in result.output


def test_validate_reports_ok_and_catches_bad_recipe(tmp_path: Path, make_recipe) -> None:
    recipe = _recipe(tmp_path, make_recipe)
    ok = runner.invoke(app, ["validate", str(recipe)])
    assert ok.exit_code == 0 and "recipe OK" in ok.output
    bad = make_recipe([{"name": "flan_v2", "files": "a.jsonl", "tkae": 3}])
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "tkae" in result.output


def test_sources_lists_every_adapter_with_licence() -> None:
    result = runner.invoke(app, ["sources"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("flan_v2", "messages"):
        assert name in result.output
    assert "Apache-2.0" in result.output


def test_fetch_without_network_names_the_file(tmp_path: Path, make_recipe) -> None:
    # a closed port on loopback stands in for "no network": the refusal must be a clear message
    recipe = make_recipe([{"name": "flan_v2", "files": [{"path": "flan/x.jsonl", "url": "http://127.0.0.1:9/x.jsonl"}]}])
    result = runner.invoke(app, ["fetch", str(recipe)])
    assert result.exit_code == 2
    assert "flan/x.jsonl" in result.output and "http://127.0.0.1:9/x.jsonl" in result.output
    assert not (tmp_path / "raw" / "flan" / "x.jsonl").exists()


def test_card_on_a_folder_that_is_not_a_build_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["card", str(tmp_path)])
    assert result.exit_code == 2 and "no card.json" in result.output
    missing = runner.invoke(app, ["card", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_build_says_how_many_sources_came_from_the_read_cache(tmp_path: Path, make_recipe, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXER_READ_CACHE", "1")  # restored after the test, whatever --no-read-cache sets
    recipe = _recipe(tmp_path, make_recipe)
    first = runner.invoke(app, ["build", str(recipe)])
    assert first.exit_code == 0, first.output
    assert "read cache" not in first.output
    second = runner.invoke(app, ["build", str(recipe)])
    assert "1 of 1 sources from the read cache" in second.output
    third = runner.invoke(app, ["build", str(recipe), "--no-read-cache"])
    assert third.exit_code == 0 and "read cache" not in third.output


def test_a_read_only_or_full_disk_is_a_clear_error_not_a_traceback(tmp_path: Path, make_recipe, monkeypatch) -> None:
    import errno

    import mixer.report.html

    recipe = _recipe(tmp_path, make_recipe)
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0
    page = tmp_path / "ro" / "report.html"

    def read_only(*args: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(page))

    monkeypatch.setattr(mixer.report.html, "write_html_report", read_only)
    result = runner.invoke(app, ["card", str(tmp_path / "out"), "--html", str(page)])
    assert result.exit_code == 2, result.output
    assert f"error: {page}: Read-only file system" in result.output and "Traceback" not in result.output


def test_a_bug_raising_another_os_error_still_shows_its_traceback(tmp_path: Path, make_recipe, monkeypatch) -> None:
    import mixer.report.html

    recipe = _recipe(tmp_path, make_recipe)
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0

    def missing(*args: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "plots/share.png")

    monkeypatch.setattr(mixer.report.html, "write_html_report", missing)
    result = runner.invoke(app, ["card", str(tmp_path / "out"), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


def test_show_prints_a_preference_build_as_prompt_chosen_and_rejected(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "dpo"
    built = runner.invoke(app, ["build", str(repo / "recipes" / "dpo-sample.yaml"), "--raw-dir",
                                str(repo / "samples" / "raw_train"), "--out", str(out), "-q"])
    assert built.exit_code == 0, built.output
    result = runner.invoke(app, ["show", str(out), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("── chosen") == 2 and result.output.count("── rejected") == 2
    assert "user" in result.output and "assistant" in result.output


def test_show_dropped_names_the_source_of_a_record_that_could_not_be_read(tmp_path: Path, make_recipe) -> None:
    """A malformed line dropped under `on_error: skip` has no dataset or id; its header names the source and
    says there is no id, instead of printing `──  ·  · dropped at read`."""
    raw = tmp_path / "raw" / "a.jsonl"
    write_jsonl(raw, flan_rows(3))
    raw.write_text(raw.read_text(encoding="utf-8") + '{"inputs": "broken\n', encoding="utf-8")
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl", "on_error": "skip"}])
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0
    result = runner.invoke(app, ["show", str(tmp_path / "out"), "--dropped"])
    assert result.exit_code == 0, result.output
    head = result.output.splitlines()[0]
    assert head.startswith("── flan_v2 · no id (unreadable record) · dropped at read: invalid_record"), head
    assert "a.jsonl, line 4" in result.output and '{"inputs": "broken' in result.output


def test_show_finds_a_source_by_its_recipe_name_when_options_give_another_dataset_label(tmp_path: Path,
                                                                                         make_recipe) -> None:
    """README: `mixer show out/my-mix -s my_source` shows a source by the recipe's name. With
    `options: {dataset: mylabel}` the rows carry only `mylabel`; the card maps the name to it."""
    write_jsonl(tmp_path / "raw" / "chats.jsonl", [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(3)])
    recipe = make_recipe([{"name": "my_source", "adapter": "messages", "files": "chats.jsonl",
                           "options": {"dataset": "mylabel"}}])
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0
    for wanted in ("my_source", "mylabel"):
        result = runner.invoke(app, ["show", str(tmp_path / "out"), "-s", wanted, "-n", "5"])
        assert result.exit_code == 0 and result.output.count("── mylabel · mylabel_") == 3, (wanted, result.output)
    assert runner.invoke(app, ["show", str(tmp_path / "out"), "-s", "other"]).exit_code == 2


def test_show_names_a_folder_of_token_ids_or_foreign_parquet_instead_of_a_traceback(tmp_path: Path) -> None:
    """`mixer show` on a `mixer tokenize` folder (packed rows have no `dataset` column: a KeyError before) or
    on a data/ folder of other Parquet files: one line naming the folder or file, exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tok = tmp_path / "tok"
    (tok / "data").mkdir(parents=True)
    pq.write_table(pa.table({"input_ids": [[1, 2]], "ids": [["a_0"]]}), tok / "data" / "train-00000-of-00001.parquet")
    (tok / "tokenized.json").write_text("{}\n", encoding="utf-8")
    result = runner.invoke(app, ["show", str(tok)])
    assert result.exit_code == 2 and "a `mixer tokenize` folder holds token ids" in result.output, result.output
    (tok / "tokenized.json").unlink()
    result = runner.invoke(app, ["show", str(tok)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "not records of a mixer build (columns: ids, input_ids)" in text, text
    assert "Traceback" not in result.output


def test_show_and_card_refuse_a_negative_count(tmp_path: Path, make_recipe) -> None:
    recipe = _recipe(tmp_path, make_recipe)
    assert runner.invoke(app, ["build", str(recipe), "-q"]).exit_code == 0
    for args in (["show", str(tmp_path / "out"), "-n", "0"], ["show", str(tmp_path / "out"), "-n", "-1"],
                 ["card", str(tmp_path / "out"), "--html", str(tmp_path / "r.html"), "-n", "-3"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "-n" in result.output and "flan_v2 ·" not in result.output, args
    assert not (tmp_path / "r.html").exists()


def test_train_help_lists_the_shipped_recipes_as_the_readme_says() -> None:
    from mixer.train.config import shipped_recipes

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert "tulu2-sft" in shipped_recipes() and all(name in result.output for name in shipped_recipes())
    assert "mixer[train]" in result.output


def test_help_keeps_bracketed_extras_visible() -> None:
    build = runner.invoke(app, ["build", "--help"], env={"COLUMNS": "400"})
    assert "needs the [ray] extra" in build.output
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert "pip install mixer[train]" in top.output


def test_command_lists_fold_docstring_line_breaks() -> None:
    # the wrapped source lines of a docstring showed as ragged rows ("... the data card" / "in OUT/README.md")
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert "the data card in OUT/README.md and OUT/card.json, every dropped record in OUT/dropped/." in top.output
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert "closest (angular distance on calibration data; Gromov et al. 2024)" in train.output


def test_build_refuses_a_worker_count_below_one(tmp_path: Path, make_recipe) -> None:
    recipe = _recipe(tmp_path, make_recipe)
    for workers in ("0", "-2"):  # were taken silently: 0 as every core, -2 as one
        result = runner.invoke(app, ["build", str(recipe), "-q", "--workers", workers])
        assert result.exit_code == 2 and "--workers" in result.output, workers
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["mixer", "mixer.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("mixer "), result.stdout + result.stderr


def test_a_build_piped_to_a_log_prints_the_summary_and_closing_line_but_no_progress(tmp_path: Path,
                                                                                    make_recipe) -> None:
    # what the README promises off a terminal: stdout the summary tables at full width, stderr only the
    # closing line (no stage lines, no bars); -q neither tables nor closing line
    import os
    import subprocess
    import sys

    recipe = _recipe(tmp_path, make_recipe, take=10)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "MIXER_TOKEN_CACHE": "0", "MIXER_READ_CACHE": "0"}
    env.pop("COLUMNS", None)
    piped = subprocess.run([sys.executable, "-m", "mixer", "build", str(recipe)], capture_output=True, text=True,
                           cwd=root, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "records per source" in piped.stdout and "flan_v2" in piped.stdout
    assert max(len(line) for line in piped.stdout.splitlines()) > 80  # a table row, not wrapped at 80
    assert piped.stderr.splitlines() == [piped.stderr.strip()] and piped.stderr.startswith("wrote 10 records to ")
    quiet = subprocess.run([sys.executable, "-m", "mixer", "build", str(recipe), "-q"], capture_output=True,
                           text=True, cwd=root, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.stdout + quiet.stderr
