"""The transformers backend's continuous batching and the length-sorted reward scoring (issue 20, speed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import tiny_assets

from mixer.core.errors import MixerError
from mixer.generate import backends as backends_mod
from mixer.generate.scoring import score_by_length, token_budget_batches

PROMPTS = [[{"role": "user", "content": t}] for t in
           ("What is two plus two?", "Name a colour.", "x", "Write a haiku about rain, please, in English.")]
SEEDS = [11, 12, 13, 14]


def _backend(batching: str, temperature: float, n: int = 3) -> backends_mod.TransformersBackend:
    sampling = backends_mod.SamplingSettings(n=n, temperature=temperature, top_p=1.0, max_new_tokens=12)
    return backends_mod.TransformersBackend(tiny_assets().model, sampling, batching=batching)


def test_continuous_batching_is_what_auto_picks_with_this_transformers() -> None:
    assert backends_mod.has_continuous_batching()
    assert backends_mod.resolve_batching("auto") == "continuous"
    with pytest.raises(MixerError, match="batching must be one of"):
        backends_mod.resolve_batching("paged")


def test_continuous_batching_gives_padded_generates_tokens_under_greedy_decoding() -> None:
    continuous = _backend("continuous", 0.0).generate(PROMPTS, SEEDS)
    padded = _backend("padded", 0.0).generate(PROMPTS, SEEDS)
    assert continuous == padded
    assert all(len(c) == 3 and c[0] == c[1] == c[2] for c in continuous)  # greedy: one answer, repeated n times
    assert {x.finish_reason for c in continuous for x in c} <= {"stop", "length"}


def test_continuous_batching_samples_n_replies_reproducibly() -> None:
    first = _backend("continuous", 1.0).generate(PROMPTS, SEEDS)
    again = _backend("continuous", 1.0).generate(PROMPTS, SEEDS)
    assert first == again
    assert all(len(c) == 3 for c in first) and len({x.text for x in first[0]}) > 1


def test_token_budget_batches_sort_by_length_and_fill_to_the_budget() -> None:
    lengths = [5, 1, 9, 3, 3, 20, 2]
    # sorted: 1(i1) 2(i6) 3(i3) 3(i4) 5(i0) 9(i2) 20(i5); budget 12: [1,2,3,3] = 4*3 = 12 fits, +5 -> 5*5 > 12
    assert token_budget_batches(lengths, 12) == [[1, 6, 3, 4], [0], [2], [5]]
    assert token_budget_batches(lengths, 1000) == [[1, 6, 3, 4, 0, 2, 5]]
    assert token_budget_batches([], 10) == []
    assert token_budget_batches([50, 40], 10) == [[1], [0]]  # longer than the budget: alone


def test_length_sorted_scoring_returns_rewards_in_input_order(reward_model: Path) -> None:
    from mixer.train.reward import RewardScorer

    scorer = RewardScorer(reward_model, batch_size=1)
    convs = [[*p, {"role": "assistant", "content": reply}]
             for p, reply in zip(PROMPTS, ("Four, of course, as everyone knows.", "Blue.", "y", "Rain."), strict=True)]
    one_by_one = scorer.score(convs)
    assert score_by_length(scorer, convs, 64) == pytest.approx(one_by_one, abs=1e-5)
    assert score_by_length(scorer, convs, 10_000) == pytest.approx(one_by_one, abs=1e-5)
    assert scorer.batch_size == 1


def test_a_reply_ends_at_every_end_token_the_generation_config_lists(tmp_path: Path) -> None:
    # chat models that end a turn with their own token list it beside eos in generation_config.json (Gemma's
    # <end_of_turn>, Llama 3's <|eot_id|>); before, only the tokenizer's eos stopped a reply
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_assets().model, model)
    config = json.loads((model / "generation_config.json").read_text())
    eos = config["eos_token_id"]
    (model / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": [eos, 7]}))
    sampling = backends_mod.SamplingSettings(n=1, temperature=0.0, top_p=1.0, max_new_tokens=4)
    backend = backends_mod.TransformersBackend(model, sampling, batching="padded")
    assert backend.stop_ids == {eos, 7}
    text = backend.tokenizer.decode([100], skip_special_tokens=True)
    assert backend._completion([100, 7, 101]) == backends_mod.Completion(text, 2, "stop")
    assert backend._completion([100, 101]).finish_reason == "length"
