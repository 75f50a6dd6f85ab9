"""Property-based tests for the parsers that meet untrusted input: every adapter's record parser and
the recipe loader. Arbitrary JSON values in every field (wrong types, nulls, huge strings, deep
nesting, lone surrogates, NUL bytes) give a canonical record, a counted drop with a reason, or the
one clear user error; never any other exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer.core.errors import Location, MixerError, RecordError
from mixer.core.records import Dropped
from mixer.recipe.load import load_recipe, parse_recipe
from mixer.sources import adapters
from mixer.sources.base import MAX_RECORD_CHARS, SourceContext

#: every field name an adapter reads, so generated objects reach past the first type check
FIELDS = ["inputs", "targets", "instruction", "input", "output", "conversations", "from", "value", "messages",
          "role", "content", "prompt", "replies", "text", "id", "idx", "system_prompt", "question", "response",
          "dataset", "Prompt", "Output", "chosen", "rejected", "score_chosen", "score_rejected", "prompt_id",
          "message_id", "message_tree_id", "rank", "lang", "deleted", "labels", "source", "review_result",
          "synthetic", "parent_id", "quality", "value", "completions", "name"]
ROLES = ["user", "assistant", "system", "human", "gpt", "prompter", "bing", "chatgpt", "bard"]

texts = st.one_of(
    st.text(),  # any code point, lone surrogates and NUL included
    st.sampled_from(ROLES + ["", " ", "\x00", "\ud800", "a\udfffb", "N/A", "< noinput >",
                             "\n\nHuman: hi\n\nAssistant: hello", "\n\nHuman: a\n\nAssistant: b\n\nHuman: c"]),
    st.sampled_from([1_000, 100_000, 300_000]).map(lambda n: "x" * n),  # long lines
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), inner,
                                            max_size=6)),
    max_leaves=40,
)
turn = st.fixed_dictionaries({}, optional={"from": texts, "value": json_values, "role": texts, "content": json_values,
                                           "text": json_values, "replies": st.lists(json_values, max_size=3)})
records = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), st.one_of(json_values, st.lists(turn, max_size=6)), max_size=10),
)


def _check(outputs: list[Any]) -> None:
    for out in outputs:
        if isinstance(out, Dropped):
            assert out.reason
            continue
        assert isinstance(out["dataset"], str) and isinstance(out["id"], str)
        for m in out["messages"]:
            assert m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str)


@pytest.mark.parametrize("name", sorted(adapters()))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(raw=records)
def test_every_adapter_gives_a_record_a_drop_or_a_record_error_for_any_json(name: str, raw: Any) -> None:
    cls = adapters()[name]
    adapter = cls(cls.Options(), SourceContext(name, 7))
    try:
        outputs = list(adapter.convert(raw, Location("raw.jsonl", line=3, record=2)))
    except RecordError as e:
        assert str(e)  # becomes `error: raw.jsonl, line 3, record 2 (0-based): ...` or a counted invalid_record
        return
    _check(outputs)


@pytest.mark.parametrize("name", ["flan_v2", "alpaca", "sharegpt", "messages"])
def test_a_record_above_the_size_bound_is_a_counted_drop(name: str) -> None:
    huge = "x" * (MAX_RECORD_CHARS + 1)
    raw = {"flan_v2": {"inputs": huge, "targets": "y"},
           "alpaca": {"instruction": huge, "input": "", "output": "y"},
           "sharegpt": {"id": "a", "conversations": [{"from": "human", "value": huge}, {"from": "gpt", "value": "y"}]},
           "messages": {"id": "a", "messages": [{"role": "user", "content": huge},
                                                {"role": "assistant", "content": "y"}]}}[name]
    cls = adapters()[name]
    (out,) = list(cls(cls.Options(), SourceContext(name, 7)).convert(raw, Location("raw.jsonl", line=1)))
    assert isinstance(out, Dropped) and out.reason == "record_too_large"
    assert len(out.raw or "") < 10_000 and "characters" in out.detail


recipe_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
              st.sampled_from(["flan_v2", "all", "raise", "skip", "sft", "f.jsonl", "-1", "0.5"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["name", "adapter", "files", "take", "repeat", "path",
                                                             "url", "sha256", "options", "on_error", "seed",
                                                             "normalise", "filters", "dedup", "near", "exact"]),
                                            inner, max_size=5)),
    max_leaves=25,
)
recipe_docs = st.one_of(
    recipe_values,
    st.fixed_dictionaries({"sources": st.lists(st.one_of(
        recipe_values, st.fixed_dictionaries({"name": st.just("flan_v2"), "files": recipe_values},
                                             optional={"take": recipe_values, "repeat": recipe_values,
                                                       "options": recipe_values, "on_error": recipe_values})),
        max_size=3)},
        optional={"seed": recipe_values, "max_tokens": recipe_values, "filters": recipe_values,
                  "dedup": recipe_values, "normalise": recipe_values, "decontaminate": recipe_values,
                  "order": recipe_values, "output": recipe_values, "kind": recipe_values}),
)


@settings(max_examples=150, deadline=None)
@given(data=recipe_docs)
def test_the_recipe_parser_gives_a_recipe_or_a_recipe_error_for_any_document(data: Any) -> None:
    try:
        parse_recipe(data, path="r.yaml")
    except MixerError as e:
        assert str(e)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300).map(lambda t: t.encode("utf-8")), st.binary(max_size=300),
                     st.text(st.characters(codec=None), max_size=50).map(
                         lambda t: t.encode("utf-8", "surrogatepass"))))
def test_the_recipe_loader_gives_a_recipe_or_a_recipe_error_for_any_bytes(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(text)
    try:
        load_recipe(path)
    except MixerError as e:
        assert str(e)


def test_a_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nsources:\n  - name: flan_v2\n    files: [a.jsonl\n    take: all\n", encoding="utf-8")
    with pytest.raises(MixerError) as e:
        load_recipe(path)
    assert "line" in str(e.value) and "column" in str(e.value) and "r.yaml" in str(e.value)



def test_a_recipe_that_is_not_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: x\n\xff\xfe: 1\n")
    with pytest.raises(MixerError, match="line 2: not UTF-8"):
        load_recipe(path)
