"""Decontamination with numbers normalised (a benchmark's ``normalise_numbers``) and the audit entries
that show a person each flagged record beside the item it matched."""

from __future__ import annotations

import json
import re

from conftest import ROOT

from mixer.kernels.decont_audit import audit_entry, token_spans
from mixer.kernels.decontaminate import Decontaminator, view_text
from mixer.kernels.shingles import tokenize
from mixer.recipe.settings import BenchmarkSpec, DecontaminationSettings

QUESTIONS = [json.loads(line)["question"]
             for line in (ROOT / "tests" / "data" / "gsm8k_style_test.jsonl").read_text().splitlines()]


def changed_numbers(text: str) -> str:
    """The same question with every number changed (n -> 2n + 3), and two words swapped for synonyms, as
    GSM8K train questions that copy a test question do."""
    text = re.sub(r"\d+", lambda m: str(2 * int(m.group()) + 3), text)
    return text.replace("cans", "tins").replace("How many", "How many in total")


def _checker(normalise: bool, items: list[str] = QUESTIONS) -> Decontaminator:
    spec = BenchmarkSpec("gsm8k", ("gsm8k_test.jsonl",), "question", normalise_numbers=normalise)
    return Decontaminator(DecontaminationSettings(benchmarks=(spec,)), {"gsm8k": items})


def test_twenty_changed_number_copies_escape_plain_ngrams_and_are_all_caught_with_normalise_numbers() -> None:
    planted = [changed_numbers(q) for q in QUESTIONS]
    assert len(planted) == 20 and all(p != q for p, q in zip(planted, QUESTIONS, strict=True))
    plain = _checker(False).check_many(planted)
    assert [c for c in plain if c is not None and c.contaminated] == []
    numbers = _checker(True).check_many(planted)
    assert all(c is not None and c.contaminated and c.numbers_normalised for c in numbers)
    assert [c.item_index for c in numbers if c is not None] == list(range(20))  # each its own item


def test_normalise_numbers_leaves_other_math_questions_with_numbers_alone() -> None:
    others = [
        "A baker makes 24 loaves of bread and sells them to 3 different cafes in town every morning.",
        "What is 12 times 8, and how would you explain the answer to a child who is 7 years old?",
        "The recipe needs 2 cups of flour and 3 eggs; can I replace the eggs with something vegan?",
        "Write a 5 line poem about 40 people waiting at a bus stop in the rain.",
    ]
    assert _checker(True).check_many(others) == [None] * len(others)


def test_check_many_equals_check_with_numbers_normalised() -> None:
    checker = _checker(True)
    texts = [changed_numbers(q) for q in QUESTIONS[:5]] + ["nothing to see here at all, really, nothing"]
    assert checker.check_many(texts) == [checker.check(t) for t in texts]


def test_view_text_keeps_token_positions() -> None:
    text = "Tom, aged 12, paid $4.50 for 3x as many (10th) apples."
    assert len(tokenize(view_text(text, True).lower())) == len(tokenize(text.lower()))
    assert [text[a:b].lower() for a, b in token_spans(text)] == tokenize(text.lower())


def test_audit_entry_marks_the_shared_words_in_record_and_item() -> None:
    item = QUESTIONS[6]  # "Each box holds 6 packages of cat food with 9 cans each, ..."
    record = "Please solve this for me: " + changed_numbers(item) + " Thanks a lot!"
    checker = _checker(True)
    found = checker.check(record)
    assert found is not None and found.benchmark == "gsm8k" and found.item_index == 6
    entry = audit_entry(checker, record, found, "flan_v2", "flan_v2_17")
    assert entry["source"] == "flan_v2" and entry["id"] == "flan_v2_17" and entry["numbers_normalised"]
    marked = [entry["record"]["text"][a:b] for a, b in entry["record"]["marks"]]
    assert "Please solve this for me" not in " ".join(marked) and "Thanks" not in " ".join(marked)
    assert any("packages of cat food" in m for m in marked)
    item_marked = " ".join(entry["item"]["text"][a:b] for a, b in entry["item"]["marks"])
    assert "packages of cat food with 9" in item_marked  # the item's own number inside the shared stretch
    assert entry["item"]["text"] == item and not entry["record"]["cut_before"]


def test_audit_entry_cuts_a_long_record_around_the_first_shared_word() -> None:
    checker = _checker(False)
    record = "filler words " * 400 + QUESTIONS[0]
    found = checker.check(record)
    assert found is not None
    entry = audit_entry(checker, record, found, "s", "id")["record"]
    assert entry["cut_before"] and len(entry["text"]) <= 1200
    assert [entry["text"][a:b] for a, b in entry["marks"]][0].startswith("A baker makes 24 muffins")
