"""What a new user meets walking `mixer train`, `mixer tokenize` and `mixer train merge` on a CPU: bad data
named with its file and row, drops said with their reason, and no input or earlier output lost to an
output folder."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_fixtures import SFT_RECORDS, tiny_assets, write_sft_build

from mixer.core.records import MESSAGE_TYPE
from mixer.train.data import DataError, load_parquet, load_preference_dataset, tokenize_sft

MESSAGES = pa.list_(MESSAGE_TYPE)
HI = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def _parquet(path: Path, columns: dict[str, pa.Array]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def test_a_parquet_file_without_rows_is_named_as_empty(tmp_path: Path) -> None:
    empty = _parquet(tmp_path / "empty.parquet", {"messages": pa.array([], type=MESSAGES)})
    with pytest.raises(DataError, match=r"empty\.parquet: the data has no rows"):
        load_parquet(empty, ("messages",))


def test_an_empty_shard_beside_full_ones_is_skipped_not_a_library_error(tmp_path: Path) -> None:
    _parquet(tmp_path / "data" / "a.parquet", {"messages": pa.array([HI, HI], type=MESSAGES)})
    _parquet(tmp_path / "data" / "b.parquet", {"messages": pa.array([], type=MESSAGES)})
    assert len(load_parquet(tmp_path, ("messages",))) == 2


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataError, match=r"notes\.parquet: not a readable Parquet file"):
        load_parquet(bad, ("messages",))


def test_messages_stored_as_strings_are_refused_with_the_expected_schema(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "s.parquet", {"messages": pa.array(["hello", "again"])})
    with pytest.raises(DataError, match=r"s\.parquet: column 'messages' is string, not a list of \{role, content\}"):
        load_parquet(path, ("messages",))


@pytest.mark.parametrize(("cell", "problem"), [
    (None, "'messages' is null"),
    ([], "'messages' is an empty list"),
    ([{"role": "user", "content": None}, {"role": "assistant", "content": "yo"}],
     "'messages' has a message with no content"),
    ([{"role": None, "content": "hi"}, {"role": "assistant", "content": "yo"}],
     "'messages' has a message with no role"),
])
def test_a_broken_conversation_names_its_file_row_and_how_many(tmp_path: Path, cell: object, problem: str) -> None:
    path = _parquet(tmp_path / "data" / "train.parquet", {"messages": pa.array([HI, cell, HI, cell], type=MESSAGES)})
    with pytest.raises(DataError) as e:
        load_parquet(tmp_path, ("messages",))
    assert f"train.parquet, row 1: {problem}; 2 row(s)" in str(e.value)
    assert str(path) in str(e.value)


def test_an_assistant_turn_that_only_calls_a_tool_may_have_no_content(tmp_path: Path) -> None:
    call = pa.struct([("name", pa.string())])
    kind = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(call))]))
    cell = [{"role": "user", "content": "weather?", "tool_calls": None},
            {"role": "assistant", "content": None, "tool_calls": [{"name": "get_weather"}]},
            {"role": "tool", "content": "sunny", "tool_calls": None},
            {"role": "assistant", "content": "Sunny.", "tool_calls": None}]
    path = _parquet(tmp_path / "t.parquet", {"messages": pa.array([cell], type=kind)})
    assert len(load_parquet(path, ("messages",))) == 1


def test_a_null_prompt_in_preference_data_names_its_row(tmp_path: Path) -> None:
    prompt, reply = [HI[0]], [HI[1]]
    path = _parquet(tmp_path / "p.parquet", {"prompt": pa.array([prompt, None], type=MESSAGES),
                                             "chosen": pa.array([reply, reply], type=MESSAGES),
                                             "rejected": pa.array([reply, reply], type=MESSAGES)})
    with pytest.raises(DataError, match=r"p\.parquet, row 1: 'prompt' is null; 1 row"):
        load_preference_dataset(path)


def _tokenizer() -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_assets().model)


def test_sft_drops_are_counted_per_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A ShareGPT-style conversation (roles human/gpt) has no reply the template marks: that is its own reason,
    not `too long`, which would send the user to raise max_length."""
    sharegpt = {"dataset": "toy", "id": "sg", "messages": [{"role": "user", "content": "hi"},
                                                           {"role": "gpt", "content": "hello"}]}
    long_prompt = {"dataset": "toy", "id": "long", "messages": [{"role": "user", "content": "word " * 200},
                                                                {"role": "assistant", "content": "ok"}]}
    rows = load_parquet(write_sft_build(tmp_path, [*SFT_RECORDS[:3], sharegpt, long_prompt]), ("messages",))
    with caplog.at_level("WARNING", logger="mixer.train"):
        kept = tokenize_sft(rows, _tokenizer(), max_length=64)
    assert len(kept) == 3 and kept.column_names == ["input_ids", "assistant_masks"]
    assert ("dropped 2 of 5 row(s) with no token to train on: 1 whose assistant turns start past max_length=64; "
            "1 with no assistant reply to learn from") in caplog.text


def test_no_trainable_row_says_why_rather_than_blaming_max_length(tmp_path: Path) -> None:
    sharegpt = [{"dataset": "toy", "id": f"sg{i}", "messages": [{"role": "human", "content": "hi"},
                                                               {"role": "gpt", "content": "hello"}]} for i in range(2)]
    rows = load_parquet(write_sft_build(tmp_path, sharegpt), ("messages",))
    with pytest.raises(DataError, match="2 with no assistant reply to learn from") as e:
        tokenize_sft(rows, _tokenizer(), max_length=64)
    assert "max_length" not in str(e.value)


def test_cached_tokenisation_is_not_reused_when_the_row_function_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` keys its map cache on a module function's name, not its code: a newer mixer that tokenises
    otherwise must not be handed the older one's cached rows from the Hugging Face cache."""
    from mixer.train import data

    tokenizer = _tokenizer()
    rows = load_parquet(write_sft_build(tmp_path / "build"), ("messages",))
    assert rows.cache_files  # loaded from disk: `datasets` caches its maps
    before = tokenize_sft(rows, tokenizer, max_length=64)

    def whole_text(example: dict, tokenizer: object, max_length: int, assistant_only_loss: bool) -> dict:
        ids = tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True)["input_ids"]
        ids = list(ids)[:max_length]
        return {"input_ids": ids, "assistant_masks": [1] * len(ids), "n_loss_tokens": len(ids), "trainable": True}

    monkeypatch.setattr(data._tokenize_row, "__code__", whole_text.__code__)  # same name, new code
    after = tokenize_sft(rows, tokenizer, max_length=64)
    assert before["assistant_masks"] != after["assistant_masks"]
    assert all(all(m) for m in after["assistant_masks"])


def test_tokenize_never_writes_over_the_model_it_reads(tmp_path: Path) -> None:
    """`mixer tokenize BUILD --model runs/tiny -o runs/tiny --overwrite` deleted the model folder (the output is
    replaced as a whole); an input is never an output, whatever --overwrite says."""
    import shutil

    from typer.testing import CliRunner

    from mixer.cli import app

    model = shutil.copytree(tiny_assets().model, tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    for flag in ("--model", "--tokenizer"):
        result = CliRunner().invoke(app, ["tokenize", str(tiny_assets().sft_data), flag, str(model), "--max-length",
                                          "64", "-o", str(model), "--overwrite"])
        assert result.exit_code == 2, result.output
        assert f"the output folder is {flag} {model}" in result.output
    assert sorted(p.name for p in model.iterdir()) == before


def _sft_run_and_adapter(tmp_path: Path) -> tuple[Path, Path]:
    """An earlier `mixer train sft` run (a model folder with its marker) and a LoRA adapter trained on it."""
    import shutil

    from mixer.train.config import load_config
    from mixer.train.trainer import run

    sft = shutil.copytree(tiny_assets().model, tmp_path / "sft")
    (sft / "mixer_train_config.yaml").write_text("trainer: sft\n", encoding="utf-8")
    adapter = tmp_path / "lora"
    run(load_config("sft", Path(__file__).resolve().parents[2] / "train" / "tiny-cpu.yaml",
                    ["use_peft=true", "lora_r=4", "max_steps=1", "check_template=false"], model=str(sft),
                    data=str(tiny_assets().sft_data), output_dir=str(adapter)), progress=False)
    return sft, adapter


def test_merge_never_writes_over_the_adapters_base_or_another_training_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mixer train merge --model runs/lora -o runs/sft`, runs/sft being the adapter's base (an earlier SFT run,
    so it carries mixer's marker), replaced the SFT model and its config without a flag."""
    import shutil

    from typer.testing import CliRunner

    from mixer.train.cli import app

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    sft, adapter = _sft_run_and_adapter(tmp_path)
    other = shutil.copytree(sft, tmp_path / "other-sft")  # another user's trained model, same marker
    weights = {d: (d / "model.safetensors").read_bytes() for d in (sft, other)}
    for flags in ([], ["--overwrite-output-dir"]):
        result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "-o", str(sft), *flags])
        assert result.exit_code == 2, result.output
        assert f"the output folder is the adapter's base model {sft}" in result.output
    result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "-o", str(other)])
    assert result.exit_code == 2, result.output
    assert "holds a `mixer train sft` run" in result.output and "--overwrite-output-dir" in result.output
    assert {d: (d / "model.safetensors").read_bytes() for d in (sft, other)} == weights
    assert (sft / "mixer_train_config.yaml").read_text() == "trainer: sft\n"
    again = tmp_path / "merged"  # an earlier merge is replaced as before
    for _ in range(2):
        result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "-o", str(again), "--set", "dtype=float32"])
        assert result.exit_code == 0, result.output


def test_a_resume_with_no_checkpoint_stops_before_loading_and_keeps_the_earlier_runs_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--set resume_from_checkpoint=last` on a run saved without checkpoints tokenised and loaded everything, then
    failed, after writing its own config over the earlier run's mixer_train_config.yaml."""
    from typer.testing import CliRunner

    from mixer.train import trainer
    from mixer.train.cli import app

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    run_dir = tmp_path / "sft"
    run_dir.mkdir()
    earlier = "trainer: sft\nmax_steps: 2\n"
    (run_dir / "mixer_train_config.yaml").write_text(earlier, encoding="utf-8")
    monkeypatch.setattr(trainer, "build_trainer", lambda *a, **k: pytest.fail("loaded before the resume check"))
    a = tiny_assets()
    args = ["sft", "-c", "tiny-cpu", "--model", str(a.model), "--data", str(a.sft_data), "-o", str(run_dir),
            "--set", "resume_from_checkpoint=last"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "has no checkpoint-* directory" in result.output and "save_strategy" in result.output
    assert (run_dir / "mixer_train_config.yaml").read_text(encoding="utf-8") == earlier
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "note: resume_from_checkpoint: last, but" in dry.output


def test_train_and_save_resolves_the_checkpoint_before_writing_the_config(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mixer.train.config import load_config
    from mixer.train.trainer import train_and_save

    (tmp_path / "mixer_train_config.yaml").write_text("trainer: sft\n", encoding="utf-8")
    cfg = load_config("sft", None, ["resume_from_checkpoint=last"], model="m", data="d", output_dir=str(tmp_path))
    fake = SimpleNamespace(mixer_runtime=SimpleNamespace(as_dict=dict), is_world_process_zero=lambda: True)
    with pytest.raises(Exception, match="no checkpoint"):
        train_and_save(fake, cfg)
    assert (tmp_path / "mixer_train_config.yaml").read_text(encoding="utf-8") == "trainer: sft\n"


@pytest.mark.parametrize(("kind", "what"), [("rm", "1 of 8 training pair(s): chosen or rejected longer than"),
                                            ("dpo", "1 of 9 preference pair(s): the prompt alone fills")])
def test_pairs_trl_leaves_out_for_length_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture, kind: str, what: str) -> None:
    """TRL's RewardTrainer drops pairs longer than max_length and its DPOTrainer pairs whose prompt fills it,
    without a word; the run says how many and why."""
    from train_fixtures import PREFERENCE_RECORDS, write_preference_build

    from mixer.train.config import load_config
    from mixer.train.trainer import build_trainer

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    long_prompt = {**PREFERENCE_RECORDS[0], "id": "long", "prompt": [{"role": "user", "content": "word " * 100}]}
    data = write_preference_build(tmp_path / "pref", [*PREFERENCE_RECORDS, long_prompt])
    cfg = load_config(kind, Path(__file__).resolve().parents[2] / "train" / f"tiny-cpu-{kind}.yaml",
                      ["max_length=64", "eval_size=1"] if kind == "rm" else ["max_length=64"],
                      model=str(tiny_assets().model), data=str(data), output_dir=str(tmp_path / "run"))
    with caplog.at_level("WARNING", logger="mixer.train"):
        trainer = build_trainer(cfg)
    assert f"dropped {what}" in caplog.text and "max_length=64" in caplog.text
    assert len(trainer.train_dataset) == (7 if kind == "rm" else 8)


def test_rloo_never_trains_into_its_reward_model(tmp_path: Path) -> None:
    """`mixer train rloo ... -o runs/rm --set reward_model=runs/rm --overwrite-output-dir` wrote the policy over the
    reward model it scores with: the reward model is an input, like --model and --data."""
    from typer.testing import CliRunner

    from mixer.train.cli import app

    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "mixer_train_config.yaml").write_text("trainer: rm\n", encoding="utf-8")
    a = tiny_assets()
    result = CliRunner().invoke(app, ["rloo", "-c", "tiny-cpu-rloo", "--model", str(a.model), "--data",
                                      str(a.sft_data), "-o", str(rm), "--set", f"reward_model={rm}",
                                      "--overwrite-output-dir", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"the output folder is reward_model {rm}" in result.output


def test_overwriting_a_run_names_the_checkpoints_it_leaves_behind(tmp_path: Path) -> None:
    """--overwrite-output-dir writes the new run's files over the earlier run's but leaves its checkpoint-N folders,
    which resume_from_checkpoint=last would later pick over this run's own: the run says so."""
    from typer.testing import CliRunner

    from mixer.train.cli import app

    run_dir = tmp_path / "sft"
    for name in ("checkpoint-10", "checkpoint-200"):
        (run_dir / name).mkdir(parents=True)
    (run_dir / "mixer_train_config.yaml").write_text("trainer: sft\n", encoding="utf-8")
    a = tiny_assets()
    args = ["sft", "-c", "tiny-cpu", "--model", str(a.model), "--data", str(a.sft_data), "-o", str(run_dir),
            "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--overwrite-output-dir"])
    assert result.exit_code == 0, result.output
    assert "holds 2 checkpoint folder(s) of the earlier run (newest checkpoint-200)" in result.output
    resumed = CliRunner().invoke(app, [*args, "--set", "resume_from_checkpoint=last"])
    assert resumed.exit_code == 0 and "checkpoint folder(s) of the earlier run" not in resumed.output


@pytest.mark.parametrize("where", [["--num-processes", "0"], ["--set", "num_processes=0"]])
def test_zero_processes_is_refused_not_read_as_the_default(where: list[str], tmp_path: Path) -> None:
    """`--num-processes 0` was taken as 'not given' and ran one process (or one per GPU) without a word."""
    from typer.testing import CliRunner

    from mixer.train.cli import app

    # a new output folder under tmp_path: a relative `out` is the checkout's, which the README's build fills
    result = CliRunner().invoke(app, ["sft", "-c", "tiny-cpu", "--model", "m", "--data", "d",
                                      "-o", str(tmp_path / "run"), *where, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "num_processes must be positive, got 0" in result.output


def test_rloo_prompts_from_a_broken_conversation_name_the_row(tmp_path: Path) -> None:
    from mixer.train.rloo import load_prompt_dataset

    path = _parquet(tmp_path / "p.parquet", {"messages": pa.array([HI, None], type=MESSAGES)})
    with pytest.raises(DataError, match=r"p\.parquet, row 1: 'messages' is null"):
        load_prompt_dataset(path)
    assert load_prompt_dataset(_parquet(tmp_path / "ok.parquet", {"messages": pa.array([HI], type=MESSAGES)}))[
        "prompt"] == [[HI[0]]]


def test_a_comma_separated_set_fills_a_list_field_that_may_also_be_none() -> None:
    """`--set lora_target_modules=q_proj,v_proj` (TRL types it list[str] | None) became the one module name
    'q_proj,v_proj', which peft then could not find in the model; a field that also takes a plain string
    (report_to) keeps the string as TRL reads it."""
    from mixer.train.config import load_config

    cfg = load_config("sft", None, ["lora_target_modules=q_proj, v_proj", "lora_modules_to_save=lm_head,embed_tokens",
                                    "report_to=none"])
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.lora_modules_to_save == ["lm_head", "embed_tokens"]
    assert cfg.report_to == "none"


def test_rows_whose_replies_are_all_empty_are_warned_with_their_row(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # they trained on the end-of-turn token alone, without a word
    empty = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]
    _parquet(tmp_path / "data" / "train.parquet", {"messages": pa.array([HI, empty, HI, empty], type=MESSAGES)})
    with caplog.at_level("WARNING", logger="mixer.train"):
        assert len(load_parquet(tmp_path, ("messages",))) == 4  # kept: legal, and the user's call
    (warning,) = [r.getMessage() for r in caplog.records if "all empty" in r.getMessage()]
    assert "2 row(s) whose 'messages' replies are all empty (first: " in warning and "row 1)" in warning
    caplog.clear()
    _parquet(tmp_path / "fine" / "train.parquet", {"messages": pa.array([HI, HI], type=MESSAGES)})
    with caplog.at_level("WARNING", logger="mixer.train"):
        load_parquet(tmp_path / "fine", ("messages",))
    assert not [r for r in caplog.records if "all empty" in r.getMessage()]
