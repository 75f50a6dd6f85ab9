"""Science adapter: subset-qualified dataset names, outputs kept as text, the bundled file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import read_all

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "science"
SUBSETS = ("evidence_inference", "qasper_truncated_4000", "scifact_json", "scitldr_aic", "scierc_ner",
           "scierc_relation")


def make_adapter() -> Adapter:
    cls = get_adapter("science")
    return cls(cls.Options(), SourceContext("science", 42))


def convert_one(raw: object, record: int = 0) -> Record:
    location = Location("science_train.jsonl", line=record + 1, record=record)
    (out,) = list(make_adapter().convert(raw, location))
    return out


def read_records(path: Path) -> list[Record]:
    return read_all(make_adapter(), path)


def test_science_dataset_is_the_subset_name_under_science() -> None:
    record = convert_one({"dataset": "scierc_ner", "input": "Extract entities.", "output": "{}"}, record=7)
    assert record["dataset"] == "science.scierc_ner"
    assert record["id"] == "science_7"
    assert record["messages"] == [
        {"role": "user", "content": "Extract entities."},
        {"role": "assistant", "content": "{}"},
    ]


def test_science_output_stays_a_string() -> None:
    output = '{"verdict": "SUPPORT", "evidence": ["A sentence."]}'
    record = convert_one({"dataset": "scifact_json", "input": "Claim: ...", "output": output})
    assert record["messages"][1]["content"] == output


def test_science_already_parsed_output_is_rejected_not_reserialised() -> None:
    with pytest.raises(RecordError, match="'output' must be a string, found dict"):
        convert_one({"dataset": "scifact_json", "input": "Claim: ...", "output": {"verdict": "NEI"}})


def test_science_missing_dataset_raises_record_error_naming_the_field() -> None:
    with pytest.raises(RecordError, match="missing required field 'dataset'"):
        convert_one({"input": "x", "output": "y"})


def test_science_empty_subset_name_raises_record_error() -> None:
    with pytest.raises(RecordError, match="'dataset'"):
        convert_one({"dataset": "", "input": "x", "output": "y"})


def test_science_bundled_file_has_every_subset_and_sequential_ids() -> None:
    records = read_records(RAW / "science_train.jsonl")
    assert len(records) == 24
    assert Counter(r["dataset"] for r in records) == {f"science.{s}": 4 for s in SUBSETS}
    assert [r["id"] for r in records] == [f"science_{i}" for i in range(24)]


def test_science_bundled_outputs_include_json_documents_kept_verbatim() -> None:
    records = read_records(RAW / "science_train.jsonl")
    outputs = [r["messages"][1]["content"] for r in records]
    assert all(isinstance(o, str) for o in outputs)
    json_like = [o for o in outputs if o.startswith(("[", "{"))]
    assert len(json_like) >= 12
    for text in json_like:
        json.loads(text)  # valid JSON, yet still carried as text
    assert "[]" in outputs  # an empty relation list stays the two-character string
    assert max(len(r["messages"][0]["content"]) for r in records) > 4000  # the long paper excerpt
