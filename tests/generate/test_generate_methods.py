"""The data-making methods end to end on CPU: the tiny random Llama generates, the tiny reward model gates,
every prompt is accounted for, reruns and resumes give the same bytes, recipes build over the outputs, and bad
input is refused (exit 2) before any output folder exists."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from train_fixtures import SFT_RECORDS, copy_without_chat_template, tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.generate import backends as backends_mod
from mixer.generate import run_generate
from mixer.generate.backends import Completion
from mixer.generate.config import GenerateConfig

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_process")
OUTPUT = {"context-distill": "context_distill", "self-distill": "self_distill", "evol-instruct": "evol_instruct",
          "orca": "orca", "judge": "judged"}


def _cfg(out: Path, method: str, **kw: object) -> GenerateConfig:
    base: dict = {"policy": str(tiny_assets().model), "output": str(out), "data": str(tiny_assets().sft_data),
                  "method": method, "max_new_tokens": 8, "seed": 5, "batch_size": 4, "shard_prompts": 5, "name": "gen",
                  # the random tiny model nearly always runs to the limit: keep those replies to have rows
                  "keep_truncated": True}
    return GenerateConfig(**{**base, **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


def _rows(out: Path, method: str) -> list[dict]:
    return pq.read_table(out / OUTPUT[method] / "data").to_pylist()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every method once over the tiny SFT build (the judge over the evol-instruct output), in one folder laid
    out as recipes/generated-distill.yaml and generated-synthetic.yaml expect (context/, self/, ...)."""
    root = tmp_path_factory.mktemp("methods")
    run_generate(_cfg(root / "context", "context-distill", risk_category="unqualified_advice"))
    run_generate(_cfg(root / "self", "self-distill"))
    run_generate(_cfg(root / "evol", "evol-instruct"))
    run_generate(_cfg(root / "orca", "orca"))
    run_generate(_cfg(root / "evol-judged", "judge", data=str(root / "evol" / "evol_instruct")))
    run_generate(_cfg(root / "orca-judged", "judge", data=str(root / "orca" / "orca")))
    return root


@pytest.mark.parametrize("method", list(OUTPUT))
def test_every_method_accounts_for_every_prompt_in_its_card(outputs: Path, method: str) -> None:
    folder = {"context-distill": "context", "self-distill": "self", "evol-instruct": "evol", "orca": "orca",
              "judge": "evol-judged"}[method]
    card = json.loads((outputs / folder / "card.json").read_text())
    assert card["method"] == method and card["paper"]
    p = card["prompts"]
    assert p["records_read"] == p["generated"] + sum(p["skipped"].values())
    assert sum(card["outcome"].values()) == p["generated"]
    kept = sum(v for k, v in card["outcome"].items() if k.startswith("kept"))
    rows = _rows(outputs / folder, method)
    assert len(rows) == kept == card["rows"] == card["outputs"][OUTPUT[method]]["rows"]
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-2]["role"] == "user" for r in rows)
    assert "Every generated prompt" in (outputs / folder / "README.md").read_text()
    assert "n" not in card["settings"]["sampling"] and card["settings"]["sampling"]["batching"] == "continuous"


def test_context_distillation_records_keep_the_prompt_without_the_preprompt(outputs: Path) -> None:
    rows = _rows(outputs / "context", "context-distill")
    shards = pq.read_table(outputs / "context" / "shards").to_pylist()
    originals = {r["id"]: r["messages"] for r in SFT_RECORDS}
    assert len(rows) == len(SFT_RECORDS)  # untargeted: every non-empty distilled answer is kept
    for row, shard in zip(rows, shards, strict=True):
        first_user = next(m for m in originals[row["prompt_id"]] if m["role"] == "user")
        assert row["messages"][-2]["content"] == first_user["content"]  # the user turn as it was
        assert row["preprompt"] == shard["preprompt"] and "safe assistant" in row["preprompt"]
        assert row["preprompt"].endswith("recommend consulting a qualified professional.")
        assert row["preprompt"] not in row["messages"][-2]["content"]
    adjectives = {s["preprompt"].split()[3] for s in shards}
    assert adjectives <= {"responsible", "respectful", "wise"} and len(adjectives) > 1


def test_targeted_context_distillation_keeps_only_what_the_reward_model_prefers(reward_model: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "targeted"
    card = run_generate(_cfg(out, "context-distill", targeted=True, reward_model=str(reward_model)))
    gate = card["context_distill"]["gate"]
    empty = card["outcome"].get("dropped:empty_answer", 0)
    assert gate["kept"] + gate["rejected"] + empty == card["prompts"]["generated"] == len(SFT_RECORDS)
    assert gate["rejected"] == card["outcome"].get("dropped:gate_not_better", 0)
    rows = _rows(out, "context-distill")
    assert len(rows) == gate["kept"]
    assert all(r["reward_base"] is None or r["reward_distilled"] > r["reward_base"] for r in rows)
    shards = pq.read_table(out / "shards").to_pylist()
    assert all(s["base"] is not None for s in shards)  # the answer without pre-prompt was generated for each
    assert card["models"]["reward_model"] == str(reward_model)


def test_self_distillation_keeps_gold_or_rewrite_for_every_item(outputs: Path) -> None:
    rows = _rows(outputs / "self", "self-distill")
    card = json.loads((outputs / "self" / "card.json").read_text())
    assert len(rows) == len(SFT_RECORDS)
    section = card["self_distill"]
    assert section["rewrite"] + section["gold"] == len(rows)
    gold = {r["id"]: next(m["content"] for m in r["messages"] if m["role"] == "assistant") for r in SFT_RECORDS}
    for r in rows:
        if r["answer_source"] == "gold":
            assert r["messages"][-1]["content"] == gold[r["prompt_id"]]


def test_evol_instruct_rows_are_evolved_prompts_with_answers(outputs: Path) -> None:
    card = json.loads((outputs / "evol" / "card.json").read_text())
    shards = pq.read_table(outputs / "evol" / "shards").to_pylist()
    assert {s["evolution"] for s in shards} <= set(card["settings"]["sampling"]["evolutions"])
    counted = sum(sum(c.values()) for c in card["evol_instruct"]["evolutions"].values())
    assert counted == len(shards) == len(SFT_RECORDS)
    for r in _rows(outputs / "evol", "evol-instruct"):
        assert r["messages"][0]["content"] == next(s["evolved"].strip() for s in shards if s["prompt_key"] ==
                                                   r["prompt_id"])


def test_orca_rows_carry_their_system_message(outputs: Path) -> None:
    card = json.loads((outputs / "orca" / "card.json").read_text())
    systems = card["orca"]["system_messages"]
    for r in _rows(outputs / "orca", "orca"):
        assert r["messages"][0] == {"role": "system", "content": systems[r["system_message"]]}
    assert "You are a terse assistant." not in json.dumps(_rows(outputs / "orca", "orca"))  # replaced, not stacked


def test_a_rerun_writes_identical_files_and_a_resume_the_same_bytes(outputs: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    again = tmp_path / "orca"
    run_generate(_cfg(again, "orca"))
    assert _files(again) == _files(outputs / "orca")
    real = backends_mod.TransformersBackend.generate
    calls = {"n": 0}

    def flaky(self, prompts, seeds):  # noqa: ANN001, ANN202 - the backend's own signature
        calls["n"] += 1
        if calls["n"] == 3:  # shard 0 takes calls 1-2 (4 + 1 prompts): stop inside shard 1
            raise KeyboardInterrupt
        return real(self, prompts, seeds)

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", flaky)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_generate(_cfg(resumed, "orca"))
    assert [p.name for p in (resumed / "shards").glob("*.parquet")] == ["samples-00000.parquet"]
    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", real)
    run_generate(_cfg(resumed, "orca"))
    assert _files(resumed) == _files(outputs / "orca")
    card = run_generate(_cfg(resumed, "orca"))  # finished: nothing to do, same card
    assert card == json.loads((outputs / "orca" / "card.json").read_text())


def test_another_method_or_a_foreign_folder_is_refused(outputs: Path, tmp_path: Path) -> None:
    from mixer.core.errors import MixerError

    with pytest.raises(MixerError, match=r"sampling\.method[ ,]"):
        run_generate(_cfg(outputs / "orca", "evol-instruct"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MixerError, match="not a mixer generate output"):
        run_generate(_cfg(foreign, "orca"))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_judge_scores_every_pair_and_a_recipe_filters_on_min_score(tmp_path: Path, outputs: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A random model never writes a rating, so the judge's replies are stood in for: score = seed % 10 + 1,
    and no rating at all for a seed divisible by 7."""
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    def judge_replies(self, prompts, seeds):  # noqa: ANN001, ANN202
        return [[Completion("fine" if s % 7 == 0 else f"Clear. Rating: [[{s % 10 + 1}]]", 5, "stop")] for s in seeds]

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", judge_replies)
    root = tmp_path / "gen"
    for name in ("evol", "orca"):
        card = run_generate(_cfg(root / f"{name}-judged", "judge",
                                 data=str(outputs / name / OUTPUT["evol-instruct" if name == "evol" else "orca"])))
    rows = _rows(root / "orca-judged", "judge")
    shards = pq.read_table(root / "orca-judged" / "shards").to_pylist()
    originals = {r["id"]: r for r in _rows(outputs / "orca", "orca")}
    assert len(rows) == len(originals) == card["prompts"]["generated"]
    for r, s in zip(rows, shards, strict=True):
        assert r["messages"] == originals[r["id"]]["messages"] and r["dataset"] == "gen"  # the record unchanged
        assert r["judge_score"] == s["judge_score"]
    scores = sorted(r["judge_score"] for r in rows if r["judge_score"] is not None)
    q = card["judged"]["scores"]
    assert (q["count"], q["min"], q["max"]) == (len(scores), scores[0], scores[-1])
    assert card["judged"]["unscored"] == len(rows) - len(scores) == card["outcome"].get("kept:unparsed", 0)
    assert "| p25 |" in (root / "orca-judged" / "README.md").read_text()
    built = build(load_recipe(REPO / "recipes" / "generated-synthetic.yaml", raw_dir=str(root),
                              output=str(tmp_path / "built")))
    by_name = {s["name"]: s for s in built.card["sources"]}
    orca = by_name["orca"]
    want_kept = sum(1 for r in rows if r["judge_score"] is not None and r["judge_score"] >= 7)
    assert orca["records_in"] == len(rows) and orca["selected"] == want_kept
    assert orca["dropped"].get("below_min_score", 0) == sum(1 for s in scores if s < 7)
    assert orca["dropped"].get("unscored", 0) == len(rows) - len(scores)


def _qa_build(root: Path, answers: dict[str, tuple[str, str]]) -> Path:
    from train_fixtures import write_sft_build

    return write_sft_build(root, [{"dataset": "qa", "id": rid, "messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]} for rid, (q, a) in answers.items()])


def _stand_in_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    def judge_replies(self, prompts, seeds):  # noqa: ANN001, ANN202
        return [[Completion(f"Rating: [[{len(p[-1]['content']) % 10 + 1}]]", 5, "stop")] for p in prompts]

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", judge_replies)


def test_judge_scores_every_reply_to_one_prompt_and_skips_only_exact_repeats(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # two answers to one question are two records to judge (before, the second was skipped as a repeated prompt)
    _stand_in_judge(monkeypatch)
    data = _qa_build(tmp_path / "qa", {"q1": ("Capital of France?", "Paris."), "q2": ("Capital of France?", "Lyon?"),
                                       "q3": ("Capital of France?", "Paris."), "q4": ("A colour?", "Blue.")})
    card = run_generate(_cfg(tmp_path / "judged", "judge", data=str(data)))
    assert [r["id"] for r in _rows(tmp_path / "judged", "judge")] == ["q1", "q2", "q4"]
    assert card["prompts"]["skipped"] == {"duplicate_record": 1}  # the judge writes records back whole
    rows = run_generate(_cfg(tmp_path / "self", "self-distill", data=str(data)))["prompts"]
    assert (rows["generated"], rows["skipped"]) == (3, {"duplicate_prompt_and_reply": 1})


def test_a_rerun_over_changed_replies_is_refused_not_reported_complete(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # before, the manifest covered the prompts only: judging a regenerated source into the same folder said
    # "complete" and returned the old answers with their old scores
    from mixer.core.errors import MixerError

    _stand_in_judge(monkeypatch)
    qa = {"q1": ("Capital of France?", "Paris."), "q2": ("A colour?", "Blue.")}
    run_generate(_cfg(tmp_path / "judged", "judge", data=str(_qa_build(tmp_path / "v1", qa))))
    again = run_generate(_cfg(tmp_path / "judged", "judge", data=str(_qa_build(tmp_path / "v1", qa))))
    assert [r["messages"][-1]["content"] for r in _rows(tmp_path / "judged", "judge")] == ["Paris.", "Blue."]
    changed = _qa_build(tmp_path / "v1", {**qa, "q1": ("Capital of France?", "Lyon, I think.")})  # same path
    with pytest.raises(MixerError, match="references_digest"):
        run_generate(_cfg(tmp_path / "judged", "judge", data=str(changed)))
    assert json.loads((tmp_path / "judged" / "card.json").read_text()) == again  # the finished run left as it was


def test_distilled_outputs_build_through_a_recipe(outputs: Path, tmp_path: Path) -> None:
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    built = build(load_recipe(REPO / "recipes" / "generated-distill.yaml", raw_dir=str(outputs),
                              output=str(tmp_path / "built")))
    by_name = {s["name"]: s for s in built.card["sources"]}
    assert by_name["context_distill"]["records_in"] == len(_rows(outputs / "context", "context-distill"))
    assert by_name["self_distill"]["records_in"] == len(SFT_RECORDS)
    out = pq.read_table(built.out / "data").to_pylist()
    assert out and {r["dataset"] for r in out} == {"gen"}


def test_bad_input_exits_2_and_leaves_no_output_folder(tmp_path: Path) -> None:
    a = tiny_assets()
    base = ["generate", "--policy", str(a.model), "--max-new-tokens", "4"]
    empty_model = tmp_path / "not-a-model"
    empty_model.mkdir()
    no_template = copy_without_chat_template(a.model, tmp_path / "no-template")
    bad_rubric = tmp_path / "rubric.yaml"
    bad_rubric.write_text("template: 'rate {instruction}'\npattern: '(\\d+'\nscale: [1, 10]\n")
    cases = [
        (["--method", "self-distill", "--data", str(a.pref_data)], "no record has an assistant reply"),
        (["--method", "judge", "--data", str(a.pref_data)], "no record has an assistant reply"),
        (["--method", "orca", "--data", str(a.sft_data), "--policy", str(empty_model)], "not a model folder"),
        (["--method", "judge", "--data", str(a.sft_data), "--rubric", str(bad_rubric)], "with {instruction} and"),
        (["--method", "orca", "--data", str(a.sft_data), "--policy", str(no_template)], "no chat template"),
        (["--method", "context-distill", "--data", str(a.sft_data), "--targeted"], "needs --reward-model"),
        (["--method", "context-distill", "--data", str(a.sft_data), "--targeted", "--reward-model", str(a.model)],
         "is not a reward model"),
        (["--method", "context-distill", "--data", str(a.sft_data), "--risk-category", "x"], "no answer template"),
        (["--method", "orca", "--data", str(a.sft_data), "--rubric", str(bad_rubric)], "option of --method judge"),
        (["--method", "evol-instruct", "--data", str(tmp_path / "missing")], "missing"),
        (["--data", str(a.sft_data)], "needs --reward-model"),
    ]
    for k, (args, message) in enumerate(cases):
        out = tmp_path / f"out{k}"
        result = runner.invoke(app, [*base, *args, "--output", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
        assert not out.exists(), args


def test_cli_runs_a_method_and_prints_where_every_prompt_went(tmp_path: Path) -> None:
    a = tiny_assets()
    out = tmp_path / "orca"
    result = runner.invoke(app, ["generate", "--method", "orca", "--policy", str(a.model), "--data", str(a.sft_data),
                                 "--max-new-tokens", "4", "--max-prompts", "3", "--keep-truncated", "--output",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert "3 prompt(s): 3 row(s)" in result.output and (out / "orca" / "data").is_dir()


def test_judge_writes_a_multi_turn_record_whole_and_says_which_exchange_it_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before, the default first_user mode wrote back only the first exchange under the record's own id
    from train_fixtures import write_sft_build

    judged: list[list[dict]] = []

    def judge_replies(self, prompts, seeds):  # noqa: ANN001, ANN202
        judged.extend(prompts)
        return [[Completion("Rating: [[8]]", 5, "stop")] for _ in prompts]

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", judge_replies)
    talk = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Write a poem"}, {"role": "assistant", "content": "Roses are red."}]
    same_start = [*talk[:2], {"role": "user", "content": "Count to 3"}, {"role": "assistant", "content": "1 2 3"}]
    data = write_sft_build(tmp_path / "chat", [{"dataset": "chat", "id": "c1", "messages": talk},
                                               {"dataset": "chat", "id": "c2", "messages": same_start}])
    card = run_generate(_cfg(tmp_path / "judged", "judge", data=str(data)))
    rows = _rows(tmp_path / "judged", "judge")
    assert [(r["id"], r["messages"], r["judge_score"]) for r in rows] == [("c1", talk, 8.0), ("c2", same_start, 8.0)]
    first = [p[0]["content"] for p in judged[:2]]
    assert all("Hi" in t and "Hello!" in t and "Write a poem" not in t for t in first)  # the first exchange judged
    assert card["judged"]["records_with_unjudged_turns"] == 2 and "first user turn" in card["judged"]["judged_exchange"]
    assert "2 record(s) have turns the judge did not see" in (tmp_path / "judged" / "README.md").read_text()
    last = run_generate(_cfg(tmp_path / "judged-last", "judge", data=str(data), prompt_mode="conversation"))
    assert [r["messages"] for r in _rows(tmp_path / "judged-last", "judge")] == [talk, same_start]
    assert any("Roses are red." in p[0]["content"] for p in judged[2:])
    assert "last user turn" in last["judged"]["judged_exchange"]


@pytest.mark.parametrize(("method", "reason"), [("orca", "truncated"), ("context-distill", "truncated"),
                                                ("evol-instruct", "evolution_truncated")])
def test_replies_cut_at_max_new_tokens_are_dropped_and_counted_unless_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, reason: str) -> None:
    # before, these methods kept a reply that stopped at --max-new-tokens (a cut evolved prompt became data)
    def cut_replies(self, prompts, seeds):  # noqa: ANN001, ANN202
        return [[Completion("Explain how the tides follow the moon, step by", 8, "length")] for _ in prompts]

    monkeypatch.setattr(backends_mod.TransformersBackend, "generate", cut_replies)
    card = run_generate(_cfg(tmp_path / "drop", method, max_prompts=3, keep_truncated=None))
    assert card["outcome"] == {f"dropped:{reason}": 3} and card["rows"] == 0 == len(_rows(tmp_path / "drop", method))
    assert card["settings"]["assembly"]["keep_truncated"] is False
    assert "Replies cut at max_new_tokens: dropped" in (tmp_path / "drop" / "README.md").read_text()
    kept = run_generate(_cfg(tmp_path / "drop", method, max_prompts=3, keep_truncated=True))  # re-picks, same shards
    assert sum(v for k, v in kept["outcome"].items() if k.startswith("kept")) == 3 == kept["rows"]


def test_max_prompts_counts_only_records_with_a_reply_for_judge_and_self_distill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before, the limit took the first N prompts and only then dropped those without a reply: 2 asked, 0 run
    from train_fixtures import write_sft_build

    _stand_in_judge(monkeypatch)
    bare = [{"dataset": "qa", "id": f"bare{i}", "messages": [{"role": "user", "content": f"Question {i}?"}]}
            for i in range(2)]
    answered = [{"dataset": "qa", "id": f"qa{i}", "messages": [{"role": "user", "content": f"Sum {i} + {i}?"},
                                                               {"role": "assistant", "content": f"{2 * i}."}]}
                for i in range(3)]
    data = write_sft_build(tmp_path / "mixed", [*bare, *answered])
    for method in ("judge", "self-distill"):
        card = run_generate(_cfg(tmp_path / method, method, data=str(data), max_prompts=2))
        assert card["prompts"] == {"records_read": 5, "generated": 2,
                                   "skipped": {"beyond_max_prompts": 1, "no_reference_reply": 2}}, method
        assert [r["id"].rsplit("_", 1)[-1] for r in _rows(tmp_path / method, method)] == ["qa0", "qa1"]


@pytest.mark.parametrize("command", [["generate", "--method", "orca", "-o"], ["spin", "--output"]])
def test_a_missing_data_path_is_named_with_the_data_option_and_what_it_expects(tmp_path: Path,
                                                                              command: list[str]) -> None:
    # before: "training data nodata does not exist", the trainer's wording, from its resolver
    model = ["--policy" if command[0] == "generate" else "--model", str(tiny_assets().model)]
    out = tmp_path / "out"
    result = runner.invoke(app, [*command, str(out), *model, "--data", str(tmp_path / "nodata")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"--data {tmp_path / 'nodata'}: no such file or folder; expected a mixer build" in text
    assert "training data" not in text and not out.exists()
