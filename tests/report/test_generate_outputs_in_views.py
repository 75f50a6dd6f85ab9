"""``mixer card`` / ``diff`` / ``show`` on a ``mixer generate`` output (issue 24, points 5 and 16).

The output folder is written here in generate's layout (card.json with ``tool: mixer generate``, its README,
``best_of_n/data/*.parquet``) instead of running a model, so these views are tested in a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    out = tmp_path / "gen"
    (out / "best_of_n" / "data").mkdir(parents=True)
    card = {"tool": "mixer generate", "mixer_version": "0", "prompts": {"records_read": 2, "generated": 2},
            "settings": {"assembly": {"name": "gen"}}}
    (out / "card.json").write_text(json.dumps(card), encoding="utf-8")
    (out / "README.md").write_text("---\ntags: [mixer]\n---\n# Generated data: gen\n\nBest-of-4 samples.\n",
                                   encoding="utf-8")
    msg = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table({"dataset": ["gen"], "id": ["gen_0"],
                      "messages": pa.array([[{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]], pa.list_(msg)),
                      "reward": [0.25], "completion_tokens": pa.array([7], pa.int32())})
    pq.write_table(table, out / "best_of_n" / "data" / "train-00000-of-00001.parquet")
    return out


def test_card_shows_a_generate_outputs_card_instead_of_a_keyerror(generated: Path) -> None:
    result = runner.invoke(app, ["card", str(generated)])
    assert result.exit_code == 0, result.output
    assert "Generated data: gen" in result.output and "Best-of-4" in result.output
    assert "tags:" not in result.output  # the front matter is for the Hub, not the reader


def test_card_json_on_a_generate_output_prints_its_card_json(generated: Path) -> None:
    result = runner.invoke(app, ["card", str(generated), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["tool"] == "mixer generate"


def test_card_html_on_a_generate_output_says_not_a_build_output(generated: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["card", str(generated), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "not a build output" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_diff_with_a_generate_output_says_not_a_build_output(generated: Path, sample_build) -> None:
    for args in ([str(generated), str(sample_build.out)], [str(sample_build.out), str(generated)]):
        result = runner.invoke(app, ["diff", *args])
        assert result.exit_code == 2, result.output
        assert f"{generated}: not a build output" in result.output.replace("\n", "")


def test_show_on_a_generate_output_names_its_datasets(generated: Path) -> None:
    result = runner.invoke(app, ["show", str(generated)])
    assert result.exit_code == 2 and "best_of_n" in result.output


def test_show_on_generated_records_prints_their_sizes_not_none_tokens(generated: Path) -> None:
    result = runner.invoke(app, ["show", str(generated / "best_of_n")])
    assert result.exit_code == 0, result.output
    assert "None" not in result.output
    assert "7 completion tokens" in result.output and "reward 0.25" in result.output


@pytest.fixture
def gatt_output(tmp_path: Path) -> Path:
    """A real `mixer gatt` output (run_gatt's own card and README), a stand-in backend giving each turn's reply."""
    from types import SimpleNamespace

    from mixer.generate.gatt import GattConfig, run_gatt

    class Replies:
        def generate(self, prompts: list, seeds: list) -> list:
            return [[SimpleNamespace(text=f"reply {i}", finish_reason="stop")] for i in range(len(prompts))]

    dialogues = tmp_path / "d.jsonl"
    dialogues.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "Say hello."}]}) + "\n",
                         encoding="utf-8")
    out = tmp_path / "gatt"
    run_gatt(GattConfig(policy="unused", dialogues=str(dialogues), output=str(out), name="gatt"), backend=Replies())
    return out


def test_card_shows_a_gatt_outputs_card_instead_of_not_a_build_outputs_card(gatt_output: Path,
                                                                             tmp_path: Path) -> None:
    # `mixer card out/gatt` said "not a build output's card" although `mixer gatt` writes card.json and README.md
    result = runner.invoke(app, ["card", str(gatt_output)])
    assert result.exit_code == 0, result.output
    assert "GAtt data" in result.output and "1 dialogue(s) of 1 read" in result.output
    assert json.loads(runner.invoke(app, ["card", str(gatt_output), "--json"]).output)["method"] == "gatt"
    html = runner.invoke(app, ["card", str(gatt_output), "--html", str(tmp_path / "r.html")])
    assert html.exit_code == 2 and "written by `mixer gatt`" in html.output.replace("\n", "")


def test_a_card_mixer_does_not_know_is_named_with_how_to_read_it(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text(json.dumps({"iteration": 1, "pairs": 3}), encoding="utf-8")
    result = runner.invoke(app, ["card", str(tmp_path)])
    assert result.exit_code == 2 and "not a build output's card" in result.output
    assert "json.tool" in result.output and "Traceback" not in result.output
