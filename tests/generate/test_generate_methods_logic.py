"""The deterministic parts of the data-making methods, pinned exactly: final answers, the self-distillation and
context-distillation choices, pre-prompts, Evol-Instruct's elimination rules, judge rubrics and the min_score
filter of the messages adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.core.errors import Location, MixerError, RecordError
from mixer.generate.answers import extract_final_answer, normalise_answer, same_final_answer
from mixer.generate.config import GenerateConfig
from mixer.generate.distill import (
    build_preprompt,
    context_gate,
    load_preprompts,
    prefix_last_user_turn,
    self_distill_choice,
)
from mixer.generate.judge import Rubric, load_rubric
from mixer.generate.synth import eliminate, evolution_prompt, truncation
from mixer.generate.texts import EVOLUTIONS, RISK_TEMPLATES, SAFETY_ADJECTIVES


@pytest.mark.parametrize(("text", "answer"), [
    ("Janet has 3 + 4 = 7 eggs.\n#### 7", "7"),
    ("so the total is 1,234\n#### 1,234\n", "1,234"),
    ("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{x^{2}+1}", "x^{2}+1"),  # the last box, braces balanced
    ("\\boxed{4} and later #### 5", "4"),  # a box wins over ####
    ("\\boxed{unclosed", None),
    ("#### \n", None),
    ("no final answer here", None),
])
def test_final_answer_is_the_last_box_else_what_follows_the_last_hashes(text: str, answer: str | None) -> None:
    assert extract_final_answer(text) == answer


def test_final_answers_compare_after_normalisation() -> None:
    assert normalise_answer(" $1,234.50$. ") == "1234.5"
    assert normalise_answer("42.0") == "42" and normalise_answer("-0") == "0" and normalise_answer("+7") == "7"
    assert normalise_answer("x + 1") == "x+1"
    assert same_final_answer("1,000", "1000.00") and same_final_answer("\\frac{1}{2}", "\\frac{1}{2} ")
    assert not same_final_answer("12", "13") and not same_final_answer("0.5", "\\frac{1}{2}")


@pytest.mark.parametrize(("gold", "rewrite", "finish", "choice"), [
    ("3 + 4 = 7\n#### 7", "Adding gives 7.\n#### 7.0", "stop", ("rewrite", "final_answer_matches")),
    ("3 + 4 = 7\n#### 7", "Adding gives 8.\n#### 8", "stop", ("gold", "final_answer_differs")),
    ("3 + 4 = 7\n#### 7", "It is seven.", "stop", ("gold", "rewrite_without_final_answer")),
    ("The sky is blue.", "Blue, on a clear day.", "stop", ("rewrite", "unchecked")),
    ("The sky is blue.", "  ", "stop", ("gold", "empty_rewrite")),
    ("#### 7", "#### 7 and then some", "length", ("gold", "rewrite_truncated")),
    ("\\boxed{2}", "so \\boxed{2}", "stop", ("rewrite", "final_answer_matches")),
])
def test_self_distillation_keeps_the_rewrite_only_when_its_final_answer_matches(
        gold: str, rewrite: str, finish: str, choice: tuple[str, str]) -> None:
    assert self_distill_choice(gold, rewrite, finish) == choice


def test_context_distillation_gate_keeps_only_strictly_better_distilled_answers() -> None:
    assert context_gate("safe answer", None, None, targeted=False) == "kept"
    assert context_gate(" ", 1.0, 0.0, targeted=True) == "dropped:empty_answer"
    assert context_gate("a", 0.5, 0.2, targeted=True) == "kept:gate_preferred_distilled"
    assert context_gate("a", 0.2, 0.2, targeted=True) == "dropped:gate_not_better"  # a tie is not better
    assert context_gate("a", 0.1, 0.2, targeted=True) == "dropped:gate_not_better"
    assert context_gate("a", 0.1, None, targeted=True) == "kept:base_answer_empty"


def test_preprompts_use_the_papers_adjectives_and_the_risk_templates() -> None:
    texts = load_preprompts(None)
    assert texts["adjectives"] == ["responsible", "respectful", "wise"] == list(SAFETY_ADJECTIVES)
    assert build_preprompt(texts, 4, None) == "You are a respectful and safe assistant."
    assert build_preprompt(texts, 2, "unqualified_advice") == \
        "You are a wise and safe assistant. " + RISK_TEMPLATES["unqualified_advice"]
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    assert prefix_last_user_turn(conv, "P") == [*conv[:3], {"role": "user", "content": "P\n\nq2"}]
    assert conv[3]["content"] == "q2"  # the original is not touched


def test_a_preprompt_file_replaces_the_texts_and_a_bad_one_is_named(tmp_path: Path) -> None:
    good = tmp_path / "pre.yaml"
    good.write_text("adjectives: [careful]\ntemplate: 'Be {adjective}.'\n")
    texts = load_preprompts(str(good))
    assert build_preprompt(texts, 9, None) == "Be careful." and texts["risk_templates"] == RISK_TEMPLATES
    for body, message in (("template: 'no slot'\n", "containing {adjective}"), ("adjectives: []\n", "non-empty list"),
                          ("adjective: [x]\n", "unknown key"), ("- a\n", "expected a mapping"),
                          ("template: [unclosed\n", "not a readable YAML")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(MixerError, match=message) as e:
            load_preprompts(str(bad))
        assert str(bad) in str(e.value)


@pytest.mark.parametrize("template", ['Be {adjective}. Answer as JSON like {"a": 1}.', "Be {adjective} {0}.",
                                      "Be {adjective}, {tone}.", "Be {adjective} }"])
def test_a_preprompt_template_with_another_field_or_a_lone_brace_is_refused_when_read(tmp_path: Path,
                                                                                    template: str) -> None:
    # before, the file was accepted and str.format raised KeyError/ValueError per prompt, mid-run (a traceback)
    bad = tmp_path / "pre.yaml"
    bad.write_text(f"template: '{template}'\n")
    with pytest.raises(MixerError, match="may name no field but {adjective}") as e:
        load_preprompts(str(bad))
    assert str(bad) in str(e.value)
    ok = tmp_path / "ok.yaml"
    ok.write_text("template: 'Be {adjective}; answer as JSON like {{\"a\": 1}}.'\n")
    assert build_preprompt(load_preprompts(str(ok)), 0, None) == 'Be responsible; answer as JSON like {"a": 1}.'


@pytest.mark.parametrize(("seed", "evolved", "answer", "reason"), [
    ("Name a colour.", "", None, "empty_evolution"),
    ("Name a colour.", "  name a COLOUR ", "Blue.", "no_information_gain"),
    ("Name a colour.", "Rewritten prompt: name a colour you like", "Blue.", "copies_template_words"),
    ("Name a colour.", "Name a colour from the #Given Prompt#.", "Blue.", "copies_template_words"),
    ("Name a colour.", "Name a warm colour.", "Sorry, I cannot do that.", "answer_sorry_and_short"),
    ("Name a colour.", "Name a warm colour.", "It is what it is.", "answer_only_stop_words"),
    ("Name a colour.", "Name a warm colour.", "...", "answer_only_stop_words"),
    ("Name a colour.", "Name a warm colour.", "Red.", None),
    ("Name a colour.", "Name a warm colour.", "Sorry to disappoint: " + "red " * 80, None),  # long: not rule 2
])
def test_evol_instruct_elimination_rules(seed: str, evolved: str, answer: str | None, reason: str | None) -> None:
    assert eliminate(seed, evolved, answer) == reason


def test_evolution_prompts_name_their_operation_and_carry_the_seed() -> None:
    assert EVOLUTIONS == ("add_constraints", "deepen", "concretise", "increase_reasoning", "in_breadth")
    assert "Add one more constraint" in evolution_prompt("add_constraints", "SEED") and "SEED" in \
        evolution_prompt("add_constraints", "SEED")
    assert "brand new prompt" in evolution_prompt("in_breadth", "SEED")
    with pytest.raises(MixerError, match="--evolution widen: unknown"):
        from mixer.generate.synth import EvolInstruct

        EvolInstruct(GenerateConfig(policy="p", output="o", data="d", method="evol-instruct", evolutions=["widen"]))


def test_rubric_scores_the_last_match_on_its_scale() -> None:
    rubric = load_rubric(None)
    assert rubric.score("Good. Rating: [[8]]") == (8.0, "scored")
    assert rubric.score("[[3]] at first, then Rating: [[6.5]]") == (6.5, "scored")
    assert rubric.score("Rating: 8") == (None, "unparsed")
    assert rubric.score("Rating: [[11]]") == (None, "out_of_scale")
    assert "{instruction}" not in rubric.prompt("Q?", "A.") and "Q?" in rubric.prompt("Q?", "A.")
    assert Rubric("{instruction}{response}", r"(\d+)/5", 1, 5).score("4/5 then 9/5") == (None, "out_of_scale")


def test_rubric_fills_its_slots_once_so_a_slot_name_inside_the_texts_stays_as_written() -> None:
    # before, the response went into a "{response}" written inside the instruction too
    rubric = Rubric("Q: {instruction} | A: {response}", r"(\d+)", 1, 10)
    assert rubric.prompt('Fill in "Answer: {response}".', "use {instruction}") == \
        'Q: Fill in "Answer: {response}". | A: use {instruction}'


@pytest.mark.parametrize(("body", "message"), [
    ("template: 'x {instruction} {response}'\npattern: '(\\d+)'\n", "missing scale"),
    ("template: 'x'\npattern: '(\\d+)'\nscale: [1, 10]\n", "with {instruction} and {response}"),
    ("template: '{instruction} {response}'\npattern: '(\\d+'\nscale: [1, 10]\n", "not a regular expression"),
    ("template: '{instruction} {response}'\npattern: '\\d+'\nscale: [1, 10]\n", "needs a group"),
    ("template: '{instruction} {response}'\npattern: '(\\d+)'\nscale: [10, 1]\n", "low < high"),
    ("template: '{instruction} {response}'\npattern: '(\\d+)'\nscale: [1, 10]\nscore: 3\n", "unknown key"),
    ("template: [unclosed\n", "not a readable YAML"),
    ("- just a list\n", "expected a mapping"),
])
def test_a_rubric_that_does_not_parse_is_an_error_naming_the_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text(body)
    with pytest.raises(MixerError, match=message) as e:
        load_rubric(str(path))
    assert str(path) in str(e.value)


def test_messages_adapter_min_score_keeps_records_at_or_above_and_counts_the_rest() -> None:
    from mixer.sources.base import SourceContext
    from mixer.sources.messages import Messages, MessagesOptions

    adapter = Messages(MessagesOptions(min_score=7.0), SourceContext("judged", 0))
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    loc = Location("judged.parquet", record=0)
    (kept,) = adapter.convert({"id": "a", "messages": conv, "judge_score": 7.0}, loc)
    assert kept["id"] == "a"
    (low,) = adapter.convert({"id": "b", "messages": conv, "judge_score": 6.5}, loc)
    (none,) = adapter.convert({"id": "c", "messages": conv, "judge_score": None}, loc)
    assert (low.reason, none.reason) == ("below_min_score", "unscored")
    with pytest.raises(RecordError, match="'judge_score' must be a number"):
        list(adapter.convert({"id": "d", "messages": conv, "judge_score": "high"}, loc))
    plain = Messages(MessagesOptions(), SourceContext("judged", 0))
    assert len(list(plain.convert({"id": "e", "messages": conv}, loc))) == 1  # no min_score: scores ignored


def test_method_options_belong_to_their_method() -> None:
    with pytest.raises(MixerError, match="--rubric is an option of --method judge, not orca"):
        GenerateConfig(policy="p", output="o", data="d", method="orca", rubric="r.yaml").validate()
    with pytest.raises(MixerError, match="needs --reward-model"):
        GenerateConfig(policy="p", output="o", data="d", method="context-distill", targeted=True).validate()
    with pytest.raises(MixerError, match="method must be one of"):
        GenerateConfig(policy="p", output="o", data="d", method="spin").validate()
    GenerateConfig(policy="p", output="o", data="d", method="judge", rubric="r.yaml").validate()


@pytest.mark.parametrize(("evolved", "evolved_finish", "answer_finish", "reason"), [
    ("Cut evolved prompt that", "length", "stop", "evolution_truncated"),  # a cut instruction is not data
    ("A whole evolved prompt.", "stop", "length", "answer_truncated"),
    ("A whole evolved prompt.", "stop", "stop", None),
    ("  ", "length", None, None),  # an empty evolution is eliminate()'s empty_evolution
])
def test_an_evolution_cut_at_max_new_tokens_names_the_part_that_was_cut(
        evolved: str, evolved_finish: str, answer_finish: str | None, reason: str | None) -> None:
    assert truncation({"evolved": evolved, "evolved_finish": evolved_finish, "answer_finish": answer_finish}) == reason
