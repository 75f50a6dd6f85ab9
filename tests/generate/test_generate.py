"""``mixer generate`` on CPU: a tiny random Llama samples, a tiny reward model trained here scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from train_fixtures import SFT_RECORDS, copy_without_chat_template, tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.generate import backends as backends_mod
from mixer.generate import run as run_mod
from mixer.generate.prompts import cut_prompt, read_build_prompts, read_recipe_prompts
from mixer.generate.run import GenerateConfig, pick, prompt_seed, run_generate
from mixer.train.reward import RewardScorer

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_process")


def _cfg(out: Path, reward_model: Path, **kw: object) -> GenerateConfig:
    base: dict = {"policy": str(tiny_assets().model), "reward_model": str(reward_model), "output": str(out),
                  "data": str(tiny_assets().sft_data), "n": 4, "max_new_tokens": 8, "seed": 7, "batch_size": 4,
                  "shard_prompts": 4, "name": "gen"}
    return GenerateConfig(**{**base, **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, reward_model: Path) -> Path:
    out = tmp_path_factory.mktemp("gen") / "out"
    run_generate(_cfg(out, reward_model))
    return out


# --- prompts ---------------------------------------------------------------------------------------


def test_prompt_modes_cut_first_user_turn_or_context_before_last_reply() -> None:
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    assert [m["content"] for m in cut_prompt(conv, "first_user")] == ["s", "a"]
    assert [m["content"] for m in cut_prompt(conv, "conversation")] == ["s", "a", "b", "c"]
    assert cut_prompt(conv[:4], "conversation") == conv[:4]  # a preference prompt ends with its user turn
    assert cut_prompt([{"role": "assistant", "content": "x"}], "first_user") is None


def test_build_prompts_account_for_every_record_and_skip_repeats(tmp_path: Path) -> None:
    from train_fixtures import write_sft_build

    records = [*SFT_RECORDS, {**SFT_RECORDS[0], "id": "again"}]
    prompts = read_build_prompts(write_sft_build(tmp_path, records), "first_user", max_prompts=10)
    assert len(prompts.prompts) == 10
    assert prompts.records_read == 13 == len(prompts.prompts) + sum(prompts.skipped.values())
    assert prompts.skipped == {"duplicate_prompt": 1, "beyond_max_prompts": 2}


def test_prompt_keys_stay_unique_when_a_suffixed_key_is_another_records_id(tmp_path: Path) -> None:
    # ids a, a, a~1 (three datasets may share an id): the repeat of `a` is keyed a~1, so the record whose own id
    # is a~1 must take another key, or two prompts share a seed and the output ids collide in a build
    from train_fixtures import write_sft_build

    def rec(dataset: str, rid: str, text: str) -> dict:
        return {"dataset": dataset, "id": rid, "messages": [{"role": "user", "content": text},
                                                            {"role": "assistant", "content": "ok"}]}

    records = [rec("d", "a", "one"), rec("e", "a", "two"), rec("f", "a~1", "three"), rec("g", "a~1", "four")]
    prompts = read_build_prompts(write_sft_build(tmp_path, records), "first_user").prompts
    assert [p.key for p in prompts] == ["a", "a~1", "a~1~1", "a~1~2"]
    assert [p.record_id for p in prompts] == ["a", "a", "a~1", "a~1"]


def test_a_blank_user_turn_to_answer_is_skipped_as_empty_prompt(tmp_path: Path) -> None:
    from train_fixtures import write_sft_build

    def rec(rid: str, *turns: tuple[str, str]) -> dict:
        return {"dataset": "d", "id": rid, "messages": [{"role": r, "content": c} for r, c in turns]}

    records = [rec("empty", ("user", ""), ("assistant", "a")), rec("blank", ("user", " \n "), ("assistant", "a")),
               rec("fine", ("user", "hello"), ("assistant", "a")),
               rec("later", ("user", "q"), ("assistant", "a"), ("user", "  "), ("assistant", "b"))]
    first = read_build_prompts(write_sft_build(tmp_path / "b", records), "first_user")
    assert [p.key for p in first.prompts] == ["fine", "later"]
    assert first.skipped == {"empty_prompt": 2}
    # in conversation mode the turn answered is the last user turn: `later`'s is blank
    whole = read_build_prompts(tmp_path / "b", "conversation")
    assert [p.key for p in whole.prompts] == ["fine"]
    assert whole.skipped == {"empty_prompt": 3}
    assert whole.records_read == 4 == len(whole.prompts) + sum(whole.skipped.values())


def test_recipe_source_prompts_come_through_the_adapter() -> None:
    prompts = read_recipe_prompts(REPO / "recipes" / "dpo-sample.yaml", ["hh_rlhf"], "conversation",
                                  raw_dir=str(REPO / "samples" / "raw_train"))
    assert prompts.prompts and all(p.messages[-1]["role"] == "user" for p in prompts.prompts)
    assert prompts.records_read == len(prompts.prompts) + sum(prompts.skipped.values())
    assert any(k.startswith("adapter_dropped:") for k in prompts.skipped)


# --- picking ---------------------------------------------------------------------------------------


def _s(i: int, reward: float | None, text: str = "", finish: str = "stop") -> dict:
    return {"sample": i, "reward": reward, "completion": text or f"reply {i}", "finish_reason": finish, "n_tokens": 3}


def test_pick_takes_highest_and_lowest_reward_and_names_why_no_pair() -> None:
    best, worst, reason, _ = pick([_s(0, 0.1), _s(1, 0.9), _s(2, -0.5), _s(3, 0.9)], dedup=True,
                                  keep_truncated=True, min_reward_gap=0.0)
    assert (best["sample"], worst["sample"], reason) == (1, 2, None)  # ties go to the lower index
    assert pick([_s(0, 0.1), _s(1, 0.3)], dedup=True, keep_truncated=True, min_reward_gap=0.5)[2] == \
        "reward_gap_below_min"
    assert pick([_s(0, 0.1, "same"), _s(1, 0.1, " same ")], dedup=True, keep_truncated=True,
                min_reward_gap=0)[2] == "fewer_than_two_distinct_completions"
    assert pick([_s(0, None), _s(1, None)], dedup=True, keep_truncated=True, min_reward_gap=0)[2] == \
        "no_valid_completion"
    assert pick([_s(0, 0.2, finish="length"), _s(1, 0.1)], dedup=True, keep_truncated=False,
                min_reward_gap=0)[2] == "fewer_than_two_distinct_completions"


def test_pick_counts_every_sample_once_so_the_counts_add_up() -> None:
    # before, with keep_truncated a cut sample was counted as truncated and as a candidate (or duplicate)
    group = [_s(0, 0.2, "cut", finish="length"), _s(1, 0.1), _s(2, None, " "), _s(3, 0.2, "cut", finish="length")]
    kept = pick(group, dedup=True, keep_truncated=True, min_reward_gap=0)[3]
    assert (kept["candidates"], kept["duplicate"], kept["empty"], kept["truncated"]) == (2, 1, 1, 0)
    assert kept["candidates_truncated"] == 1
    dropped = pick(group, dedup=True, keep_truncated=False, min_reward_gap=0)[3]
    assert (dropped["candidates"], dropped["duplicate"], dropped["empty"], dropped["truncated"]) == (1, 0, 1, 2)
    assert dropped["candidates_truncated"] == 0


def test_prompt_seeds_depend_only_on_run_seed_and_prompt_key() -> None:
    assert prompt_seed(1, "a") == prompt_seed(1, "a") != prompt_seed(2, "a")
    assert prompt_seed(1, "a") != prompt_seed(1, "b")


# --- generation --------------------------------------------------------------------------------------


def test_generate_scores_n_samples_per_prompt_and_keeps_best_and_worst(generated: Path, reward_model: Path) -> None:
    samples = pq.read_table(generated / "shards").to_pylist()
    assert len(samples) == len(SFT_RECORDS) * 4 and len(list((generated / "shards").glob("*.parquet"))) == 3
    scored = [s for s in samples if s["reward"] is not None]
    rescored = RewardScorer(reward_model, batch_size=1).score(
        [[*s["prompt"], {"role": "assistant", "content": s["completion"]}] for s in scored])
    assert [s["reward"] for s in scored] == pytest.approx(rescored, abs=1e-5)
    by_key: dict[str, list[dict]] = {}
    for s in scored:
        by_key.setdefault(s["prompt_key"], []).append(s)
    best = pq.read_table(generated / "best_of_n" / "data").to_pylist()
    pairs = pq.read_table(generated / "best_vs_worst" / "data").to_pylist()
    assert best and pairs
    for row in best:
        group = by_key[row["prompt_id"]]
        assert row["reward"] == max(s["reward"] for s in group)
        assert row["messages"][-1]["role"] == "assistant" and row["messages"][-2]["role"] == "user"
    for row in pairs:
        group = by_key[row["prompt_id"]]
        assert row["reward_chosen"] == max(s["reward"] for s in group)
        assert row["reward_rejected"] == min(s["reward"] for s in group)
        assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["content"] != row["rejected"][0]["content"]
    card = json.loads((generated / "card.json").read_text())
    assert card["prompts"]["generated"] == len(SFT_RECORDS) == card["best_vs_worst"]["pairs"] + sum(
        card["best_vs_worst"]["no_pair"].values())
    assert card["samples"]["total"] == len(samples) == sum(v for k, v in card["samples"].items() if k != "total")
    assert card["backend"]["name"] == "transformers" and "transformers" in card["backend"]["versions"]
    assert card["rewards"]["per_prompt_spread"]["count"] > 0 and card["lengths"]["chosen_tokens"]["count"] == len(pairs)
    assert "Prompts" in (generated / "README.md").read_text()


def test_two_runs_with_one_seed_write_identical_files(generated: Path, reward_model: Path, tmp_path: Path) -> None:
    run_generate(_cfg(tmp_path / "again", reward_model))
    assert _files(tmp_path / "again") == _files(generated)


def test_an_interrupted_run_resumes_to_the_same_bytes(generated: Path, reward_model: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = backends_mod.TransformersBackend.generate
    calls = {"n": 0}

    def flaky(self, prompts, seeds):  # noqa: ANN001, ANN202 - the backend's own signature
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, prompts, seeds)

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", flaky)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_generate(_cfg(out, reward_model))
    assert [p.name for p in (out / "shards").glob("*.parquet")] == ["samples-00000.parquet"]
    assert not (out / "card.json").exists()
    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", real)
    run_generate(_cfg(out, reward_model))
    assert _files(out) == _files(generated)


def test_a_finished_run_is_not_redone(generated: Path, reward_model: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "done"
    shutil.copytree(generated, out)

    def no_models(*a: object, **k: object) -> None:
        raise AssertionError("models loaded for a finished run")

    monkeypatch.setattr(run_mod, "_load_models", no_models)
    card = run_generate(_cfg(out, reward_model))
    assert card == json.loads((generated / "card.json").read_text())
    # a pick setting changes what is picked from the same shards, still without sampling again
    card = run_generate(_cfg(out, reward_model, min_reward_gap=1e9))
    assert card["best_vs_worst"]["pairs"] == 0
    assert card["best_vs_worst"]["no_pair"].get("reward_gap_below_min", 0) > 0


def test_greedy_duplicates_are_counted_as_no_distinct_pair(reward_model: Path, tmp_path: Path) -> None:
    card = run_generate(_cfg(tmp_path / "greedy", reward_model, temperature=0.0, n=3, max_prompts=4))
    assert card["best_vs_worst"] == {"pairs": 0, "no_pair": {"fewer_than_two_distinct_completions": 4}}
    assert card["samples"]["duplicate"] == 8 and card["best_of_n"]["rows"] == 4
    # each sample counted once (before, a cut sample kept by --keep-truncated was truncated and a candidate too)
    assert card["samples"]["candidates"] + card["samples"]["duplicate"] + card["samples"]["empty"] == 12
    assert card["samples"]["truncated"] == 0 and card["candidates_truncated"] <= card["samples"]["candidates"]
    assert "each counted once" in (tmp_path / "greedy" / "README.md").read_text()


def test_a_foreign_folder_or_other_settings_are_refused(generated: Path, reward_model: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MixerError, match="not a mixer generate output"):
        run_generate(_cfg(foreign, reward_model))
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(MixerError, match="sampling.n differ"):
        run_generate(_cfg(generated, reward_model, n=2))


def test_cli_errors_exit_2_without_traceback(reward_model: Path, tmp_path: Path) -> None:
    a = tiny_assets()
    no_template = copy_without_chat_template(a.model, tmp_path / "policy")
    base = ["generate", "--reward-model", str(reward_model), "--data", str(a.sft_data), "-n", "2",
            "--max-new-tokens", "4"]
    result = runner.invoke(app, [*base, "--policy", str(no_template), "--output", str(tmp_path / "o1")])
    assert result.exit_code == 2 and "no chat template" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o1").exists()  # checked before the output folder is made
    result = runner.invoke(app, [*base, "--policy", str(a.model), "--output", str(tmp_path / "o2"),
                                 "--backend", "vllm"])
    if backends_mod.package_version("vllm") is None:
        assert result.exit_code == 2 and "mixer[vllm]" in result.output
    result = runner.invoke(app, [*base, "--policy", str(a.model), "--output", str(tmp_path / "o3"),
                                 "--reward-model", str(a.model)])
    assert result.exit_code == 2 and "not a reward model" in result.output
    result = runner.invoke(app, [*base, "--policy", str(a.model), "--output", str(tmp_path / "o4"), "--recipe", "x"])
    assert result.exit_code == 2 and "exactly one of --data" in result.output


def test_outputs_build_through_recipes_and_train_with_sft_and_dpo(generated: Path, tmp_path: Path) -> None:
    import math

    from mixer.build import build
    from mixer.recipe.load import load_recipe
    from mixer.train.config import load_config
    from mixer.train.trainer import build_trainer

    sft_build = build(load_recipe(REPO / "recipes" / "generated-sft.yaml", raw_dir=str(generated),
                                  output=str(tmp_path / "sft-build")))
    dpo_build = build(load_recipe(REPO / "recipes" / "generated-dpo.yaml", raw_dir=str(generated),
                                  output=str(tmp_path / "dpo-build")))
    best = pq.read_table(generated / "best_of_n" / "data").to_pylist()
    pairs = pq.read_table(generated / "best_vs_worst" / "data").to_pylist()
    built = pq.read_table(sft_build.out / "data").to_pylist()
    (source,) = sft_build.card["sources"]
    assert source["records_in"] == len(best) == source["dropped_total"] + source["not_sampled"] + source["selected"]
    assert {r["id"] for r in built} <= {r["id"] for r in best} and all(r["dataset"] == "gen" for r in built)
    (source,) = dpo_build.card["sources"]
    assert source["records_in"] == len(pairs)
    # the rewards of the two replies go on as the pair's scores (recipe option scores: reward)
    rewards = {r["id"]: (r["reward_chosen"], r["reward_rejected"]) for r in pairs}
    built_pairs = pq.read_table(dpo_build.out / "data").to_pylist()
    assert built_pairs and all((r["score_chosen"], r["score_rejected"]) == rewards[r["id"]] for r in built_pairs)
    assert source["scores"]["scored"] == len(built_pairs) and "reward-model" in source["scores"]["scale"]
    a = tiny_assets()
    sft = load_config("sft", REPO / "train" / "tiny-cpu.yaml", ["max_steps=2"], model=str(a.model),
                      data=str(sft_build.out), output_dir=str(tmp_path / "sft"))
    trainer = build_trainer(sft)
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    dpo = load_config("dpo", REPO / "train" / "tiny-cpu-dpo.yaml", ["max_steps=1"], model=str(a.model),
                      data=str(dpo_build.out), output_dir=str(tmp_path / "dpo"))
    trainer = build_trainer(dpo)
    trainer.train()
    first = next(h for h in trainer.state.log_history if "loss" in h)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)


def test_preference_adapter_reads_pairs_and_rejects_malformed_ones() -> None:
    from mixer.core.errors import Location, RecordError
    from mixer.sources.base import SourceContext
    from mixer.sources.preference import Preference, PreferenceOptions

    adapter = Preference(PreferenceOptions(), SourceContext("p", 0))
    loc = Location("pairs.parquet", record=3)
    user, good, bad = ({"role": r, "content": c} for r, c in (("user", "q"), ("assistant", "a"), ("assistant", "b")))
    (record,) = adapter.convert({"prompt": [user], "chosen": [good], "rejected": [bad]}, loc)
    assert record["id"] == "p_3" and record["messages"] == [user, good] and record["rejected"] == [bad]
    (dropped,) = adapter.convert({"prompt": [user], "chosen": [good], "rejected": [dict(good, content=" a ")]}, loc)
    assert dropped.reason == "chosen_equals_rejected"
    with pytest.raises(RecordError, match="ending with a user turn"):
        list(adapter.convert({"prompt": [good], "chosen": [good], "rejected": [bad]}, loc))
    with pytest.raises(RecordError, match="exactly one assistant"):
        list(adapter.convert({"prompt": [user], "chosen": [user], "rejected": [bad]}, loc))


def fake_vllm(monkeypatch: pytest.MonkeyPatch, finish_reasons: tuple[str, ...] = ("stop", "length")) -> dict:
    """vLLM cannot run here (no GPU, no CPU wheel): a stand-in module that records what the backend asks of
    vLLM's offline API (LLM(...), SamplingParams(n, seed, ...), LLM.chat), checks the arguments as vLLM's
    SamplingParams does (n must be 1 when greedy, temperature in [0, 2]) and returns its output shape."""
    import sys
    import types
    from dataclasses import dataclass, field

    calls: dict = {}

    @dataclass
    class SamplingParams:
        n: int
        temperature: float
        top_p: float
        max_tokens: int
        seed: int

        def __post_init__(self) -> None:  # vllm/sampling_params.py: _verify_args, _verify_greedy_sampling
            if not 0 <= self.temperature <= 2:
                raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
            if self.temperature == 0 and self.n > 1:
                raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")

    @dataclass
    class Out:
        text: str
        token_ids: list = field(default_factory=list)
        finish_reason: str = "stop"

    class LLM:
        def __init__(self, **kwargs: object) -> None:
            calls["init"] = kwargs

        def chat(self, messages, sampling_params, **kwargs):  # noqa: ANN001, ANN201, ANN003
            calls["chat"] = (messages, sampling_params, kwargs)
            return [types.SimpleNamespace(outputs=[Out(f"r{i}{j}", [1] * (j + 1), finish_reasons[j % 2])
                                                   for j in range(p.n)]) for i, p in enumerate(sampling_params)]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(backends_mod, "require_vllm", lambda: None)
    return calls


PROMPTS = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]


def test_vllm_backend_maps_outputs_to_the_shared_format_with_one_seed_per_prompt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_vllm(monkeypatch)
    sampling = backends_mod.SamplingSettings(n=2, temperature=0.7, top_p=0.9, max_new_tokens=16)
    backend = backends_mod.VLLMBackend(tiny_assets().model, sampling, seed=3)
    out = backend.generate(PROMPTS, [11, 12])
    assert out == [[backends_mod.Completion("r00", 1, "stop"), backends_mod.Completion("r01", 2, "length")],
                   [backends_mod.Completion("r10", 1, "stop"), backends_mod.Completion("r11", 2, "length")]]
    messages, params, kwargs = calls["chat"]
    assert messages == PROMPTS and [p.seed for p in params] == [11, 12]
    assert {(p.n, p.temperature, p.top_p, p.max_tokens) for p in params} == {(2, 0.7, 0.9, 16)}
    assert kwargs["add_generation_prompt"] is True and "<|assistant|>" in kwargs["chat_template"]
    assert calls["init"]["seed"] == 3


def test_vllm_backend_decodes_greedy_once_and_repeats_it_n_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM refuses SamplingParams(n > 1, temperature 0); the transformers backend repeats its one greedy answer."""
    calls = fake_vllm(monkeypatch)
    sampling = backends_mod.SamplingSettings(n=3, temperature=0.0, top_p=0.9, max_new_tokens=16)
    out = backends_mod.VLLMBackend(tiny_assets().model, sampling).generate(PROMPTS, [11, 12])
    assert [p.n for p in calls["chat"][1]] == [1, 1]
    assert out == [[backends_mod.Completion("r00", 1, "stop")] * 3, [backends_mod.Completion("r10", 1, "stop")] * 3]


def test_vllm_backend_refuses_an_aborted_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.core.errors import MixerError

    fake_vllm(monkeypatch, finish_reasons=("stop", "abort"))
    sampling = backends_mod.SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=16)
    with pytest.raises(MixerError, match="finish_reason 'abort'"):
        backends_mod.VLLMBackend(tiny_assets().model, sampling).generate(PROMPTS, [1, 2])


def test_vllm_temperature_above_vllms_range_is_refused_before_loading(tmp_path: Path) -> None:
    from mixer.core.errors import MixerError

    cfg = GenerateConfig(policy="p", reward_model="r", output=str(tmp_path / "o"), data="d", backend="vllm",
                         temperature=2.5)
    with pytest.raises(MixerError, match=r"vllm takes temperatures in \[0, 2\], got 2.5"):
        cfg.validate()
    GenerateConfig(policy="p", reward_model="r", output=str(tmp_path / "o"), data="d", temperature=2.5).validate()


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     reward_model: Path) -> None:
    import errno

    a = tiny_assets()

    def read_only(cfg: GenerateConfig, manifest: dict, files: object = ()) -> str:
        raise OSError(errno.EROFS, "Read-only file system", cfg.output)

    monkeypatch.setattr("mixer.generate.store.prepare_output", read_only)  # behind store.open_shards
    out = tmp_path / "ro" / "gen"
    result = runner.invoke(app, ["generate", "--policy", str(a.model), "--reward-model", str(reward_model),
                                 "--data", str(a.sft_data), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert f"error: {out}: Read-only file system" in result.output and "Traceback" not in result.output


def test_a_missing_model_folder_is_named_before_the_output_folder_is_made(tmp_path: Path) -> None:
    a = tiny_assets()
    out = tmp_path / "gen"
    for option in ("--policy", "--reward-model"):
        models = {"--policy": str(a.model), "--reward-model": str(a.model), option: str(tmp_path / "typo")}
        result = runner.invoke(app, ["generate", *[x for kv in models.items() for x in kv], "--data",
                                     str(a.sft_data), "--output", str(out)])
        assert result.exit_code == 2, result.output
        assert f"{option} {tmp_path / 'typo'}: no such model folder" in result.output
        assert not out.exists()


def test_a_run_that_stopped_before_its_first_shard_takes_new_settings(tmp_path: Path) -> None:
    """A wrong --reward-model that fails to load must not lock the folder to that path."""
    out = tmp_path / "gen"
    first = GenerateConfig(policy="p", reward_model="wrong", output=str(out), data="d")
    assert run_mod.prepare_output(first, {"sampling": first.sampling_identity()}) == "new"
    fixed = GenerateConfig(policy="p", reward_model="right", output=str(out), data="d")
    assert run_mod.prepare_output(fixed, {"sampling": fixed.sampling_identity()}) == "new"
    assert json.loads((out / run_mod.MANIFEST).read_text())["sampling"]["reward_model"] == "right"
    shard = out / run_mod.SHARDS / "samples-00000.parquet"  # once samples exist, other settings are refused
    shard.parent.mkdir()
    shard.write_bytes(b"")
    with pytest.raises(MixerError, match="sampling.reward_model differ"):
        run_mod.prepare_output(first, {"sampling": first.sampling_identity()})


def test_generate_reports_progress_per_shard_for_the_cli_bar(reward_model: Path, tmp_path: Path) -> None:
    """The hook behind `mixer generate`'s bar (issue 24, point 9): prompts done, tokens and seconds per shard."""
    calls: list[tuple[int, int, int, float]] = []
    run_generate(_cfg(tmp_path / "out", reward_model, max_prompts=6), progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(0, 6), (4, 6), (2, 6)]  # nothing done before; shards of 4 and 2 prompts
    assert all(tokens > 0 and seconds > 0 for _, _, tokens, seconds in calls[1:])
