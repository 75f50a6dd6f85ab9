"""`mixer check-template`: real chat templates, their {% generation %} variants and broken ones."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from template_fixtures import (
    BROKEN_EOS_OUTSIDE,
    BROKEN_HEADER_IN_MASK,
    BROKEN_USER_TRAINED,
    CHATML,
    CHATML_FAMILY,
    CHATML_GENERATION,
    LLAMA2,
    LLAMA2_CHAT,
    LLAMA2_CHAT_GENERATION,
    LLAMA3,
    MISTRAL,
    MISTRAL_GENERATION,
    QWEN3,
    TULU3,
    TULU3_SHA256,
    Family,
    make_template_tokenizer,
    trl_template,
)
from train_fixtures import SFT_RECORDS, write_sft_build
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.chat import TULU_CHAT_TEMPLATE

runner = CliRunner()
NO_SYSTEM = [r for r in SFT_RECORDS if all(m["role"] != "system" for m in r["messages"])]


@functools.cache
def _tokenizer(name: str, template: str, family: Family) -> str:
    root = Path(tempfile.mkdtemp(prefix="mixer-template-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return str(make_template_tokenizer(root / name, template, family))


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sft_build(tmp_path_factory.mktemp("build"))


def _check(data: Path, tok: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check-template", str(data), "--tokenizer", tok, *args])
    return result.exit_code, result.output


def test_published_tulu3_template_is_the_one_open_instruct_pins() -> None:
    assert hashlib.sha256(TULU3.encode("utf-8")).hexdigest() == TULU3_SHA256


@pytest.mark.parametrize("name, template, family, records", [
    ("tulu-mixer", TULU_CHAT_TEMPLATE, LLAMA2, None),
    ("llama2-generation", LLAMA2_CHAT_GENERATION, LLAMA2, None),
    ("chatml-generation", CHATML_GENERATION, CHATML_FAMILY, None),
    ("mistral-generation", MISTRAL_GENERATION, LLAMA2, NO_SYSTEM),
    ("llama3-trl-training", "trl:llama3_training", LLAMA3, None),
])
def test_generation_templates_pass_with_system_and_multi_turn_records(
        tmp_path: Path, name: str, template: str, family: Family, records: list | None) -> None:
    template = trl_template(template[4:]) if template.startswith("trl:") else template
    data = write_sft_build(tmp_path, records)
    code, out = _check(data, _tokenizer(name, template, family))
    assert code == 0, out
    assert "OK: loss on exactly the assistant turns" in out
    assert "multi-turn: 3" in out
    if records is None:
        assert "system turn: 1" in out


def test_published_llama3_template_is_checked_with_trls_training_variant(build: Path) -> None:
    """Meta's Llama 3 template has no markers; the trainer swaps in TRL's training variant, and so does the check."""
    code, out = _check(build, _tokenizer("llama3", trl_template("llama3"), LLAMA3))
    assert code == 0, out
    assert "end-of-turn token(s): <|eot_id|>" in out


@pytest.mark.parametrize("name, template, family", [
    ("llama2", LLAMA2_CHAT, LLAMA2), ("tulu3", TULU3, LLAMA2), ("chatml", CHATML, CHATML_FAMILY),
    ("mistral", MISTRAL, LLAMA2),
])
def test_published_templates_without_assistant_markers_exit_2(build: Path, name: str, template: str,
                                                              family: Family) -> None:
    code, out = _check(build, _tokenizer(name, template, family))
    assert code == 2, out
    assert "no {% generation %} markers" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name, template, family, problem, flagged", [
    ("header-in-mask", BROKEN_HEADER_IN_MASK, CHATML_FAMILY, "outside the assistant turns carry loss",
     "LOSS    '<|im_start|>assistant\\n'  <-- should not carry loss"),
    ("eos-outside", BROKEN_EOS_OUTSIDE, LLAMA2, "assistant token(s) carry no loss",
     "no loss '</s>'  <-- should carry loss"),
    ("user-trained", BROKEN_USER_TRAINED, LLAMA2, "outside the assistant turns carry loss",
     "LOSS    'What is two plus two?\\n'  <-- should not carry loss"),
])
def test_broken_masks_exit_1_showing_the_first_record_and_its_spans(
        build: Path, name: str, template: str, family: Family, problem: str, flagged: str) -> None:
    code, out = _check(build, _tokenizer(name, template, family))
    assert code == 1, out
    assert "FAIL: the loss mask is wrong for 12 of 12 records" in out
    assert "record toy_0 (row 0, toy):" in out
    assert problem in out
    assert flagged in out


def test_a_turn_without_end_of_turn_token_is_caught(build: Path) -> None:
    no_eot = TULU_CHAT_TEMPLATE.replace("message['content'] + eos_token", "message['content']")
    code, out = _check(build, _tokenizer("no-eot", no_eot, LLAMA2))
    assert code == 1, out
    assert "ends without an end-of-turn token" in out and "never taught to stop" in out


def test_a_record_the_template_cannot_render_is_reported(build: Path) -> None:
    """Mistral's template refuses system turns: the trainer would crash on toy_1, so the check names it."""
    code, out = _check(build, _tokenizer("mistral-generation", MISTRAL_GENERATION, LLAMA2))
    assert code == 1, out
    assert "record toy_1" in out and "Conversation roles must alternate" in out


def _qwen3_build(path: Path) -> Path:
    """Records with a <think> block, a tool call and its result, in the message fields Qwen3's template reads."""
    msg = pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning_content", pa.string()),
                     ("tool_calls", pa.list_(pa.struct([("type", pa.string()), ("function", pa.struct([
                         ("name", pa.string()), ("arguments", pa.string())]))])))])
    call = [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    rows = [
        {"dataset": "agent", "id": "think_0", "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue.", "reasoning_content": "Let me think about the weather first."}]},
        {"dataset": "agent", "id": "tool_0", "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": call},
            {"role": "tool", "content": "sunny, 21 degrees"},
            {"role": "assistant", "content": "Sunny, 21 degrees."}]},
    ]
    path.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("dataset", pa.string()), ("id", pa.string()), ("messages", pa.list_(msg))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path / "agent.parquet")
    return path / "agent.parquet"


def test_qwen3_think_blocks_and_tool_calls_are_checked_on_a_parquet_file(tmp_path: Path) -> None:
    """Qwen3's published template gets TRL's training variant: the <think> block and the tool call are what the
    model generates after `<|im_start|>assistant\\n`, so they carry loss; the tool result does not."""
    data = _qwen3_build(tmp_path)
    code, out = _check(data, _tokenizer("qwen3", trl_template("qwen3"), QWEN3), "--html", str(tmp_path / "m.html"))
    assert code == 0, out
    assert "<think>: 1" in out and "tool calls: 1" in out and "system turn: 1" in out
    page = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "<span class='t loss'>&lt;tool_call&gt;</span>" in page
    from mixer.train.data import SFT_COLUMNS, load_parquet
    from mixer.train.template_check import check_rows, load_check_tokenizer

    tok = load_check_tokenizer(None, _tokenizer("qwen3", trl_template("qwen3"), QWEN3))
    report = check_rows(load_parquet(data, SFT_COLUMNS), tok, sample=None)
    tool = next(r for r in report.records if r.record_id == "tool_0")
    text = "".join(v.text for v in tool.tokens)
    loss = "".join(v.text for v in tool.tokens if v.loss)
    assert "sunny, 21 degrees" in text and "sunny" not in loss and "Paris?" not in loss
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in loss
    think = next(r for r in report.records if r.record_id == "think_0")
    assert "<think>\nLet me think about the weather first.\n</think>\n\nBlue.<|im_end|>" in "".join(
        v.text for v in think.tokens if v.loss)


def test_html_view_marks_loss_and_wrong_tokens(build: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "mask.html"
    code, out = _check(build, _tokenizer("header-in-mask", BROKEN_HEADER_IN_MASK, CHATML_FAMILY),
                       "--html", str(page_path))
    assert code == 1, out
    page = page_path.read_text(encoding="utf-8")
    assert "<span class='t extra'>&lt;|im_start|&gt;</span>" in page
    assert "class='t loss'" in page
    # a page of ours is replaced on a rerun; a user's file is not
    assert _check(build, _tokenizer("tulu-mixer", TULU_CHAT_TEMPLATE, LLAMA2), "--html", str(page_path))[0] == 0
    mine = tmp_path / "notes.html"
    mine.write_text("my notes", encoding="utf-8")
    code, out = _check(build, _tokenizer("tulu-mixer", TULU_CHAT_TEMPLATE, LLAMA2), "--html", str(mine))
    assert code == 2 and mine.read_text(encoding="utf-8") == "my notes"


def test_no_model_or_tokenizer_is_exit_2(build: Path) -> None:
    result = runner.invoke(app, ["check-template", str(build)])
    assert result.exit_code == 2
    assert "give --model PATH or --tokenizer PATH" in result.output


def test_sample_seeks_each_conversation_shape(build: Path) -> None:
    code, out = _check(build, _tokenizer("tulu-mixer", TULU_CHAT_TEMPLATE, LLAMA2), "-n", "2")
    assert code == 0, out
    # the first two rows hold no multi-turn record; the sample takes the first system and multi-turn ones
    assert "checked 2 of 12 records (multi-turn: 1, system turn: 1)" in out
