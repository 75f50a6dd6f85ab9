"""Plots for the data card: written, readable in recipe order, and byte-identical run to run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flan_rows, write_jsonl

from mixer.build import build
from mixer.recipe.load import load_recipe
from mixer.report.plots import (
    near_cluster_sizes,
    read_group_data,
    render_plot_section,
    source_groups,
    write_plots,
    write_sample_card,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_build(tmp_path: Path, make_recipe):
    """Two sources in the FLAN line format (adapters flan_v2 and cot: distinct dataset labels); beta
    has LLM mentions and over-long records, so it drops some."""
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(12, "alpha"))
    beta = flan_rows(10, "beta") + [{"inputs": f"Ask ChatGPT {i}", "targets": "no"} for i in range(3)]
    beta += [{"inputs": f"long {i} " + "word " * 300, "targets": "x"} for i in range(2)]
    write_jsonl(tmp_path / "raw" / "b.jsonl", beta)
    recipe = make_recipe([{"name": "alpha", "adapter": "flan_v2", "files": "a.jsonl", "take": 8},
                          {"name": "beta", "adapter": "cot", "files": "b.jsonl", "repeat": 2}],
                         max_tokens=200)
    return build(load_recipe(recipe))


def test_write_plots_writes_the_card_pngs_in_order(small_build, tmp_path: Path) -> None:
    paths = write_plots(small_build.card, small_build.out / "data", tmp_path / "plots")
    assert [p.name for p in paths] == ["share.png", "tokens.png", "turns.png", "drops.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
        assert b"matplotlib" not in data  # no Software metadata carrying the version


def test_plots_are_byte_identical_across_runs(small_build, tmp_path: Path) -> None:
    first = write_plots(small_build.card, small_build.out / "data", tmp_path / "one")
    second = write_plots(small_build.card, small_build.out / "data", tmp_path / "two")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_plots_are_byte_identical_in_a_fresh_process(small_build, tmp_path: Path) -> None:
    """The committed sample card is compared against a build made by another process."""
    here = write_plots(small_build.card, small_build.out / "data", tmp_path / "here")
    (tmp_path / "card.json").write_text(json.dumps(small_build.card), encoding="utf-8")
    code = ("import json, sys; from pathlib import Path; from mixer.report.plots import write_plots; "
            "write_plots(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), Path(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "card.json"), str(small_build.out / "data"),
                    str(tmp_path / "there")], check=True)
    for p in here:
        assert (tmp_path / "there" / p.name).read_bytes() == p.read_bytes(), p.name


def test_token_and_turn_data_come_from_the_shards_per_source(small_build) -> None:
    groups = read_group_data(small_build.card, small_build.out / "data")
    card = {s["name"]: s for s in small_build.card["sources"]}
    assert list(groups) == ["alpha", "beta"]
    assert len(groups["alpha"].tokens) == card["alpha"]["final"] == 8
    assert len(groups["beta"].tokens) == card["beta"]["final"] == 20  # repeat 2 counted, as in the output
    assert max(groups["beta"].tokens) <= 200 and set(groups["alpha"].turns) == {1}


def test_sources_sharing_a_dataset_label_are_shown_together() -> None:
    card = {"sources": [{"name": "first", "datasets": {"flan_v2": 4}},
                        {"name": "second", "datasets": {"flan_v2": 2}},
                        {"name": "science", "datasets": {"science.a": 1, "science.b": 2}},
                        {"name": "empty", "datasets": {}}]}
    label_group, order = source_groups(card)
    assert label_group == {"flan_v2": "first + second", "science.a": "science", "science.b": "science"}
    assert order == ["first + second", "science", "empty"]


def test_no_drops_means_no_drops_plot(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(6))
    result = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}])))
    paths = write_plots(result.card, result.out / "data", tmp_path / "plots")
    assert [p.stem for p in paths] == ["share", "tokens", "turns"]


def test_near_dedup_cluster_histogram_is_plotted_when_the_card_has_one(small_build, tmp_path: Path) -> None:
    card = {**small_build.card, "near_dedup": {"removed_total": 9, "clusters": 5,
                                               "cluster_size_histogram": {"2": 3, "4": 2}}}
    assert near_cluster_sizes(card) == {2: 3, 4: 2}
    assert near_cluster_sizes(small_build.card) == {}
    paths = write_plots(card, small_build.out / "data", tmp_path / "plots")
    assert paths[-1].name == "near_dedup_clusters.png" and paths[-1].read_bytes().startswith(PNG_SIGNATURE)


def test_plot_section_embeds_relative_paths_with_titles(small_build, tmp_path: Path) -> None:
    paths = write_plots(small_build.card, small_build.out / "data", tmp_path / "plots")
    md = render_plot_section(paths, tmp_path)
    assert md.startswith("## Plots")
    assert "![Share of records and tokens per source](plots/share.png)" in md
    assert "![Token lengths per source](plots/tokens.png)" in md and str(tmp_path) not in md
    assert render_plot_section([], tmp_path) == ""


def test_write_sample_card_replaces_the_destination(small_build, tmp_path: Path) -> None:
    write_plots(small_build.card, small_build.out / "data", small_build.out / "plots")
    dest = tmp_path / "cards" / "sample"
    (dest / "plots").mkdir(parents=True)
    (dest / "plots" / "stale.png").write_bytes(b"old")
    written = write_sample_card(small_build.out, dest)
    assert {p.name for p in written} == {"README.md", "card.json", "share.png", "tokens.png", "turns.png",
                                         "drops.png"}
    assert not (dest / "plots" / "stale.png").exists()


def test_importing_the_card_modules_does_not_import_matplotlib() -> None:
    """``mixer --help`` must stay fast: matplotlib is imported only when a plot is drawn."""
    code = ("import sys, mixer.cli, mixer.report.plots, mixer.report.html, mixer.report.diff; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_build_with_no_records_plots_its_turns_without_a_matplotlib_warning(tmp_path: Path) -> None:
    import warnings

    from mixer.report.plots import GroupData, plot_turns

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_turns({"lima": GroupData()}, ["lima"], tmp_path / "turns.png")
    assert path.stat().st_size > 0
