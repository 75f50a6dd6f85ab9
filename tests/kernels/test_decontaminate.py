"""Decontamination: embedded benchmark questions are removed, shared common phrases are not."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.errors import InputError, RecipeError
from mixer.kernels.decont_index import load_benchmark
from mixer.kernels.decontaminate import Decontaminator, summarise_contamination
from mixer.recipe.settings import BenchmarkSpec, DecontaminationSettings

GSM = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
    "Tell me a joke.",
]
MMLU = [
    "Which of the following is the body cavity that contains the pituitary gland? "
    "A. Abdominal B. Cranial C. Pleural D. Spinal",
]


@pytest.fixture()
def deco() -> Decontaminator:
    return Decontaminator(DecontaminationSettings(), {"gsm8k": GSM, "mmlu": MMLU})


def test_embedded_benchmark_question_is_removed(deco: Decontaminator) -> None:
    text = ("hey, can you help me with my homework? my teacher gave us this one: natalia sold clips to 48 "
            "of her friends in april, and then she sold half as many clips in may. how many clips did "
            "natalia sell altogether in april and may? please explain every step in detail, I want to "
            "understand how to do these problems on my own next time, thanks a lot for the help!")
    c = deco.check(text)
    assert c is not None and c.contaminated
    assert c.benchmark == "gsm8k" and c.item_index == 0 and c.reason == "contaminated:gsm8k"
    assert c.coverage == 1.0 and c.has_13gram and not c.exact_match
    assert c.overlap < 0.5  # the share rule alone would miss it; the coverage rule catches it
    assert c.rule == "coverage" and c.item_text.startswith("Natalia sold clips")


def test_exact_and_reworded_matches(deco: Decontaminator) -> None:
    c = deco.check(GSM[1].upper().replace(".", " !"))
    assert c is not None and c.exact_match and c.rule == "exact" and c.item_index == 1
    short = deco.check("tell me a JOKE!")
    assert short is not None and short.exact_match  # short items match exactly only


def test_common_phrases_are_kept(deco: Decontaminator) -> None:
    for text in (
        "How many clips did you buy? I sold clips to my friends in April.",
        "Tell me a joke about cats, and then tell me a joke about dogs.",
        "Which of the following is the best way to learn French? Explain the options.",
        "Yesterday, she just did her homework and earned a gold star for it.",
    ):
        assert deco.check(text) is None, text
    assert deco.check_many(["Tell me a joke about cats.", "unrelated text entirely here"]) == [None, None]


def test_check_many_equals_check(deco: Decontaminator) -> None:
    texts = [GSM[0].lower(), "nothing to see here at all, just a normal prompt about gardening tools",
             "prefix words " + MMLU[0] + " suffix", "tell me a joke", ""]
    assert deco.check_many(texts) == [deco.check(t) for t in texts]
    assert [c is not None for c in deco.check_many(texts)] == [True, False, True, True, False]


def test_long_ngram_only_reported_when_not_dropping() -> None:
    long_item = " ".join(f"w{i}" for i in range(60))
    cfg = DecontaminationSettings(drop_on_long_ngram=False)
    d = Decontaminator(cfg, {"b": [long_item]})
    text = " ".join(f"w{i}" for i in range(14)) + " " + " ".join(f"x{i}" for i in range(40))
    c = d.check(text)
    assert c is not None and c.has_13gram and not c.contaminated
    strict = Decontaminator(DecontaminationSettings(), {"b": [long_item]}).check(text)
    assert strict is not None and strict.contaminated and strict.rule == "13gram"


def test_load_benchmark_formats_and_errors(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"question": q, "answer": "x"}) for q in GSM))
    pq.write_table(pa.Table.from_pylist([{"q": {"stem": MMLU[0]}}]), tmp_path / "b.parquet")
    with open(tmp_path / "c.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt"])
        w.writeheader()
        w.writerow({"prompt": "a csv prompt"})
    assert load_benchmark(BenchmarkSpec("g", ("a.jsonl",), "question"), tmp_path) == GSM
    assert load_benchmark(BenchmarkSpec("m", ("b.parquet",), "q.stem"), tmp_path) == MMLU
    assert load_benchmark(BenchmarkSpec("c", ("c.csv",), "prompt"), tmp_path) == ["a csv prompt"]
    with pytest.raises(InputError, match=r"a\.jsonl.*field 'prompt' not found.*\['answer', 'question'\]"):
        load_benchmark(BenchmarkSpec("g", ("a.jsonl",), "prompt"), tmp_path)
    with pytest.raises(InputError, match="missing.jsonl.*file not found.*no `url:`"):
        load_benchmark(BenchmarkSpec("g", ("missing.jsonl",), "prompt"), tmp_path)
    with pytest.raises(InputError, match="missing.jsonl.*file not found.*run `mixer fetch`"):
        load_benchmark(BenchmarkSpec("g", ("missing.jsonl",), "prompt", ("https://example.org/g.jsonl",)), tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\n{not json\n')
    with pytest.raises(InputError, match="bad.jsonl, line 2"):
        load_benchmark(BenchmarkSpec("g", ("bad.jsonl",), "question"), tmp_path)
    cfg = DecontaminationSettings.from_options({"benchmarks": [{"name": "g", "files": ["a.jsonl"],
                                                               "field": "question"}]})
    assert Decontaminator.from_config(cfg, tmp_path).check(GSM[0]) is not None
    with pytest.raises(RecipeError):
        DecontaminationSettings(ngram=8, long_ngram=5)


def test_summary_table_counts(deco: Decontaminator) -> None:
    found = []
    texts = {("sharegpt", "s1"): GSM[0], ("sharegpt", "s2"): "tell me a joke", ("flan", "f1"): MMLU[0],
             ("flan", "f2"): "an ordinary prompt with nothing in common"}
    for (source, rid), text in texts.items():
        c = deco.check(text)
        if c is not None:
            found.append((source, rid, c))
    s = summarise_contamination(found, ["gsm8k", "mmlu"])
    json.dumps(s)
    assert s["table"] == {"gsm8k": {"sharegpt": 2}, "mmlu": {"flan": 1}}
    assert s["removed_total"] == 3 == sum(s["removed_by_benchmark"].values())
    assert s["exact_matches"] == {"gsm8k": 2, "mmlu": 1}
    assert s["examples"]["gsm8k"][0]["id"] == "s1"


def test_deterministic(deco: Decontaminator) -> None:
    texts = [GSM[0], MMLU[0] + " and more", "x y z"] * 3
    again = Decontaminator(DecontaminationSettings(), {"gsm8k": GSM, "mmlu": MMLU})
    assert deco.check_many(texts) == again.check_many(texts)


def test_benchmark_boilerplate_is_not_evidence() -> None:
    template = "The following are multiple choice questions with answers about general knowledge and trivia."
    questions = [f"Question number {i}: what is the {w} of the {v} in the story about the {u}?"
                 for i, (w, v, u) in enumerate(zip(["colour", "size", "name", "age", "shape", "weight"],
                                                     ["house", "dog", "king", "tree", "boat", "river"],
                                                     ["farmer", "pilot", "baker", "miner", "judge", "clown"],
                                                     strict=True))]
    items = [f"{template} {q} A. one B. two C. three D. four" for q in questions]
    deco = Decontaminator(DecontaminationSettings(), {"quiz": items})
    # a training prompt with the same template but its own question is kept ...
    own = f"{template} Which planet is closest to the sun and why does it have such a thin atmosphere?"
    assert deco.check(own) is None
    assert deco.check_many([own]) == [None]
    # ... one that embeds a templated item is removed, and an exact copy is too
    c = deco.check("Please answer this: " + items[2] + " Thanks!")
    assert c is not None and c.contaminated and c.item_index == 2
    assert deco.check(items[4]).exact_match  # type: ignore[union-attr]
    # with boilerplate counting as evidence (datatrove-strict), the template alone is a 13-gram hit
    strict = Decontaminator(DecontaminationSettings(boilerplate_items=0), {"quiz": items})
    hit = strict.check(own)
    assert hit is not None and hit.rule == "13gram"


def _chat(*turns: str) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def test_every_user_turn_is_checked_on_its_own_by_default() -> None:
    """open-instruct's decontamination indexes every ``role: user`` message (decontamination/index.py,
    ``--query_filter role:user``): a benchmark question asked in a later turn is contamination too, and a
    short item asked there still matches exactly (joined with the other turns it would not)."""
    assert DecontaminationSettings().key == "user_turns"
    opening = "I am studying for an exam next week and I would like some help with a few practice questions."
    later = _chat(opening, "Sure, send them over.", GSM[0], "Natalia sold 72 clips.")
    short = _chat(opening, "Sure.", "Tell me a joke.", "Why did the chicken cross the road?")
    clean = _chat(opening, "Sure.", "What is the capital of France?", "Paris.")
    deco = Decontaminator(DecontaminationSettings(), {"gsm8k": GSM, "mmlu": MMLU})

    (c_later, turn_later), (c_short, turn_short), (c_clean, _) = deco.check_records([later, short, clean])

    assert c_later is not None and c_later.contaminated and c_later.benchmark == "gsm8k" and c_later.item_index == 0
    assert turn_later == 1 and deco.texts_of(later, lower=False)[turn_later] == GSM[0]
    assert c_short is not None and c_short.rule == "exact" and c_short.item_index == 2 and turn_short == 1
    assert c_clean is None
    first_only = Decontaminator(DecontaminationSettings(key="prompt"), {"gsm8k": GSM, "mmlu": MMLU})
    assert first_only.check_records([later, short]) == [(None, 0), (None, 0)]
