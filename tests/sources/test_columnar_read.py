"""Parquet sources converted on Arrow columns (``Adapter.convert_columns``) give exactly what the
per-record path gives: the same candidates (bytes of the Arrow table), the same drops with the same
reasons and details, the same counters, and the same error naming the file and record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mixer.core.errors import InputError
from mixer.readers.base import FilePart
from mixer.recipe.load import load_recipe
from mixer.sources import SourceContext, get_adapter
from mixer.stages import read as read_stage

CLEAN_Q = "What is the capital of France? Answer briefly."
CLEAN_A = "Paris is the capital of France."


def _orca_rows() -> list[dict[str, object]]:
    rows = []
    for i in range(300):
        rows.append({"id": f"flan.{i}", "system_prompt": "You are helpful." if i % 3 else "",
                     "question": f"{CLEAN_Q} ({i})", "response": CLEAN_A})
    quirks = [
        {"system_prompt": None},                                  # no system prompt at all
        {"question": "  leading and trailing spaces  "},          # strip repairs it
        {"response": "ends with a unit separator\x1f"},           # str.strip removes it, Arrow's trim does not
        {"question": "Cafe\u0301 in NFD"},                        # NFC repairs it
        {"question": "日本語の質問"},                                # non-ASCII, already NFC
        {"response": "   "},                                      # empty after strip: no assistant turn
        {"question": ""},                                         # empty user turn removed: bad turn order
        {"system_prompt": "\tsystem with a tab"},                 # strip on the system turn
        {"response": "As an AI language model, I think so."},    # LLM mention
        {"question": "Tell me about napalm."},                    # over-matching mention
        {"id": ""},                                               # invalid: empty id
        {"response": None},                                       # invalid: null response
        {"id": "ünïcödé-id"},                                     # non-ASCII id
    ]
    for k, q in enumerate(quirks):
        rows.insert(7 + 20 * k, {"id": f"quirk.{k}", "system_prompt": "", "question": CLEAN_Q,
                                 "response": CLEAN_A, **q})
    return rows


def _wizard_rows() -> list[dict[str, object]]:
    def conv(*turns: tuple[str, str]) -> list[dict[str, str]]:
        return [{"from": f, "value": v} for f, v in turns]

    rows = [{"idx": f"w{i}", "conversations": conv(("human", f"{CLEAN_Q} {i}"), ("gpt", CLEAN_A),
                                                  ("human", "And Germany?"), ("gpt", "Berlin."))[:2 + 2 * (i % 2)]}
            for i in range(300)]
    quirks = [
        conv(("gpt", CLEAN_A), ("human", CLEAN_Q)),                        # starts with gpt: bad order
        conv(("human", CLEAN_Q)),                                          # odd count: no assistant
        conv(("human", CLEAN_Q), ("gpt", CLEAN_A), ("human", "again?")),   # odd count
        conv(("human", CLEAN_Q), ("bard", CLEAN_A)),                       # unknown role
        conv(("human", " padded "), ("gpt", CLEAN_A)),                     # strip
        conv(("human", CLEAN_Q), ("gpt", "")),                             # empty turn removed
        conv(("human", "Ünïcode"), ("gpt", CLEAN_A)),                      # non-ASCII
        conv(("human", CLEAN_Q), ("gpt", "ChatGPT says hello.")),          # LLM mention
        [],                                                                # empty conversation
    ]
    for k, c in enumerate(quirks):
        rows.insert(5 + 25 * k, {"idx": f"quirk{k}", "conversations": c})
    return rows


def _write(tmp_path: Path, name: str, rows: list[dict[str, object]], schema: pa.Schema | None = None) -> Path:
    path = tmp_path / "raw" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=97)
    return path


def _recipe(tmp_path: Path, adapter: str, file: str, **source: object):
    data = {"name": "t", "seed": 1, "raw_dir": str(tmp_path / "raw"), "output": str(tmp_path / "out"),
            "sources": [{"name": adapter, "adapter": adapter, "files": [file], **source}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_recipe(path)


def _read(monkeypatch, tmp_path: Path, recipe, columnar: bool, part: FilePart | None, tag: str):
    monkeypatch.setattr(read_stage, "COLUMNAR", columnar)
    work = tmp_path / f"work-{tag}-{columnar}"
    work.mkdir()
    only = read_stage.ReadPart(0, part) if part is not None else None
    result = read_stage.read_source(recipe, recipe.sources[0], work, gate=True, count_tokens=False, only=only)
    table = pa.ipc.open_file(str(result.candidates[0])).read_all()
    drops = [row for path in result.drops for row in pa.ipc.open_file(str(path)).read_all().to_pylist()]
    return table, drops, dataclasses.asdict(result.stats)


def _assert_same_read(monkeypatch, tmp_path: Path, recipe) -> None:
    for part in (None, FilePart(1, 3)):
        tag = "whole" if part is None else "part"
        per_record = _read(monkeypatch, tmp_path, recipe, False, part, tag)
        columnar = _read(monkeypatch, tmp_path, recipe, True, part, tag)
        assert columnar[0].equals(per_record[0])
        assert columnar[1] == per_record[1]
        assert columnar[2] == per_record[2]
        assert per_record[0].num_rows > 50 and per_record[1]


def test_open_orca_columnar_read_keeps_and_drops_exactly_what_the_per_record_path_does(monkeypatch,
                                                                                      tmp_path: Path) -> None:
    path = _write(tmp_path, "orca", _orca_rows())
    recipe = _recipe(tmp_path, "open_orca", "orca.parquet", on_error="skip")
    _assert_same_read(monkeypatch, tmp_path, recipe)
    adapter = get_adapter("open_orca")(None, SourceContext("open_orca", 1))
    converted = adapter.convert_columns(pq.read_table(path).to_batches()[0])
    assert 80 < sum(r is not None for r in converted) < 97  # the clean rows, not the quirks


def test_wizardlm_columnar_read_keeps_and_drops_exactly_what_the_per_record_path_does(monkeypatch,
                                                                                    tmp_path: Path) -> None:
    _write(tmp_path, "wizard", _wizard_rows())
    recipe = _recipe(tmp_path, "wizardlm", "wizard.parquet")
    _assert_same_read(monkeypatch, tmp_path, recipe)


def test_columnar_read_of_a_bad_record_stops_with_the_same_error_naming_file_and_record(monkeypatch,
                                                                                        tmp_path: Path) -> None:
    _write(tmp_path, "orca", _orca_rows())
    recipe = _recipe(tmp_path, "open_orca", "orca.parquet")  # on_error: raise
    messages = []
    for columnar in (False, True):
        monkeypatch.setattr(read_stage, "COLUMNAR", columnar)
        work = tmp_path / f"work-{columnar}"
        work.mkdir()
        with pytest.raises(InputError) as err:
            read_stage.read_source(recipe, recipe.sources[0], work, gate=True, count_tokens=False)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "orca.parquet, record 207" in messages[1] and "'id' is empty" in messages[1]


def test_columnar_read_leaves_columns_of_unexpected_types_to_the_per_record_path(monkeypatch,
                                                                                 tmp_path: Path) -> None:
    rows = [{"idx": i, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
            for i in range(10)]
    _write(tmp_path, "wizard", rows)  # idx is an integer column
    recipe = _recipe(tmp_path, "wizardlm", "wizard.parquet")
    for columnar in (False, True):
        monkeypatch.setattr(read_stage, "COLUMNAR", columnar)
        work = tmp_path / f"work-{columnar}"
        work.mkdir()
        with pytest.raises(InputError, match=r"wizard.parquet, record 0 \(0-based\): field 'idx' must be a string"):
            read_stage.read_source(recipe, recipe.sources[0], work, gate=True, count_tokens=False)
