"""Ghost Attention's instructions (Llama 2 §3.3): constraints of different kinds combined at random, the short
form ("Always act as Napoleon from now" -> "Figure: Napoleon.") in the training record half of the time, the
full form on every user turn while the policy generates, every draw from the dialogue's own seed, and the
card accounting for the draws. A scripted backend stands in for the policy, so every string is exact."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.generate.backends import Completion
from mixer.generate.gatt import GattConfig, run_gatt
from mixer.generate.gatt_draw import DEFAULT_CONSTRAINTS, PLAIN_KIND, Constraint, draw_instruction, read_instructions

DIALOGUES = [
    {"id": "a", "messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hi."},
                             {"role": "user", "content": "Now say goodbye."}]},
    {"id": "b", "messages": [{"role": "user", "content": "Name a colour."}]},
    {"id": "d", "messages": [{"role": "user", "content": "Count to two."}]},
]


A_SAMPLED = "You enjoy painting. Always act as Albert Einstein from now on. Always speak in German."
A_TRAINING = "Hobby: painting. Figure: Albert Einstein. Language: German."


class ScriptedBackend:
    """Answers every prompt with ``reply-<turn>`` and keeps every conversation it was asked to continue."""

    def __init__(self) -> None:
        self.prompts: list[list[dict[str, str]]] = []

    def generate(self, prompts: list[list[dict[str, str]]], seeds: list[int]) -> list[list[Completion]]:
        self.prompts.extend(prompts)
        return [[Completion(f"reply-{sum(m['role'] == 'user' for m in p)}", 1, "stop")] for p in prompts]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(tmp_path: Path, **settings: object) -> tuple[dict, list[dict], ScriptedBackend]:
    backend = ScriptedBackend()
    out = tmp_path / "gatt"
    cfg = GattConfig(policy="unused", dialogues=str(_write_jsonl(tmp_path / "d.jsonl", DIALOGUES)), output=str(out),
                     name="g", **settings)  # type: ignore[arg-type]
    card = run_gatt(cfg, backend=backend)
    return card, pq.read_table(out / "data").to_pylist(), backend


def test_seed_42_draws_these_exact_instructions() -> None:
    """Pins the per-dialogue seed scheme: same seed, same id, same list -> the same instruction, byte for byte."""
    drawn = {key: draw_instruction(list(DEFAULT_CONSTRAINTS), 42, key) for key in ("a", "b", "d")}
    assert (drawn["a"].sampled, drawn["a"].training) == (A_SAMPLED, A_TRAINING)
    assert drawn["b"].sampled == drawn["b"].training == "Always act as Albert Einstein from now on."
    assert drawn["d"].sampled == "Always act as Napoleon from now on. Always speak in Spanish."
    assert drawn["d"].training == "Figure: Napoleon. Language: Spanish."
    assert [drawn[k].shortened for k in ("a", "b", "d")] == [True, False, True]
    assert draw_instruction(list(DEFAULT_CONSTRAINTS), 43, "a") != drawn["a"]


def test_the_short_form_is_the_papers_less_verbose_wording() -> None:
    napoleon = [c for c in DEFAULT_CONSTRAINTS if c.full == "Always act as Napoleon from now on."]
    french = [c for c in DEFAULT_CONSTRAINTS if c.full == "Always speak in French."]
    tennis = [c for c in DEFAULT_CONSTRAINTS if c.full == "You enjoy tennis."]
    assert [c.short for c in napoleon + french + tennis] == ["Figure: Napoleon.", "Language: French.", "Hobby: tennis."]
    always = draw_instruction(napoleon, 1, "x", shorten_prob=1.0)
    never = draw_instruction(napoleon, 1, "x", shorten_prob=0.0)
    assert (always.sampled, always.training, always.shortened) == (napoleon[0].full, "Figure: Napoleon.", True)
    assert (never.sampled, never.training, never.shortened) == (napoleon[0].full, napoleon[0].full, False)


def test_combined_constraints_never_share_a_kind_and_span_the_bounds() -> None:
    draws = [draw_instruction(list(DEFAULT_CONSTRAINTS), 7, f"dialogue_{i}") for i in range(600)]
    for d in draws:
        kinds = [c.kind for c in d.constraints]
        assert len(kinds) == len(set(kinds))
    assert set(Counter(len(d.constraints) for d in draws)) == {1, 2, 3}
    assert 0.4 < sum(d.shortened for d in draws) / len(draws) < 0.6  # "half of the time"
    assert {len(draw_instruction(list(DEFAULT_CONSTRAINTS), 7, f"k{i}", 3, 3).constraints) for i in range(20)} == {3}
    assert {len(draw_instruction(list(DEFAULT_CONSTRAINTS), 7, f"k{i}", 1, 1).constraints) for i in range(20)} == {1}


def test_generation_sees_the_full_instruction_on_every_turn_and_the_record_keeps_it_once(tmp_path: Path) -> None:
    card, rows, backend = _run(tmp_path)
    a = next(r for r in rows if r["id"] == "g_a")
    assert (a["sampled_instruction"], a["instruction"], a["shortened"]) == (A_SAMPLED, A_TRAINING, True)
    assert a["constraint_kinds"] == ["hobby", "figure", "language"]
    asked = [p for p in backend.prompts if p[0]["content"].endswith("Say hello.")]
    assert [m["content"] for m in asked[-1] if m["role"] == "user"] == [
        f"{a['sampled_instruction']}\n\nSay hello.", f"{a['sampled_instruction']}\n\nNow say goodbye."]
    assert a["messages"] == [
        {"role": "user", "content": f"{a['instruction']}\n\nSay hello.", "train": None},
        {"role": "assistant", "content": "reply-1", "train": False},
        {"role": "user", "content": "Now say goodbye.", "train": None},
        {"role": "assistant", "content": "reply-2", "train": None}]
    b = next(r for r in rows if r["id"] == "g_b")
    assert b["instruction"] == b["sampled_instruction"] and b["shortened"] is False
    ins = card["instructions"]
    assert ins["combined"] == {"1": 1, "2": 1, "3": 1}
    assert (ins["shortened"], ins["full"], ins["no_short_form"]) == (2, 1, 0)
    assert ins["kinds"] == {"figure": 3, "hobby": 1, "language": 2}
    assert sum(ins["used"].values()) == 6 and ins["available"] == {"figure": 5, "hobby": 8, "language": 5}
    assert card["settings"]["shorten_prob"] == 0.5 and card["settings"]["max_constraints"] == 3


def test_an_instruction_file_of_plain_lines_gives_one_whole_instruction_per_dialogue(tmp_path: Path) -> None:
    lines = tmp_path / "mine.txt"
    lines.write_text("# my list\nAnswer in haiku.\n\nAlways answer in one sentence.\n", encoding="utf-8")
    assert read_instructions(str(lines)) == [Constraint(PLAIN_KIND, "Answer in haiku."),
                                             Constraint(PLAIN_KIND, "Always answer in one sentence.")]
    card, rows, _ = _run(tmp_path, instructions=str(lines))
    assert all(r["instruction"] == r["sampled_instruction"] for r in rows)
    assert {r["instruction"] for r in rows} <= {"Answer in haiku.", "Always answer in one sentence."}
    assert card["instructions"]["combined"] == {"1": 3} and card["instructions"]["shortened"] == 0
    assert card["instructions"]["no_short_form"] == sum(
        draw_instruction(read_instructions(str(lines)), 42, d["id"]).shorten_drawn for d in DIALOGUES)


def test_an_instruction_file_with_kinds_combines_them_and_uses_their_short_forms(tmp_path: Path) -> None:
    lines = tmp_path / "kinds.tsv"
    lines.write_text("tone\tAlways answer cheerfully.\tTone: cheerful.\nlength\tAnswer in at most ten words.\n"
                     "Answer in haiku.\n", encoding="utf-8")
    constraints = read_instructions(str(lines))
    assert constraints == [Constraint("tone", "Always answer cheerfully.", "Tone: cheerful."),
                           Constraint("length", "Answer in at most ten words."),
                           Constraint(PLAIN_KIND, "Answer in haiku.")]
    d = draw_instruction(constraints, 3, "x", 3, 3, shorten_prob=1.0)
    assert sorted(c.kind for c in d.constraints) == ["instruction", "length", "tone"]
    assert "Tone: cheerful." in d.training and "Answer in at most ten words." in d.training
    assert "Always answer cheerfully." in d.sampled and "Tone: cheerful." not in d.sampled


@pytest.mark.parametrize(("text", "message"), [("tone\t\tshort\n", "kinds.tsv:1: expected KIND<TAB>FULL"),
                                               ("a\tb\tc\td\n", "found 4 field(s)"),
                                               ("# only a comment\n", "no instruction in the file")])
def test_a_malformed_instruction_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    lines = tmp_path / "kinds.tsv"
    lines.write_text(text, encoding="utf-8")
    with pytest.raises(MixerError, match=re.escape(message)):
        read_instructions(str(lines))


@pytest.mark.parametrize(("args", "message"), [
    (["--min-constraints", "0"], "--min-constraints must be at least 1"),
    (["--min-constraints", "3", "--max-constraints", "2"], "is below --min-constraints"),
    (["--shorten-prob", "1.5"], "--shorten-prob must be between 0 and 1"),
    (["--min-constraints", "2", "--instructions", "PLAIN"], "1 kind(s) of constraint (instruction)"),
])
def test_settings_no_draw_can_meet_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("Answer in haiku.\n", encoding="utf-8")
    dialogues = _write_jsonl(tmp_path / "d.jsonl", DIALOGUES)
    out = tmp_path / "gatt"
    result = CliRunner().invoke(app, ["gatt", "--policy", str(tiny_assets().model), "--dialogues", str(dialogues),
                                      "--output", str(out), *[str(plain) if a == "PLAIN" else a for a in args]])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "plain.txt"]
