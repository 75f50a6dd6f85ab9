"""CoT adapter: FLAN-style prompt newline rule, per-file ids, the two bundled sample files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import read_all

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter
from mixer.sources.cot import cot_id_prefix

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "cot"


def make_adapter() -> Adapter:
    cls = get_adapter("cot")
    return cls(cls.Options(), SourceContext("cot", 42))


def convert_one(raw: object, path: str = "cot_zsopt.jsonl", record: int = 0) -> Record:
    (out,) = list(make_adapter().convert(raw, Location(path, line=record + 1, record=record)))
    return out


def read_records(path: Path) -> list[Record]:
    return read_all(make_adapter(), path)


@pytest.mark.parametrize(
    ("inputs", "prompt"),
    [
        ("Is the sky blue?", "Is the sky blue?\n"),
        ("Q: Is the sky blue?\nA:", "Q: Is the sky blue?\nA:"),
        ("Options:\n- yes\n- no\n", "Options:\n- yes\n- no\n"),
        ("Answer with one word. ", "Answer with one word. \n"),
    ],
)
def test_cot_appends_newline_unless_prompt_ends_with_newline_or_colon(inputs: str, prompt: str) -> None:
    record = convert_one({"inputs": inputs, "targets": "yes"})
    assert record["messages"] == [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": "yes"},
    ]
    assert record["dataset"] == "cot"


def test_cot_keeps_target_text_exactly() -> None:
    target = "  Leading spaces stay.\n\nSo the answer is 7. "
    assert convert_one({"inputs": "x:", "targets": target})["messages"][1]["content"] == target


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/raw_train/cot/cot_zsopt.jsonl", "cot_zs_5"),
        ("data/raw_train/cot/cot_fsopt.jsonl", "cot_fs_5"),
        ("cot_fsopt.jsonl.gz", "cot_fs_5"),
        ("my_rationales.jsonl", "cot_my_rationales_5"),
    ],
)
def test_cot_ids_name_the_zero_shot_or_few_shot_file(path: str, expected: str) -> None:
    assert convert_one({"inputs": "q", "targets": "a"}, path=path, record=5)["id"] == expected


def test_cot_id_prefix_looks_through_gzip_suffix() -> None:
    assert cot_id_prefix("/x/cot_zsopt.jsonl.gz") == "cot_zs"


def test_cot_ignores_extra_keys_on_the_line() -> None:
    record = convert_one({"inputs": "q:", "targets": "a", "task": "cot_gsm8k", "template_type": "zs_opt"})
    assert [m["content"] for m in record["messages"]] == ["q:", "a"]


def test_cot_missing_targets_raises_record_error_naming_the_field() -> None:
    with pytest.raises(RecordError, match="'targets'"):
        convert_one({"inputs": "q"})


def test_cot_non_string_inputs_raises_record_error_naming_the_type() -> None:
    with pytest.raises(RecordError, match="'inputs' must be a string, found list"):
        convert_one({"inputs": ["q"], "targets": "a"})


def test_cot_line_that_is_not_an_object_raises_record_error() -> None:
    with pytest.raises(RecordError, match="expected a JSON object, found list"):
        convert_one(["q", "a"])


def test_cot_bundled_files_convert_with_ids_unique_across_files() -> None:
    zero_shot = read_records(RAW / "cot_zsopt.jsonl")
    few_shot = read_records(RAW / "cot_fsopt.jsonl")
    assert len(zero_shot) == 22
    assert len(few_shot) == 20
    ids = [r["id"] for r in zero_shot + few_shot]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "cot_zs_0" and ids[-1] == "cot_fs_19"
    for record in zero_shot + few_shot:
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
        assert record["messages"][0]["content"].endswith(("\n", ":"))


def test_cot_bundled_files_show_the_published_quirks() -> None:
    records = read_records(RAW / "cot_zsopt.jsonl") + read_records(RAW / "cot_fsopt.jsonl")
    targets = [r["messages"][1]["content"] for r in records]
    assert any(t in ("yes", "no") for t in targets)  # one-token targets
    assert sum("So the answer is" in t for t in targets) > len(targets) // 2  # rationale + answer
    assert max(len(r["messages"][0]["content"]) for r in records) > 1000  # long few-shot prompts
