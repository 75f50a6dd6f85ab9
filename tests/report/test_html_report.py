"""The HTML data card (self-contained, record text escaped) and the terminal card view."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import flan_rows, write_jsonl
from rich.console import Console

from mixer.build import build
from mixer.recipe.load import load_recipe
from mixer.report.html import LONG_TEXT, render_html, write_html_report
from mixer.report.terminal import print_card

PLANTED = "<script>alert(1)</script>"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]


@pytest.fixture
def report_build(tmp_path: Path, make_recipe):
    """Two sources; alpha plants HTML in a record and has a long multi-line answer, beta drops some."""
    alpha = [{"inputs": f"Render this: {PLANTED} & <b>bold</b>", "targets": "line one\nline two"},
             {"inputs": "Write a long essay", "targets": "\n".join(f"paragraph {i} " + "text " * 30
                                                                   for i in range(12))}]
    write_jsonl(tmp_path / "raw" / "a.jsonl", alpha + flan_rows(10, "alpha"))
    beta = flan_rows(9, "beta") + [{"inputs": f"Ask ChatGPT {i}", "targets": "no"} for i in range(2)]
    write_jsonl(tmp_path / "raw" / "b.jsonl", beta)
    recipe = make_recipe([{"name": "alpha", "adapter": "flan_v2", "files": "a.jsonl"},
                          {"name": "beta", "adapter": "cot", "files": "b.jsonl"}])
    return build(load_recipe(recipe))


def test_html_is_one_self_contained_page(report_build) -> None:
    page = render_html(report_build.out, n_per_source=3)
    parser = _Collect()
    parser.feed(page)
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1 and page.count("</html>") == 1
    assert [parser.tags.count(t) for t in ("html", "head", "body", "style")] == [1, 1, 1, 1]
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    images = [v for tag, k, v in parser.attrs if tag == "img" and k == "src"]
    assert len(images) == 4  # share, tokens, turns, drops
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    for tag, key, value in parser.attrs:
        if key in ("src", "href"):
            assert value and not re.match(r"(https?:)?//", value), (tag, key, value)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)


def test_record_text_is_escaped(report_build) -> None:
    page = render_html(report_build.out, n_per_source=20)
    assert PLANTED not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_records_are_chat_turns_per_source_with_long_texts_collapsed(report_build) -> None:
    page = render_html(report_build.out, n_per_source=2)
    for source in ("alpha", "beta"):
        section = page.split(f'<section id="src-{source}">', 1)[1].split("</section>", 1)[0]
        assert section.count('<div class="record ">') == 2
        assert '<div class="role">user</div>' in section and '<div class="role">assistant</div>' in section
    full = render_html(report_build.out, n_per_source=20)
    assert "line one\nline two" in full  # newlines kept; the CSS shows them (white-space: pre-wrap)
    essay = next(m for m in re.findall(r"<details><summary>.*?</details>", full, re.S) if "paragraph 0" in m)
    assert "characters)</summary>" in essay and len("paragraph 0 " + "text " * 30) * 12 > LONG_TEXT
    assert "llm_mention" in full.split('<section id="src-beta">', 1)[1]  # dropped records of the source


def test_write_html_report_writes_the_file(report_build, tmp_path: Path) -> None:
    path = write_html_report(report_build.out, tmp_path / "reports" / "card.html", 1)
    assert path.read_text(encoding="utf-8").count('<div class="record ">') == 2


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
                    "the page structure is still checked by the other tests in this file")
def test_html_renders_in_headless_chromium(report_build, tmp_path: Path) -> None:
    from PIL import Image

    page = write_html_report(report_build.out, tmp_path / "card.html", 3)
    shot = tmp_path / "shot.png"
    # a fresh profile, and no background traffic: on a closed network Chromium's own update, sync and
    # safe-browsing connections are refused many at a time and can stall the page
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,1600", page.resolve().as_uri()],
                   check=True, timeout=120, capture_output=True)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    low, high = image.getextrema()
    assert high - low > 100  # text and plots drawn, not a blank page
    dark = sum(image.histogram()[:128])
    assert dark > 1000


def _small_card(names: list[str]) -> dict:
    def stats(n: int) -> dict:
        return {"count": n, "mean": 1234.5, "p50": 1000, "p95": 4000, "max": 20_000, "total": n * 1234}

    sources = [{"name": name, "license": "CC BY-NC-SA 4.0", "records_in": 111_912, "dropped_total": 4_336,
                "not_sampled": 12_000, "selected": 95_576, "repeat": 1, "final": 95_576, "shortfall": 0,
                "excluded": None, "take": 100_000, "dropped": {"llm_mention": 4_000, "too_many_tokens": 336},
                "tokens": stats(95_576), "turns": {**stats(95_576), "mean": 3.2, "max": 40}} for name in names]
    return {"name": "wide", "recipe": {"seed": 42, "tokenizer": "tiktoken:cl100k_base", "max_tokens": 4096},
            "totals": {"records": 95_576 * len(names), "records_in": 111_912 * len(names),
                       "dropped": 4_336 * len(names), "not_sampled": 12_000 * len(names),
                       "tokens": stats(95_576 * len(names)), "turns": stats(95_576 * len(names))},
            "sources": sources, "warnings": ["take 100000 but only 95576 records"]}


def test_card_tables_fit_100_columns_in_recipe_order(sample_build) -> None:
    for card in (sample_build.card, _small_card(["open_orca", "gpt4_alpaca", "code_alpaca", "sharegpt", "lima"])):
        console = Console(width=100, record=True)
        print_card(card, console)
        text = console.export_text()
        assert max(map(len, text.splitlines())) <= 100
        assert "…" not in text  # nothing truncated
        names = [s["name"] for s in card["sources"]]
        first_table = text.split("records per source", 1)[1]
        positions = [first_table.index(f" {name} ") for name in names]
        assert positions == sorted(positions)


def test_preference_builds_show_both_replies(tmp_path: Path) -> None:
    from conftest import ROOT

    recipe = load_recipe(ROOT / "recipes" / "dpo-sample.yaml", raw_dir=str(ROOT / "samples" / "raw_train"),
                         output=str(tmp_path / "dpo"))
    out = build(recipe).out
    page = render_html(out, n_per_source=1)
    assert page.count('<div class="role">assistant · chosen</div>') == len(recipe.sources)
    assert page.count('<div class="role">assistant · rejected</div>') == len(recipe.sources)
    assert page.count("data:image/png;base64,") >= 3
