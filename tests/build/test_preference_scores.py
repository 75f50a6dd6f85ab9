"""Preference builds carry each pair's ratings (``score_chosen``/``score_rejected``) from read to the
output, null where the source has none, and the card reports them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from mixer.build import build
from mixer.core.errors import InputError
from mixer.core.records import SCORE_FIELDS
from mixer.core.stats import score_summary
from mixer.recipe.load import load_recipe

RAW = ROOT / "samples" / "raw_train"
UF_FILE = RAW / "ultrafeedback" / "train_prefs-00000-of-00001.parquet"


@pytest.fixture(scope="module")
def dpo_build(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dpo-scores") / "out"
    return build(load_recipe(ROOT / "recipes" / "dpo-sample.yaml", raw_dir=str(RAW), output=str(out)))


def raw_scores() -> dict[tuple[str, str], tuple[float, float]]:
    """(id, chosen reply stripped) -> the two ratings, straight from the published Parquet."""
    rows = pq.read_table(UF_FILE, columns=["prompt_id", "chosen", *SCORE_FIELDS]).to_pylist()
    return {(f"ultrafeedback_{r['prompt_id']}", r["chosen"][-1]["content"].strip()):
            (r["score_chosen"], r["score_rejected"]) for r in rows}


def output_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "data").to_pylist()


def assert_scores_are_the_published_ones(rows: list[dict]) -> None:
    expected = raw_scores()
    uf = [r for r in rows if r["dataset"] == "ultrafeedback"]
    assert uf
    for r in uf:
        assert (r["score_chosen"], r["score_rejected"]) == expected[(r["id"], r["chosen"][0]["content"])]


def test_ultrafeedback_ratings_survive_read_select_and_write(dpo_build) -> None:
    rows = output_rows(dpo_build.out)
    assert pq.read_schema(next((dpo_build.out / "data").glob("*.parquet"))).field("score_chosen").nullable
    assert_scores_are_the_published_ones(rows)
    uf = next(s for s in dpo_build.card["sources"] if s["name"] == "ultrafeedback")
    assert sum(r["dataset"] == "ultrafeedback" for r in rows) == uf["final"]


def test_hh_rlhf_pairs_carry_null_scores(dpo_build) -> None:
    hh = [r for r in output_rows(dpo_build.out) if r["dataset"] == "hh_rlhf"]
    assert hh and all(r["score_chosen"] is None and r["score_rejected"] is None for r in hh)


def test_sample_then_filter_order_keeps_the_ratings(make_recipe: Callable[..., Path]) -> None:
    """open-instruct's order rebuilds each sampled record before normalising it (mixer.build)."""
    # the sample plants one prompt in two rows, and UltraFeedback's id is the prompt's hash: one pair per
    # prompt keeps (dataset, id) unique (README, Preference data)
    recipe = make_recipe([{"name": "ultrafeedback", "files": str(UF_FILE), "take": 10}],
                         kind="preference", order="sample_then_filter",
                         dedup={"exact": {"preference_key": "prompt"}})
    result = build(load_recipe(recipe))
    rows = output_rows(result.out)
    assert len(rows) == result.card["totals"]["records"] > 0
    assert_scores_are_the_published_ones(rows)


def test_a_built_mixture_read_back_by_the_preference_adapter_keeps_its_scores(
        dpo_build, make_recipe: Callable[..., Path]) -> None:
    recipe = make_recipe([{"name": "again", "adapter": "preference", "files": str(dpo_build.out / "data" / "*.parquet"),
                           "take": "all", "license": "other"}], kind="preference")
    rebuilt = build(load_recipe(recipe))
    # keyed by the pair, not the id alone: UltraFeedback's id is its prompt's hash, and two pairs on one
    # prompt both stay under the default pair key of exact dedup
    def scores(out: Path) -> dict[tuple[str, str, str], tuple[float | None, float | None]]:
        return {(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"]):
                (r["score_chosen"], r["score_rejected"]) for r in output_rows(out)}

    assert scores(rebuilt.out) == scores(dpo_build.out)
    assert len(scores(dpo_build.out)) == dpo_build.card["totals"]["records"]


def test_card_reports_how_many_pairs_carry_scores_and_their_gap(dpo_build) -> None:
    card = dpo_build.card
    rows = output_rows(dpo_build.out)
    uf = next(s for s in card["sources"] if s["name"] == "ultrafeedback")
    hh = next(s for s in card["sources"] if s["name"] == "hh_rlhf")
    gaps = [r["score_chosen"] - r["score_rejected"] for r in rows if r["score_chosen"] is not None]
    assert uf["scores"]["pairs"] == uf["scores"]["scored"] == uf["final"] == len(gaps)
    assert uf["scores"]["gap"] == score_summary(gaps)
    assert uf["scores"]["gap"]["min"] > 0  # ties are dropped, so every kept pair has a gap
    assert "1-10" in uf["scores"]["scale"]
    assert (hh["scores"]["pairs"], hh["scores"]["scored"], hh["scores"]["gap"]["mean"]) == (hh["final"], 0, None)
    assert card["totals"]["scores"] == {"pairs": card["totals"]["records"], "scored": len(gaps)}
    readme = (dpo_build.out / "README.md").read_text()
    assert "## Preference scores" in readme and f"{len(gaps)} of {len(rows)} pairs carry" in readme
    assert "name: score_chosen" in readme and "dtype: float64" in readme


def test_mixer_card_shows_the_scores_table_within_100_columns(dpo_build) -> None:
    from rich.console import Console

    from mixer.report.terminal import print_card

    console = Console(width=100, record=True)
    print_card(dpo_build.card, console)
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 100 and "…" not in text
    scores = text.split("preference scores", 1)[1].split("dropped by reason", 1)[0]
    assert " ultrafeedback " in scores and " hh_rlhf " in scores and "with scores" in scores


def test_sft_cards_have_no_scores(sample_build) -> None:
    assert all("scores" not in s for s in sample_build.card["sources"])
    assert "scores" not in sample_build.card["totals"]
    assert "Preference scores" not in (sample_build.out / "README.md").read_text()


def test_a_half_rated_pair_in_a_preference_file_names_the_record(tmp_path: Path,
                                                                  make_recipe: Callable[..., Path]) -> None:
    from conftest import write_jsonl

    pair = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    write_jsonl(tmp_path / "raw" / "pairs.jsonl", [dict(pair, score_chosen=7.0, score_rejected=2.0),
                                                    dict(pair, score_chosen=7.0)])
    recipe = make_recipe([{"name": "p", "adapter": "preference", "files": "pairs.jsonl", "license": "other"}],
                         kind="preference")
    with pytest.raises(InputError, match=r"pairs.jsonl.*line 2.*'score_rejected' is missing"):
        build(load_recipe(recipe))
