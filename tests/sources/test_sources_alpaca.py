"""Alpaca-format sources (gpt4_alpaca, code_alpaca, generic alpaca): templates, seeding, samples."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mixer.core.errors import Location, RecordError
from mixer.sources import SourceContext, get_adapter
from mixer.sources._alpaca_templates import (
    TEMPLATES_WITH_INPUT,
    TEMPLATES_WITHOUT_INPUT,
    render_tulu,
)

ROOT = Path(__file__).parents[2] / "samples" / "raw_train"
GPT4 = ROOT / "gpt4_alpaca" / "alpaca_gpt4_data.json"
CODE = ROOT / "code_alpaca" / "code_alpaca_20k.json"
ALPACA_WITH_INPUT = TEMPLATES_WITH_INPUT[-1][0]
ALPACA_WITHOUT_INPUT = TEMPLATES_WITHOUT_INPUT[-1][0]


def adapter(name: str = "alpaca", seed: int = 42, **options: Any) -> Any:
    cls = get_adapter(name)
    return cls(cls.Options(**options), SourceContext(name, seed))


def convert(raw: Any, name: str = "alpaca", record: int = 0, seed: int = 42, **options: Any) -> Any:
    [out] = adapter(name, seed, **options).convert(raw, Location("a.json", record=record))
    return out


def read(path: Path, name: str, **options: Any) -> list[Any]:
    a = adapter(name, **options)
    return [out for item in a.read_file(path) for out in a.convert(item.value, item.location)]


def rec(instruction: str = "Do it.", input_text: str = "", output: str = "Done.") -> dict[str, str]:
    return {"instruction": instruction, "input": input_text, "output": output}


def possible_prompts(templates: tuple[tuple[str, str, float], ...], **fields: str) -> set[str]:
    return {p.format(**fields) for p, _, _ in templates}


@pytest.mark.parametrize("name, licence, dataset", [
    ("gpt4_alpaca", "CC-BY-NC-4.0", "gpt4_alpaca"),
    ("code_alpaca", "CC-BY-NC-4.0", "code_alpaca"),
    ("alpaca", None, "alpaca"),
])
def test_alpaca_adapters_are_registered_with_licence_and_label(name: str, licence: str | None,
                                                               dataset: str) -> None:
    cls = get_adapter(name)
    assert cls.name == name and cls.license == licence and cls.description
    assert cls.Options().templates == "tulu"
    out = convert(rec(), name)
    assert out["dataset"] == dataset and out["id"] == f"{dataset}_0"


def test_alpaca_template_lists_match_open_instruct_weights() -> None:
    assert len(TEMPLATES_WITH_INPUT) == 14 and len(TEMPLATES_WITHOUT_INPUT) == 14
    for templates in (TEMPLATES_WITH_INPUT, TEMPLATES_WITHOUT_INPUT):
        assert sum(w for _, _, w in templates) == pytest.approx(1.0)
    assert ALPACA_WITH_INPUT.startswith("Below is an instruction that describes a task, paired with an input")
    assert ALPACA_WITHOUT_INPUT.startswith("Write a response that appropriately completes the request.")


def test_alpaca_template_choice_is_seeded_and_order_independent() -> None:
    records = [rec(f"Task number {i}.", "some input" if i % 2 else "") for i in range(40)]
    forward = [convert(r, record=i) for i, r in enumerate(records)]
    backward = {i: convert(records[i], record=i) for i in reversed(range(40))}
    assert forward == [backward[i] for i in range(40)]
    # the same seed and ordinal give the same prompt; another seed gives some other templates
    assert forward == [convert(r, record=i) for i, r in enumerate(records)]
    other = [convert(r, record=i, seed=7) for i, r in enumerate(records)]
    assert other != forward


def test_alpaca_templates_are_drawn_with_their_weights() -> None:
    rng = random.Random(0)
    draws = Counter(render_tulu("I", "", "O", rng)[0] for _ in range(20000))
    share_alpaca = draws[ALPACA_WITHOUT_INPUT.format(instruction="I")] / 20000
    share_first = draws["I\n\n"] / 20000
    assert share_alpaca == pytest.approx(0.1, abs=0.015)
    assert share_first == pytest.approx(0.2, abs=0.015)


def test_alpaca_uses_input_templates_only_when_input_is_not_blank() -> None:
    for i in range(30):
        with_input = convert(rec("Translate.", "Bonjour"), record=i)["messages"][0]["content"]
        assert with_input in possible_prompts(TEMPLATES_WITH_INPUT, instruction="Translate.", input="Bonjour")
        blank = convert(rec("Translate.", "  \n"), record=i)["messages"][0]["content"]
        assert blank in possible_prompts(TEMPLATES_WITHOUT_INPUT, instruction="Translate.")


def test_code_alpaca_noinput_placeholder_goes_into_prompt() -> None:
    for i in range(20):
        out = convert(rec("Write a SQL query.", "< noinput >", "SELECT 1;"), "code_alpaca", record=i)
        assert "< noinput >" in out["messages"][0]["content"]
    plain = convert(rec("Write a SQL query.", "< noinput >", "SELECT 1;"), "code_alpaca", templates="plain")
    assert plain["messages"][0]["content"] == "Write a SQL query.\n\n< noinput >"


def test_alpaca_tulu_rendering_strips_fields_like_open_instruct() -> None:
    out = convert(rec("  Say hi.\n", "", "\n hi \n"), record=0)
    prompt, completion = out["messages"][0]["content"], out["messages"][1]["content"]
    assert prompt in possible_prompts(TEMPLATES_WITHOUT_INPUT, instruction="Say hi.")
    assert completion in ("hi", "\nhi")  # one template puts a newline before the output


def test_alpaca_plain_templates_keep_text_and_join_input_after_a_blank_line() -> None:
    out = convert(rec("Sum these.", "1, 2", "3"), templates="plain")
    assert [m["content"] for m in out["messages"]] == ["Sum these.\n\n1, 2", "3"]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"]
    out = convert(rec("Say hi.", ""), templates="plain")
    assert out["messages"][0]["content"] == "Say hi."


def test_alpaca_dataset_option_sets_label_and_ids() -> None:
    out = convert(rec(), "alpaca", record=5, dataset="my_alpaca")
    assert out["dataset"] == "my_alpaca" and out["id"] == "my_alpaca_5"


def test_alpaca_missing_or_null_input_counts_as_empty() -> None:
    no_input = convert({"instruction": "Do it.", "output": "ok"}, templates="plain")
    null_input = convert({"instruction": "Do it.", "input": None, "output": "ok"}, templates="plain")
    assert no_input["messages"] == null_input["messages"]


@pytest.mark.parametrize("raw, needle", [
    (["instruction"], "JSON object"),
    ({"input": "", "output": "x"}, "'instruction'"),
    ({"instruction": "x", "input": ""}, "'output'"),
    ({"instruction": "x", "input": 3, "output": "y"}, "'input'"),
    ({"instruction": None, "input": "", "output": "y"}, "'instruction'"),
])
def test_alpaca_malformed_records_raise_record_error_naming_the_field(raw: Any, needle: str) -> None:
    with pytest.raises(RecordError, match=needle):
        convert(raw)


def test_alpaca_sample_files_read_end_to_end() -> None:
    for path, name in ((GPT4, "gpt4_alpaca"), (CODE, "code_alpaca")):
        out = read(path, name)
        assert 20 <= len(out) <= 40
        assert [r["id"] for r in out] == [f"{name}_{i}" for i in range(len(out))]
        assert all(r["messages"][0]["content"] and r["messages"][1]["content"] for r in out)
    code = read(CODE, "code_alpaca")
    assert any("\t" in r["messages"][1]["content"] for r in code)
    assert sum("< noinput >" in r["messages"][0]["content"] for r in code) >= 2


def test_code_alpaca_sample_is_written_like_the_published_file() -> None:
    text = CODE.read_text(encoding="utf-8")
    assert text.startswith("[\n      {\n            \"instruction\"")
    assert text.isascii()


def test_gpt4_and_code_alpaca_shared_record_renders_identically_with_plain_templates() -> None:
    gpt4 = read(GPT4, "gpt4_alpaca", templates="plain")
    code = read(CODE, "code_alpaca", templates="plain")
    shared = {json.dumps(r["messages"]) for r in gpt4} & {json.dumps(r["messages"]) for r in code}
    assert len(shared) == 1


def test_code_alpaca_reads_a_jsonl_reupload_with_other_key_order(tmp_path: Path) -> None:
    path = tmp_path / "code_alpaca_20k.json"
    lines = [{"output": "x = 1", "instruction": "Assign 1 to x.", "input": ""},
             {"output": "print(a \\/ b)", "instruction": "Divide.", "input": "a = 4\nb = 2"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    out = read(path, "code_alpaca", templates="plain")
    assert [r["messages"][0]["content"] for r in out] == ["Assign 1 to x.", "Divide.\n\na = 4\nb = 2"]
    assert [r["id"] for r in out] == ["code_alpaca_0", "code_alpaca_1"]
