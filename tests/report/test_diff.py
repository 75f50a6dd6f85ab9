"""``mixer diff``: counts, records by content and recipe settings between two builds."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import flan_rows, write_jsonl
from rich.console import Console

from mixer.build import build
from mixer.recipe.load import load_recipe
from mixer.report.diff import diff_builds, print_diff
from mixer.stages.exact_dedup import content_hash


def _contents(out: Path) -> set[bytes]:
    rows = pq.read_table(sorted((out / "data").glob("*.parquet"))).column("messages").to_pylist()
    return {content_hash(m) for m in rows}


@pytest.fixture
def two_builds(tmp_path: Path, make_recipe) -> tuple[Path, Path]:
    """The same two sources built with beta's take 10 (A) and 15 (B)."""
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(8, "alpha"))
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(20, "beta"))

    def one(take: int, out: str) -> Path:
        recipe = make_recipe([{"name": "alpha", "adapter": "flan_v2", "files": "a.jsonl"},
                              {"name": "beta", "adapter": "cot", "files": "b.jsonl", "take": take}])
        return build(load_recipe(recipe, output=str(tmp_path / out))).out

    return one(10, "out_a"), one(15, "out_b")


def test_diff_shows_count_deltas_per_source(two_builds) -> None:
    diff = diff_builds(*two_builds)
    by_name = {s["name"]: s for s in diff["sources"]}
    assert by_name["alpha"]["final"] == {"a": 8, "b": 8, "delta": 0}
    assert by_name["beta"]["selected"] == {"a": 10, "b": 15, "delta": 5}
    assert by_name["beta"]["not_sampled"]["delta"] == -5
    assert by_name["beta"]["tokens"]["delta"] > 0
    assert diff["totals"]["records"] == {"a": 18, "b": 23, "delta": 5}


def test_diff_finds_records_only_in_a_and_only_in_b_by_content(two_builds) -> None:
    a, b = two_builds
    diff = diff_builds(a, b)
    ca, cb = _contents(a), _contents(b)
    r = diff["records"]
    assert (r["only_a"], r["only_b"], r["common"]) == (len(ca - cb), len(cb - ca), len(ca & cb))
    assert r["only_b"] - r["only_a"] == 5 and r["only_b"] > 0
    assert {x["source"]: (x["only_a"], x["only_b"]) for x in r["by_source"]}["alpha"] == (0, 0)
    assert all(e["source"] == "beta" and e["text"].startswith("beta number") for e in r["examples_only_b"])
    assert {bytes.fromhex(e["hash"]) for e in r["examples_only_b"]} <= cb - ca


def test_diff_lists_recipe_differences(two_builds) -> None:
    diff = diff_builds(*two_builds)
    fields = {d["field"]: (d["a"], d["b"]) for d in diff["recipe"]}
    assert fields["sources.beta.take"] == (10, 15)
    assert "sources.alpha.take" not in fields and "recipe.seed" not in fields


def test_a_build_against_itself_has_no_differences(two_builds) -> None:
    a, _ = two_builds
    diff = diff_builds(a, a)
    assert diff["recipe"] == [] and diff["versions"] == []
    assert diff["records"]["only_a"] == diff["records"]["only_b"] == 0
    assert all(s[k]["delta"] == 0 for s in diff["sources"] for k in ("records_in", "final", "tokens"))


def test_diff_reports_changed_files_and_sources_present_on_one_side(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(6))
    a = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}]), output=str(tmp_path / "a"))).out
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(7))
    write_jsonl(tmp_path / "raw" / "c.jsonl", flan_rows(3, "gamma"))
    b = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"},
                                       {"name": "extra", "adapter": "cot", "files": "c.jsonl"}]),
                          output=str(tmp_path / "b"))).out
    diff = diff_builds(a, b)
    fields = {d["field"] for d in diff["recipe"]}
    assert "sources.flan_v2.files[a.jsonl].sha256" in fields and "sources.extra" in fields
    extra = next(s for s in diff["sources"] if s["name"] == "extra")
    assert extra["status"] == "only_b" and extra["final"] == {"a": 0, "b": 3, "delta": 3}
    assert diff["records"]["only_b"] == 4 and diff["records"]["only_a"] == 0


def test_print_diff_fits_100_columns(two_builds) -> None:
    console = Console(width=100, record=True)
    print_diff(diff_builds(*two_builds), console)
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 100
    assert "only in A" in text and "sources.beta.take" in text and "+5" in text
