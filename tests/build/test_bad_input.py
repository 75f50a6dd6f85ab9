"""Bad raw input: a clear error naming file and line/record, or (on_error: skip) a counted drop."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import flan_rows, write_jsonl

from mixer.build import build
from mixer.core.errors import InputError, MixerError, RecipeError
from mixer.recipe.load import load_recipe

GOOD = '{"inputs": "fine question", "targets": "fine answer"}\n'


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _fails(recipe: Path) -> str:
    with pytest.raises(MixerError) as e:
        build(load_recipe(recipe))
    return str(e.value)


def _skips(recipe: Path) -> dict:
    return build(load_recipe(recipe)).card["sources"][0]


@pytest.mark.parametrize(
    ("content", "where", "problem"),
    [
        (GOOD + '{"inputs": "x", "targets": \n' + GOOD, "line 2", "malformed JSON"),
        (GOOD + '{"inputs": "caf\xe9", "targets": "x"}\n', "line 2", "not valid UTF-8 (byte 0xe9"),
        (GOOD + GOOD + '{"inputs": "no targets here"}\n', "line 3", "missing required field 'targets'"),
        (GOOD + '{"inputs": 5, "targets": "x"}\n', "line 2", "field 'inputs' must be a string, found int"),
        (GOOD + '["not", "an", "object"]\n', "line 2", "expected a JSON object, found list"),
    ],
    ids=["malformed-json-line", "non-utf8-byte", "missing-field", "wrong-type", "not-an-object"],
)
def test_bad_jsonl_record_stops_build_naming_file_and_line(tmp_path: Path, make_recipe, content: str,
                                                           where: str, problem: str) -> None:
    raw = content.encode("latin-1") if "\xe9" in content else content.encode()
    _write(tmp_path / "raw" / "flan.jsonl", raw)
    message = _fails(make_recipe([{"name": "flan_v2", "files": "flan.jsonl"}]))
    assert "flan.jsonl" in message and where in message and problem in message
    assert "on_error: skip" in message


@pytest.mark.parametrize(
    "bad_line",
    ['{"inputs": "x", "targets": \n', b'{"inputs": "caf\xe9", "targets": "x"}\n',
     '{"inputs": "no targets"}\n', '{"inputs": 5, "targets": "x"}\n'],
    ids=["malformed-json-line", "non-utf8-byte", "missing-field", "wrong-type"],
)
def test_on_error_skip_drops_and_counts_bad_records(tmp_path: Path, make_recipe, bad_line: str | bytes) -> None:
    bad = bad_line if isinstance(bad_line, bytes) else bad_line.encode()
    _write(tmp_path / "raw" / "flan.jsonl", GOOD.encode() + bad + b'{"inputs": "q2", "targets": "a2"}\n')
    recipe = make_recipe([{"name": "flan_v2", "files": "flan.jsonl", "on_error": "skip"}])
    s = _skips(recipe)
    assert s["dropped"] == {"invalid_record": 1} and s["selected"] == 2 and s["records_in"] == 3
    dropped = pq.read_table(tmp_path / "out" / "dropped" / "flan_v2.parquet").to_pylist()
    assert dropped[0]["reason"] == "invalid_record" and "line 2" in dropped[0]["detail"]
    assert dropped[0]["raw"]


def test_truncated_json_array_names_file_and_record(tmp_path: Path, make_recipe) -> None:
    _write(tmp_path / "raw" / "alpaca.json",
           '[\n  {"inputs": "a", "targets": "b"},\n  {"inputs": "c", "targets": "d"},\n  {"inputs": "e", "tar')
    message = _fails(make_recipe([{"name": "flan_v2", "files": "alpaca.json"}]))
    assert "alpaca.json" in message and "line 4, record 2 (0-based)" in message
    assert "truncated JSON array" in message


def test_json_array_with_broken_record_names_record_index(tmp_path: Path, make_recipe) -> None:
    _write(tmp_path / "raw" / "a.json", '[\n {"inputs": "a", "targets": "b"},\n {"inputs": "c" "targets": "d"}\n]')
    message = _fails(make_recipe([{"name": "flan_v2", "files": "a.json"}]))
    assert "a.json" in message and "record 1" in message and "malformed JSON" in message


def test_json_file_that_is_not_an_array_is_an_error(tmp_path: Path, make_recipe) -> None:
    _write(tmp_path / "raw" / "a.json", '{"inputs": "a", "targets": "b"')
    message = _fails(make_recipe([{"name": "flan_v2", "files": "a.json"}]))
    assert "a.json" in message


def test_empty_file_is_an_error_naming_it(tmp_path: Path, make_recipe) -> None:
    _write(tmp_path / "raw" / "flan.jsonl", "")
    message = _fails(make_recipe([{"name": "flan_v2", "files": "flan.jsonl"}]))
    assert "flan.jsonl" in message and "empty" in message


@pytest.mark.parametrize(("name", "adapter", "data"), [
    ("flan.jsonl", "flan_v2", GOOD * 3),
    ("alpaca.json", "gpt4_alpaca", '[{"instruction": "i", "input": "", "output": "o"}]'),
    ("examples.csv", "hard_coded", "Prompt,Output\nWho are you?,Tulu\n"),
    ("orca.parquet", "open_orca", None),
])
def test_gzip_file_without_gz_suffix_is_named_as_compressed(tmp_path: Path, make_recipe, name: str, adapter: str,
                                                            data: str) -> None:
    """A download saved under its decompressed name: said as such, not "not valid UTF-8 (byte 0x8b)"."""
    import gzip

    if data is None:  # Parquet: read through the columnar path, and never as .gz
        table = pa.Table.from_pylist([{"id": "niv.1", "system_prompt": "", "question": "q", "response": "r"}])
        pq.write_table(table, tmp_path / "orca.parquet")
        _write(tmp_path / "raw" / name, gzip.compress((tmp_path / "orca.parquet").read_bytes()))
    else:
        _write(tmp_path / "raw" / name, gzip.compress(data.encode()))
    message = _fails(make_recipe([{"name": adapter, "files": name}]))
    path = tmp_path / "raw" / name
    assert message.startswith(f"{path}: the file is gzip-compressed but its name does not end in .gz")
    if data is None:
        assert "decompress it (parquet files are read uncompressed)" in message
        return
    assert f"rename it to {name}.gz" in message
    (tmp_path / "raw" / name).rename(tmp_path / "raw" / f"{name}.gz")
    assert _skips(make_recipe([{"name": adapter, "files": f"{name}.gz"}]))["selected"] >= 1


def test_missing_file_is_a_recipe_error_naming_path(tmp_path: Path, make_recipe) -> None:
    with pytest.raises(RecipeError) as e:
        build(load_recipe(make_recipe([{"name": "flan_v2", "files": "nowhere/flan.jsonl"}])))
    assert "nowhere/flan.jsonl" in str(e.value) and "not found" in str(e.value)


def test_unknown_role_in_messages_source_is_a_counted_drop(tmp_path: Path, make_recipe) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}]
    write_jsonl(tmp_path / "raw" / "m.jsonl", rows)
    s = _skips(make_recipe([{"name": "messages", "files": "m.jsonl"}]))
    assert s["dropped"] == {"unknown_role": 1} and s["selected"] == 1


def test_unreadable_parquet_is_an_input_error(tmp_path: Path, make_recipe) -> None:
    _write(tmp_path / "raw" / "x.parquet", b"PAR1 this is not parquet")
    message = _fails(make_recipe([{"name": "messages", "files": "x.parquet"}]))
    assert "x.parquet" in message and "Parquet" in message


def test_errors_are_mixer_errors_not_library_tracebacks(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(2) + [{"inputs": None, "targets": "x"}])
    with pytest.raises(InputError) as e:
        build(load_recipe(make_recipe([{"name": "flan_v2", "files": "flan.jsonl"}])))
    assert "line 3" in str(e.value)


def test_large_json_arrays_are_walked_record_by_record_with_the_same_result(tmp_path: Path, monkeypatch) -> None:
    import mixer.readers.json_array
    import mixer.readers.raw
    from mixer.readers.json_array import read_json_array

    path = _write(tmp_path / "a.json", "[\n" + ",\n".join(
        f'  {{"inputs": "q{i}\\u00e9", "targets": "a{i}"}}' for i in range(50)) + "\n]")
    whole = [(r.value, r.location.record) for r in read_json_array(path)]
    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)
    walked = list(read_json_array(path))
    assert [(r.value, r.location.record) for r in walked] == whole
    assert [r.location.line for r in walked[:3]] == [2, 3, 4]


# --- hostile text: lone surrogates (issue 15) ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json-array", "jsonl"])
def test_lone_surrogate_in_any_source_is_a_counted_invalid_text_drop(tmp_path: Path, make_recipe, fmt: str) -> None:
    """``"\\ud800 lone"`` is valid JSON but not valid Unicode: Arrow cannot store it. The record is
    dropped with reason invalid_text naming the field (it stopped the build with a pyarrow traceback)."""
    rows = ['{"instruction": "Say hi.", "input": "", "output": "Hi!"}',
            '{"instruction": "Say hi again.", "input": "", "output": "\\ud800 lone"}',
            '{"instruction": "Bye.", "input": "", "output": "Bye!"}']
    name = "alpaca_gpt4_data.json" if fmt == "json-array" else "alpaca_gpt4_data.jsonl"
    _write(tmp_path / "raw" / name, "[\n" + ",\n".join(rows) + "\n]\n" if fmt == "json-array" else "\n".join(rows))
    s = _skips(make_recipe([{"name": "gpt4_alpaca", "files": name}]))
    assert s["dropped"] == {"invalid_text": 1} and s["selected"] == 2 and s["records_in"] == 3
    (drop,) = pq.read_table(tmp_path / "out" / "dropped" / "gpt4_alpaca.parquet").to_pylist()
    assert drop["reason"] == "invalid_text" and "lone surrogate U+D800" in drop["detail"]
    assert "messages[1].content" in drop["detail"] and "\\ud800" in drop["raw"]


def test_lone_surrogate_in_an_id_is_dropped_too(tmp_path: Path, make_recipe) -> None:
    rows = [{"id": "ok", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            {"id": "bad\ud83d", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}]
    import json

    _write(tmp_path / "raw" / "m.jsonl", "\n".join(json.dumps(r) for r in rows))  # ensure_ascii escapes it
    s = _skips(make_recipe([{"name": "messages", "files": "m.jsonl"}]))
    assert s["dropped"] == {"invalid_text": 1} and s["selected"] == 1
    (drop,) = pq.read_table(tmp_path / "out" / "dropped" / "messages.parquet").to_pylist()
    assert drop["id"] == "bad\\ud83d" and "id holds a lone surrogate U+D83D" in drop["detail"]


def test_a_mistyped_tiktoken_encoding_is_named_as_unknown(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(3))
    recipe = make_recipe([{"name": "flan_v2", "files": "flan.jsonl"}], tokenizer="tiktoken:cl100k", max_tokens=100)
    with pytest.raises(RecipeError) as e:
        build(load_recipe(recipe))
    assert "'tiktoken:cl100k': unknown encoding" in str(e.value) and "cl100k_base" in str(e.value)
    assert "offline" not in str(e.value)


@pytest.mark.parametrize(("name", "adapter"), [("a.json", "gpt4_alpaca"), ("w.parquet", "wizardlm"),
                                               ("h.xlsx", "hard_coded"), ("h.csv", "hard_coded")])
def test_a_file_without_records_is_an_error_like_an_empty_jsonl_file(tmp_path: Path, make_recipe, name: str,
                                                                      adapter: str) -> None:
    """``[]``, a Parquet file of no rows, a sheet or CSV with a header alone: an export that failed, not a
    source of no records (an empty JSONL file was already an error; these built a source of 0 records)."""
    path = tmp_path / "raw" / name
    path.parent.mkdir(parents=True)
    if name.endswith(".json"):
        path.write_text("[\n]\n", encoding="utf-8")
    elif name.endswith(".parquet"):
        schema = pa.schema([("idx", pa.string()),
                            ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())])))])
        pq.write_table(schema.empty_table(), path)
    elif name.endswith(".xlsx"):
        import openpyxl

        wb = openpyxl.Workbook()
        wb.active.append(["Prompt", "Output"])
        wb.save(path)
    else:
        path.write_text("Prompt,Output\r\n\r\n", encoding="utf-8")
    message = _fails(make_recipe([{"name": adapter, "files": name}]))
    assert message.startswith(f"{path}: ") and "records" in message, message
