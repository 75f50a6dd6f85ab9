"""Ghost Attention data and the per-message `train` flag: generation on CPU with the tiny Llama, the record
layout, the flag through a build (Parquet, `mixer show`, the card, `datasets.load_dataset`) and the exact
number of tokens `mixer train sft` puts loss on."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.cli import app
from mixer.generate.gatt import training_record
from mixer.generate.gatt_draw import DEFAULT_CONSTRAINTS, draw_instruction

DIALOGUES = [
    {"id": "a", "messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hi."},
                             {"role": "user", "content": "Now say goodbye."}, {"role": "assistant", "content": "Bye."},
                             {"role": "user", "content": "And thanks?"}]},
    {"id": "b", "messages": [{"role": "user", "content": "Name a colour."}]},
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_training_record_keeps_the_instruction_in_the_first_turn_and_loss_on_the_last_reply() -> None:
    out = training_record("Always speak in French.", [], ["q1", "q2", "q3"], ["r1", "r2", "r3"])
    assert out == [
        {"role": "user", "content": "Always speak in French.\n\nq1"},
        {"role": "assistant", "content": "r1", "train": False},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "r2", "train": False},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "r3"},
    ]


def test_gatt_generates_every_turn_with_the_instruction_and_writes_flagged_records(tmp_path: Path) -> None:
    a = tiny_assets()
    dialogues = _write_jsonl(tmp_path / "d.jsonl", DIALOGUES)
    out = tmp_path / "gatt"
    args = ["gatt", "--policy", str(a.model), "--dialogues", str(dialogues), "--output", str(out),
            "--max-new-tokens", "6", "--chat-template", "tulu", "--name", "gatt", "--keep-truncated"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "data").to_pylist()
    assert [r["id"] for r in rows] == ["gatt_a", "gatt_b"]
    first = rows[0]
    drawn = draw_instruction(list(DEFAULT_CONSTRAINTS), 42, "a")  # the dialogue's own seed: run seed + its id
    assert (first["instruction"], first["sampled_instruction"]) == (drawn.training, drawn.sampled)
    users = [m for m in first["messages"] if m["role"] == "user"]
    assert users[0]["content"] == f"{first['instruction']}\n\nSay hello."
    assert [u["content"] for u in users[1:]] == ["Now say goodbye.", "And thanks?"]
    assert [m["train"] for m in first["messages"] if m["role"] == "assistant"] == [False, False, None]
    assert [m["train"] for m in rows[1]["messages"]] == [None, None]
    card = json.loads((out / "card.json").read_text())
    assert (card["dialogues"]["read"], card["dialogues"]["written"], card["dialogues"]["dropped"]) == (2, 2, {})
    assert card["turns"]["generated"] == 4 and card["turns"]["untrained_assistant_turns"] == 2
    assert sum(card["instructions"]["combined"].values()) == 2
    assert card["instructions"]["shortened"] + card["instructions"]["full"] == 2
    # same seed and label, same bytes
    again = tmp_path / "again"
    assert CliRunner().invoke(app, [str(again) if x == str(out) else x for x in args]).exit_code == 0
    assert (again / "data/train-00000-of-00001.parquet").read_bytes() == \
        (out / "data/train-00000-of-00001.parquet").read_bytes()


@pytest.mark.parametrize("bad", [[{"id": "x", "text": "no messages"}],
                                 [{"id": "x", "messages": [{"role": "assistant", "content": "no user"}]}]])
def test_gatt_refuses_dialogues_without_user_turns_and_writes_nothing(tmp_path: Path, bad: list[dict]) -> None:
    dialogues = _write_jsonl(tmp_path / "d.jsonl", bad)
    out = tmp_path / "gatt"
    result = CliRunner().invoke(app, ["gatt", "--policy", str(tiny_assets().model), "--dialogues", str(dialogues),
                                      "--output", str(out)])
    assert result.exit_code == 2
    assert "record 0 (0-based)" in result.output and "GAtt needs" in result.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("d.jsonl", json.dumps(DIALOGUES[1]) + "\n" + json.dumps(DIALOGUES[1]) + "\n",
     "records 0 and 1 (0-based, as the default ids dialogue_N count) have the same id 'b'"),
    ("d.jsonl", json.dumps({"messages": DIALOGUES[1]["messages"]}) + "\n"  # no id: dialogue_0, as record 1 is
     + json.dumps({**DIALOGUES[1], "id": "dialogue_0"}) + "\n", "records 0 and 1 (0-based, as the default ids "
     "dialogue_N count) have the same id 'dialogue_0'"),
    ("d.parquet", "not parquet", "not a readable Parquet file"),
    ("d.jsonl", b"\xff\xfe{}\n", "not UTF-8 text"),
])
def test_gatt_refuses_repeated_ids_and_unreadable_files_with_exit_2(tmp_path: Path, name: str,
                                                                   content: str | bytes, says: str) -> None:
    dialogues = tmp_path / name
    if isinstance(content, bytes):
        dialogues.write_bytes(content)
    else:
        dialogues.write_text(content, encoding="utf-8")
    out = tmp_path / "gatt"
    result = CliRunner().invoke(app, ["gatt", "--policy", str(tiny_assets().model), "--dialogues", str(dialogues),
                                      "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_gatt_refuses_max_dialogues_below_1_instead_of_reading_every_dialogue(tmp_path: Path, limit: str) -> None:
    dialogues = _write_jsonl(tmp_path / "d.jsonl", DIALOGUES)
    out = tmp_path / "gatt"
    result = CliRunner().invoke(app, ["gatt", "--policy", str(tiny_assets().model), "--dialogues", str(dialogues),
                                      "--output", str(out), "--max-dialogues", limit])
    assert result.exit_code == 2 and "--max-dialogues must be at least 1" in result.output
    assert not out.exists()


FLAGGED = {"id": "f", "messages": [
    {"role": "user", "content": "Always speak in French.\n\nSay hello."},
    {"role": "assistant", "content": "Bonjour.", "train": False},
    {"role": "user", "content": "Now say goodbye."},
    {"role": "assistant", "content": "Au revoir, mon ami."}]}
PLAIN = {"id": "p", "messages": [{"role": "user", "content": "Count to three."},
                                 {"role": "assistant", "content": "One, two, three."}]}


def _build(tmp_path: Path, rows: list[dict]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_jsonl(raw / "mine.jsonl", rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: flagged\nraw_dir: {raw}\nsources:\n  - name: mine\n    adapter: messages\n"
                      "    files: mine.jsonl\n    take: all\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_train_flag_survives_the_build_and_reads_back_everywhere(tmp_path: Path) -> None:
    import datasets

    out = _build(tmp_path, [FLAGGED, PLAIN])
    table = pq.read_table(out / "data")
    assert table.schema.field("messages").type.value_type.names == ["role", "content", "train"]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert [m["train"] for m in rows["f"]["messages"]] == [None, False, None, None]
    assert [m["train"] for m in rows["p"]["messages"]] == [None, None]
    loaded = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in (out / "data").glob("*.parquet")),
                                   split="train")
    assert {r["id"]: [m["train"] for m in r["messages"]] for r in loaded}["f"] == [None, False, None, None]
    card = json.loads((out / "card.json").read_text())
    (mine,) = [s for s in card["sources"] if s["name"] == "mine"]
    assert mine["untrained_messages"] == 1
    shown = CliRunner().invoke(app, ["show", str(out), "-n", "5"])
    assert shown.exit_code == 0 and "train: false" in shown.output


def test_records_without_the_flag_keep_the_published_schema(tmp_path: Path) -> None:
    from mixer.core.records import OUTPUT_SCHEMA

    out = _build(tmp_path, [PLAIN])
    assert pq.read_table(out / "data").schema.field("messages").type == OUTPUT_SCHEMA.field("messages").type
    assert "untrained_messages" not in (out / "card.json").read_text()


def test_sft_puts_loss_only_on_the_last_reply_of_a_flagged_record() -> None:
    """Exact count: the flagged record's labelled tokens are the unflagged copy's minus its first reply's span,
    and the first reply's span is that of the one-turn conversation alone."""
    import datasets
    from transformers import AutoTokenizer

    from mixer.train.data import tokenize_sft

    tok = AutoTokenizer.from_pretrained(tiny_assets().model)
    unflagged = {"messages": [{k: v for k, v in m.items() if k != "train"} for m in FLAGGED["messages"]]}
    first_turn = {"messages": unflagged["messages"][:2]}
    rows = datasets.Dataset.from_list([{"messages": [dict(m, train=m.get("train")) for m in FLAGGED["messages"]]},
                                       {"messages": [dict(m, train=None) for m in unflagged["messages"]]},
                                       {"messages": [dict(m, train=None) for m in first_turn["messages"]]}])
    masks = [sum(r) for r in tokenize_sft(rows, tok, max_length=512)["assistant_masks"]]
    assert masks[2] > 0 and masks[1] > masks[2]
    assert masks[0] == masks[1] - masks[2]
    ids = tokenize_sft(rows, tok, max_length=512)[0]
    labelled = [t for t, m in zip(ids["input_ids"], ids["assistant_masks"], strict=True) if m]
    reply = tok("Au revoir, mon ami.", add_special_tokens=False)["input_ids"]
    assert labelled[:len(reply)] == reply  # the loss starts at the last reply's first token


def test_gatt_drops_a_dialogue_whose_reply_stopped_at_max_new_tokens_unless_kept(tmp_path: Path) -> None:
    # before, a reply cut at --max-new-tokens was written as training data (and was the context of later turns)
    from mixer.generate.backends import Completion
    from mixer.generate.gatt import GattConfig, run_gatt

    class CutSecondTurn:
        def generate(self, prompts, seeds):  # noqa: ANN001, ANN202
            return [[Completion("A reply", 2, "length" if p[-1]["content"].endswith("Now say goodbye.") else "stop")]
                    for p in prompts]

    dialogues = _write_jsonl(tmp_path / "d.jsonl", DIALOGUES)
    cfg = GattConfig(policy=str(tiny_assets().model), dialogues=str(dialogues), output=str(tmp_path / "drop"))
    card = run_gatt(cfg, backend=CutSecondTurn())
    assert [r["id"] for r in pq.read_table(tmp_path / "drop" / "data").to_pylist()] == ["drop_b"]
    assert card["dialogues"] == {"read": 2, "written": 1, "dropped": {"truncated": 1}, "with_truncated_reply": 1}
    assert card["instructions"]["shortened"] + card["instructions"]["full"] == 1
    assert "1 dropped: a reply stopped at max_new_tokens" in (tmp_path / "drop" / "README.md").read_text()
    kept = run_gatt(GattConfig(**{**cfg.__dict__, "output": str(tmp_path / "keep"), "keep_truncated": True}),
                    backend=CutSecondTurn())
    assert kept["dialogues"]["written"] == 2 and kept["dialogues"]["dropped"] == {}
