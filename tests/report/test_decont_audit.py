"""The card and the HTML report list every record decontamination removed, beside the benchmark item it
matched, shared words marked, per benchmark; the card caps its list with a count of the rest."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import ROOT, flan_rows, write_jsonl

from mixer.build import build
from mixer.recipe.load import load_recipe
from mixer.report.html import render_html
from mixer.report.markdown import AUDIT_LIMIT

QUESTIONS = [json.loads(line)["question"]
             for line in (ROOT / "tests" / "data" / "gsm8k_style_test.jsonl").read_text().splitlines()]


def _changed(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 11), text)


def _recipe(tmp_path: Path, make_recipe, normalise: bool, copies: list[str]) -> Path:
    write_jsonl(tmp_path / "raw" / "bench" / "gsm8k_test.jsonl", [{"question": q} for q in QUESTIONS])
    rows = [{"inputs": f"Problem {k}, solve step by step: " + c + " <b>bold</b>", "targets": "42"}
            for k, c in enumerate(copies)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows + flan_rows(5))
    bench = {"name": "gsm8k", "files": ["bench/gsm8k_test.jsonl"], "field": "question",
             **({"normalise_numbers": True} if normalise else {})}
    return make_recipe([{"name": "flan_v2", "files": "a.jsonl"}], decontaminate={"benchmarks": [bench]})


def test_card_lists_flagged_records_beside_their_items_and_caps_the_list(tmp_path: Path, make_recipe) -> None:
    copies = QUESTIONS + QUESTIONS[:5]  # 25 copies (each its own prompt): more than the card lists
    result = build(load_recipe(_recipe(tmp_path, make_recipe, False, copies)))
    flagged = result.card["contamination"]["flagged"]["gsm8k"]
    assert len(flagged) == 25 and result.card["sources"][0]["dropped"] == {"contaminated:gsm8k": 25}
    first = flagged[0]
    assert first["source"] == "flan_v2" and first["item_index"] == 0 and first["rule"] == "coverage"
    marked = [first["record"]["text"][a:b] for a, b in first["record"]["marks"]]
    assert len(marked) == 1 and marked[0].startswith("A baker makes 24") and marked[0].endswith("How many are left")
    assert "solve step by step" not in marked[0]

    readme = (result.out / "README.md").read_text()
    assert "### Flagged for gsm8k (25)" in readme
    assert readme.count("   - gsm8k item ") == AUDIT_LIMIT
    assert f"{25 - AUDIT_LIMIT} more flagged for gsm8k" in readme
    assert "**A baker makes 24 muffins" in readme and "\\<b\\>bold\\</b\\>" in readme  # text escaped
    assert '"flagged"' not in readme  # the JSON block keeps to the numbers

    page = render_html(result.out)
    assert page.count('<div class="record flagged">') == 25
    assert "<mark>A baker makes 24 muffins" in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_changed_number_copies_are_flagged_only_with_normalise_numbers(tmp_path: Path, make_recipe) -> None:
    copies = [_changed(q) for q in QUESTIONS]
    plain = build(load_recipe(_recipe(tmp_path, make_recipe, False, copies), output=str(tmp_path / "plain")))
    assert plain.card["contamination"]["removed_total"] == 0
    assert plain.card["contamination"]["flagged"] == {"gsm8k": []}
    with_numbers = build(load_recipe(_recipe(tmp_path, make_recipe, True, copies), output=str(tmp_path / "num")))
    section = with_numbers.card["contamination"]
    assert section["removed_total"] == 20 and section["normalise_numbers"] == ["gsm8k"]
    assert all(e["numbers_normalised"] for e in section["flagged"]["gsm8k"])
    readme = (with_numbers.out / "README.md").read_text()
    assert "numbers compared as one placeholder" in readme
