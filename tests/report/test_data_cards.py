"""The committed sample card (data_cards/v2-sample) must match what `mixer build recipes/v2-sample.yaml`
produces. Regenerate it with `python scripts/update_sample_card.py` after a change that alters it."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from conftest import ROOT

COMMITTED = ROOT / "data_cards" / "v2-sample"
HINT = "data_cards/v2-sample is out of date: run `python scripts/update_sample_card.py` and commit the result"


def _without_versions(card: dict) -> dict:
    return {k: v for k, v in card.items() if k != "versions"}


def _readme_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("Versions: ")]


def test_committed_sample_card_numbers_match_a_fresh_build(sample_build) -> None:
    committed = json.loads((COMMITTED / "card.json").read_text(encoding="utf-8"))
    assert _without_versions(committed) == _without_versions(sample_build.card), HINT


def test_committed_sample_card_text_matches_a_fresh_build(sample_build) -> None:
    assert _readme_lines(COMMITTED / "README.md") == _readme_lines(sample_build.out / "README.md"), HINT


def test_committed_sample_plots_match_a_fresh_build(sample_build) -> None:
    committed = sorted(p.name for p in (COMMITTED / "plots").glob("*.png"))
    fresh = sorted(p.name for p in (sample_build.out / "plots").glob("*.png"))
    assert committed == fresh, HINT
    recorded = json.loads((COMMITTED / "card.json").read_text())["versions"].get("matplotlib")
    if recorded == metadata.version("matplotlib"):  # PNG bytes are only stable for one matplotlib version
        for name in committed:
            assert (COMMITTED / "plots" / name).read_bytes() == (sample_build.out / "plots" / name).read_bytes(), \
                f"{name}: {HINT}"
