"""Recipes, --set overrides, effective-batch arithmetic, attention choice and launch commands.

These need no model: the CLI is exercised with --dry-run and a mocked GPU count.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train import gradient_accumulation_steps, load_config
from mixer.train.accel import launch as launch_mod
from mixer.train.accel.attention import choose_attention
from mixer.train.accel.batch import BatchError
from mixer.train.cli import app
from mixer.train.config import ConfigError, RunConfig

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "train"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    # The recipes and accelerate presets are addressed relative to the repository, as a user would.
    monkeypatch.chdir(REPO)
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _gpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: n)


# --- recipes ---------------------------------------------------------------------------------------


def test_tulu2_sft_recipe_matches_the_paper() -> None:
    cfg = load_config("sft", TRAIN / "tulu2-sft.yaml")
    assert isinstance(cfg, RunConfig) and cfg.kind == "sft"
    assert (cfg.bf16, cfg.num_train_epochs, cfg.weight_decay, cfg.warmup_ratio) == (True, 2.0, 0.0, 0.03)
    assert (cfg.learning_rate, cfg.max_length, cfg.effective_batch_size) == (2e-5, 8192, 128)
    assert cfg.lr_scheduler_type == "linear" and cfg.assistant_only_loss


def test_tulu2_qlora_recipe_matches_the_paper() -> None:
    cfg = load_config("sft", TRAIN / "tulu2-qlora.yaml")
    assert (cfg.num_train_epochs, cfg.learning_rate, cfg.max_length, cfg.effective_batch_size) == (5.0, 1e-4, 4096, 128)
    assert (cfg.use_lora, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (True, 64, 16, 0.1)
    assert set(cfg.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (cfg.load_in_4bit, cfg.bnb_4bit_quant_type, cfg.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert cfg.bnb_4bit_compute_dtype == "bfloat16"


def test_tulu2_dpo_recipe_matches_zephyr() -> None:
    cfg = load_config("dpo", TRAIN / "tulu2-dpo.yaml")
    assert isinstance(cfg, RunConfig) and cfg.kind == "dpo"
    assert (cfg.bf16, cfg.num_train_epochs, cfg.weight_decay, cfg.warmup_ratio) == (True, 3.0, 0.0, 0.1)
    assert (cfg.learning_rate, cfg.max_length, cfg.effective_batch_size) == (5e-7, 8192, 32)
    assert (cfg.beta, cfg.loss_type) == (0.1, ["sigmoid"])  # DPOConfig's own type: a list of losses


@pytest.mark.parametrize("name,kind", [("tiny-cpu.yaml", "sft"), ("tiny-cpu-dpo.yaml", "dpo")])
def test_tiny_recipes_load(name: str, kind: str) -> None:
    cfg = load_config(kind, TRAIN / name)
    assert cfg.bf16 is False and cfg.max_length <= 512


def test_recipe_for_the_wrong_trainer_is_rejected() -> None:
    with pytest.raises(ConfigError, match="mixer train dpo"):
        load_config("sft", TRAIN / "tulu2-dpo.yaml")


# --- --set overrides -------------------------------------------------------------------------------


def test_set_overrides_are_parsed_as_yaml_and_coerced() -> None:
    cfg = load_config(
        "sft",
        TRAIN / "tulu2-sft.yaml",
        [
            "learning_rate=1e-5",  # PyYAML reads this as a string: coerced to float
            "use_lora=true",
            "num_train_epochs=3",
            "lora_target_modules=[q_proj, v_proj]",
            "max_train_samples=null",
            "batching=packed",
            "trl_args.logging_first_step=true",
        ],
        model="/models/x",
    )
    assert cfg.learning_rate == 1e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.use_lora is True and cfg.num_train_epochs == 3.0
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.max_train_samples is None and cfg.batching == "packed"
    assert cfg.logging_first_step is True  # trl_args.x: the old spelling of a TRL field
    assert cfg.model == "/models/x"


def test_set_beats_cli_option_beats_yaml() -> None:
    cfg = load_config("sft", TRAIN / "tiny-cpu.yaml", ["model=/b"], model="/a")
    assert cfg.model == "/b"


def test_unknown_key_names_the_near_miss_and_lists_valid_keys_only_without_one() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("sft", TRAIN / "tulu2-sft.yaml", ["learning_rte=1e-5"])
    msg = str(err.value)
    assert "unknown key 'learning_rte' (did you mean 'learning_rate'?) for `sft`" in msg
    assert "keys are valid: the fields of ModelConfig, SFTArgs, SFTConfig" in msg
    assert "gradient_checkpointing" not in msg  # not the ~230-key list under the answer
    with pytest.raises(ConfigError) as err:
        load_config("sft", TRAIN / "tulu2-sft.yaml", ["zzqx=1"])
    assert "valid keys: " in str(err.value) and "learning_rate" in str(err.value)


def test_bad_value_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match="effective_batch_size"):
        load_config("sft", None, ["effective_batch_size=lots"])
    with pytest.raises(ConfigError, match="batching"):
        load_config("sft", None, ["batching=zigzag"])


def test_dpo_rejects_padding_free() -> None:
    with pytest.raises(ConfigError, match="padded"):
        load_config("dpo", TRAIN / "tulu2-dpo.yaml", ["batching=padding_free"])


# --- effective batch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "effective,per_device,world,expected",
    [(128, 2, 8, 8), (128, 2, 1, 64), (128, 1, 128, 1), (32, 1, 8, 4), (32, 2, 16, 1), (4, 2, 1, 2)],
)
def test_gradient_accumulation(effective: int, per_device: int, world: int, expected: int) -> None:
    assert gradient_accumulation_steps(effective, per_device, world) == expected
    assert per_device * expected * world == effective


@pytest.mark.parametrize("effective,per_device,world", [(128, 3, 1), (128, 2, 3), (4, 8, 1), (32, 0, 1)])
def test_gradient_accumulation_must_be_an_integer(effective: int, per_device: int, world: int) -> None:
    with pytest.raises(BatchError):
        gradient_accumulation_steps(effective, per_device, world)


def test_batch_error_suggests_valid_sizes() -> None:
    with pytest.raises(BatchError, match=r"\[1, 2, 4, 8, 16, 32, 64, 128\]"):
        gradient_accumulation_steps(128, 3, 1)


# --- attention -------------------------------------------------------------------------------------


def test_attention_is_sdpa_without_cuda() -> None:
    choice = choose_attention("auto", cuda=False)
    assert choice.implementation == "sdpa" and "no CUDA device" in choice.reason


def test_flash_attention_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(MixerError, match="CUDA"):
        choose_attention("flash_attention_2", cuda=False)


# --- CLI: dry run and launch commands --------------------------------------------------------------

SFT_ARGS = ["sft", "--config", "train/tulu2-sft.yaml", "--model", "/models/llama-2-7b", "--data", "out/tulu-v2",
            "--output-dir", "runs/tulu2-7b"]


def test_dry_run_one_gpu_runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)
    result = runner.invoke(app, [*SFT_ARGS, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "learning_rate: 2.0e-05" in result.output
    assert "model_name_or_path: /models/llama-2-7b" in result.output  # TRL's key; --model fills it
    assert "gradient_accumulation_steps: 64" in result.output
    assert "in-process" in result.output and "accelerate launch" not in result.output


def test_an_accelerate_preset_named_for_a_one_process_run_is_reported_as_unused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)
    result = runner.invoke(app, [*SFT_ARGS, "--accelerate-config", "zero3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "--accelerate-config zero3 is not used: one process runs without accelerate" in result.output
    assert "in-process" in result.output
    quiet = runner.invoke(app, [*SFT_ARGS, "--dry-run"])  # the recipe's own preset (fsdp2) is no user request
    assert "is not used" not in quiet.output


def test_dry_run_eight_gpus_prints_accelerate_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 8)
    result = runner.invoke(app, [*SFT_ARGS, "--set", "learning_rate=1e-5", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "gradient_accumulation_steps: 8" in result.output
    line = next(ln for ln in result.output.splitlines() if " launch " in ln)
    argv = shlex.split(line)
    assert Path(argv[0]).name == "accelerate" and argv[1] == "launch"
    assert argv[argv.index("--config_file") + 1].endswith("recipes/accelerate/fsdp2.yaml")
    assert argv[argv.index("--num_processes") + 1] == "8"
    tail = argv[argv.index("-m"):]
    assert tail[:3] == ["-m", "mixer.train.run", "sft"]
    assert tail[3:] == SFT_ARGS[1:] + ["--set", "learning_rate=1e-5"]


def test_dry_run_num_processes_and_accelerate_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    result = runner.invoke(app, [*SFT_ARGS, "--num-processes", "4", "--accelerate-config", "fsdp2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "recipes/accelerate/fsdp2.yaml --num_processes 4" in result.output
    assert "gradient_accumulation_steps: 16" in result.output


def test_dry_run_dpo(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 8)
    args = ["dpo", "--config", "train/tulu2-dpo.yaml", "--model", "runs/tulu2-7b", "--data", "out/uf",
            "--output-dir", "runs/dpo", "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "beta: 0.1" in result.output and "gradient_accumulation_steps: 4" in result.output
    assert "-m mixer.train.run dpo" in result.output


def test_indivisible_batch_on_three_gpus_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 3)
    result = runner.invoke(app, [*SFT_ARGS, "--dry-run"])
    assert result.exit_code == 2
    assert "not a multiple" in result.output and "Traceback" not in result.output


def test_unknown_set_key_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)
    result = runner.invoke(app, [*SFT_ARGS, "--set", "epochs=3", "--dry-run"])
    assert result.exit_code == 2
    assert "unknown key 'epochs'" in result.output and "num_train_epochs" in result.output


def test_missing_data_dir_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _gpus(monkeypatch, 1)
    (tmp_path / "model").mkdir()  # beside the run folder: a run folder inside its --model is refused (issue 24)
    result = runner.invoke(app, ["sft", "--config", "train/tiny-cpu.yaml", "--model", str(tmp_path / "model"),
                                 "--data", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_missing_output_dir_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _gpus(monkeypatch, 1)
    result = runner.invoke(app, ["sft", "--config", "train/tiny-cpu.yaml", "--model", "m", "--data", "d"])
    assert result.exit_code == 2 and "--output-dir" in result.output


def test_missing_train_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from mixer.train import deps

    real = importlib.util.find_spec
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    _gpus(monkeypatch, 1)
    result = runner.invoke(app, ["sft", "--config", "train/tiny-cpu.yaml", "--model", "m", "--data", "d",
                                 "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "pip install 'mixer[train]'" in result.output and "trl" in result.output


def test_merge_dry_run() -> None:
    result = runner.invoke(app, ["merge", "--model", "runs/a", "--output-dir", "runs/b", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "model: runs/a" in result.output


@pytest.mark.parametrize(("kind", "missing"), [("sft", "--model"), ("sft", "--data"), ("sft", "--output-dir"),
                                               ("dpo", "--data"), ("rm", "--model"), ("merge", "--output-dir")])
def test_dry_run_without_a_required_path_fails_as_the_run_would(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                                missing: str) -> None:
    _gpus(monkeypatch, 8)  # several GPUs: without the check each launched rank would fail on its own
    paths = {"--model": "m", "--data": "d", "--output-dir": "o"}
    if kind == "merge":
        del paths["--data"]
    del paths[missing]
    config = {"sft": "tiny-cpu", "dpo": "tiny-cpu-dpo", "rm": "tiny-cpu-rm", "merge": None}[kind]
    args = [kind, *(["--config", config] if config else []), *[x for kv in paths.items() for x in kv], "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"pass {missing}" in result.output and "# launch" not in result.output


def test_a_config_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("trainer: sft\nlearning_rate: 1.0e-5\nlearning_rate: 2.0e-5\n")
    with pytest.raises(ConfigError, match="key 'learning_rate' is given twice"):
        load_config("sft", str(path), None)


def test_a_config_that_is_not_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"trainer: sft\nlearning_rate: 1.0e-5\noptim: adam\xff\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 3: not UTF-8 text \(byte 0xff"):
        load_config("sft", str(path), None)


def test_dry_run_rejects_what_the_run_would_reject_and_notes_paths_missing_here(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)
    bad = runner.invoke(app, [*SFT_ARGS, "--set", "trl_args.no_such_field=1", "--dry-run"])
    assert bad.exit_code == 2 and "no_such_field" in bad.output and "Traceback" not in bad.output
    wrong = runner.invoke(app, [*SFT_ARGS, "--set", "batching=sideways", "--dry-run"])
    assert wrong.exit_code == 2 and "batching" in wrong.output
    ok = runner.invoke(app, [*SFT_ARGS, "--dry-run"])  # paths of another host: planned, with notes
    assert ok.exit_code == 0, ok.output
    assert "note: --data out/tulu-v2 does not exist on this machine" in ok.output
    assert "note: --model /models/llama-2-7b is not a folder on this machine" in ok.output


# --- TRL owns its fields; mixer's earlier key names keep working -------------------------------------------


def test_no_trl_field_is_redeclared_by_mixer() -> None:
    import dataclasses

    import trl

    from mixer.train.args import MIXER_ARGS

    trl_fields = {f.name for cls in (trl.SFTConfig, trl.DPOConfig, trl.RewardConfig, trl.RLOOConfig, trl.ModelConfig)
                  for f in dataclasses.fields(cls)}
    for kind, cls in MIXER_ARGS.items():
        if kind != "merge":  # merging has no TRL config: its output_dir is its own
            assert not {f.name for f in dataclasses.fields(cls)} & trl_fields, kind


def test_old_key_names_keep_working_and_are_saved_under_trl_names(tmp_path: Path) -> None:
    from mixer.train.config import to_yaml

    path = tmp_path / "old.yaml"
    path.write_text("trainer: sft\nuse_lora: true\nbnb_4bit_use_double_quant: false\nwarmup_ratio: 0.1\n"
                    "trl_args: {logging_first_step: true}\n")
    cfg = load_config("sft", path)
    assert (cfg.use_peft, cfg.use_bnb_nested_quant, cfg.warmup_steps) == (True, False, 0.1)
    assert cfg.logging_first_step is True
    saved = to_yaml(cfg)
    assert "use_peft: true" in saved and "warmup_steps: 0.1" in saved and "use_lora" not in saved
    assert load_config("sft", None, ["use_lora=true"]).use_peft is True


def test_an_old_and_a_new_name_that_disagree_is_an_error_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("trainer: sft\nuse_peft: false\nuse_lora: true\n")
    with pytest.raises(ConfigError, match="'use_peft' and 'use_lora' both set 'use_peft'"):
        load_config("sft", path)


@pytest.mark.parametrize("kind", ["sft", "dpo", "rm"])
def test_a_run_config_saved_before_trl_owned_the_keys_loads_as_a_recipe(kind: str) -> None:
    """Every key an earlier mixer wrote into OUTPUT/mixer_train_config.yaml (tests/train/data, written by it from
    the tiny-cpu recipes) still loads, to the same values."""
    import yaml

    path = Path(__file__).parent / "data" / f"saved-{kind}-config-before-trl-keys.yaml"
    cfg = load_config(kind, path)
    old = yaml.safe_load(path.read_text())
    assert (cfg.use_peft, cfg.warmup_steps, cfg.dtype, cfg.learning_rate) == (
        old["use_lora"], old["warmup_ratio"], old["dtype"], old["learning_rate"])
    assert (cfg.model, cfg.data, cfg.output_dir) == ("m", "d", "o")


def test_a_field_mixer_derives_names_the_key_to_set_instead() -> None:
    with pytest.raises(ConfigError, match="derived from effective_batch_size"):
        load_config("sft", None, ["gradient_accumulation_steps=4"])
    with pytest.raises(ConfigError, match="set batching instead"):
        load_config("sft", None, ["trl_args.packing=true"])


def test_any_trl_field_is_a_key_and_is_coerced_to_trl_s_type() -> None:
    cfg = load_config("dpo", "tulu2-dpo", ["loss_type=[sigmoid, sft]", "lr_scheduler_kwargs={min_lr_rate: 0.1}"])
    assert cfg.loss_type == ["sigmoid", "sft"] and cfg.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    with pytest.raises(ConfigError, match="save_steps"):
        load_config("sft", None, ["save_steps=often"])


def test_model_is_another_name_for_trl_model_name_or_path_except_in_merge(tmp_path: Path) -> None:
    from mixer.train.args import MIXER_ARGS
    from mixer.train.config import to_yaml

    assert all("model" not in {f.name for f in dataclasses.fields(cls)} for k, cls in MIXER_ARGS.items()
               if k != "merge")  # no mixer field holds TRL's model path under another name
    by_cli = load_config("sft", None, model="m1")
    assert by_cli.model == by_cli.model_name_or_path == "m1"
    assert by_cli.values["model_name_or_path"] == "m1" and "model_name_or_path: m1" in to_yaml(by_cli)
    path = tmp_path / "trl.yaml"
    path.write_text("trainer: dpo\nmodel_name_or_path: m2\nbatching: padded\n")
    assert load_config("dpo", path).model == "m2"
    assert load_config("dpo", path, model="m3").model_name_or_path == "m3"  # the command line wins
    both = tmp_path / "both.yaml"
    both.write_text("trainer: sft\nmodel: a\nmodel_name_or_path: b\n")
    with pytest.raises(ConfigError, match="both set 'model_name_or_path'"):
        load_config("sft", both)
    merge = load_config("merge", None, model="adapter")
    assert merge.model == merge.args.model == "adapter"  # merge's model is the adapter folder, its own key
    merge_both = tmp_path / "merge-both.yaml"  # merge has no model_name_or_path: the hint, not "both set"
    merge_both.write_text("trainer: merge\nmodel: a\nmodel_name_or_path: b\n")
    with pytest.raises(ConfigError, match="unknown key 'model_name_or_path' \\(did you mean 'model'\\?\\)"):
        load_config("merge", merge_both)


def test_the_saved_config_names_the_model_right_after_the_trainer() -> None:
    import yaml

    from mixer.train.config import to_yaml

    sft = yaml.safe_load(to_yaml(load_config("sft", None, model="m1")))
    assert list(sft.items())[:2] == [("trainer", "sft"), ("model_name_or_path", "m1")]
    merge = yaml.safe_load(to_yaml(load_config("merge", None, model="a")))
    assert list(merge.items())[:2] == [("trainer", "merge"), ("model", "a")]


def test_an_alias_of_another_trainer_is_not_offered_and_merge_names_its_model_key() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("merge", None, ["model_name_or_path=runs/a"])
    assert "did you mean 'model'?" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config("merge", None, ["use_lora=true"])
    assert "valid keys:" in str(e.value) and "use_lora" not in str(e.value).split("valid keys:")[1]


def test_an_adapter_s_task_type_is_its_trainer_s(tmp_path: Path) -> None:
    from mixer.train.delta import peft_config

    rm = load_config("rm", REPO / "train" / "tiny-cpu-rm.yaml", ["use_peft=true"])
    assert peft_config(rm).task_type == "SEQ_CLS"  # the new score head is trained and saved with the adapter
    ia3 = load_config("rm", REPO / "train" / "tiny-cpu-rm.yaml", ["peft_method=ia3"])
    assert str(peft_config(ia3).task_type) == "SEQ_CLS"
    assert peft_config(load_config("sft", None, ["use_peft=true"])).task_type == "CAUSAL_LM"
    for kind, recipe, wrong in (("rm", "tiny-cpu-rm.yaml", "CAUSAL_LM"), ("sft", "tiny-cpu.yaml", "SEQ_CLS"),
                                ("sft", "tiny-cpu.yaml", "causal")):
        with pytest.raises(ConfigError, match=f"lora_task_type '{wrong}' does not fit `mixer train {kind}`"):
            load_config(kind, REPO / "train" / recipe, ["use_peft=true", f"lora_task_type={wrong}"])
    assert load_config("sft", None, ["lora_task_type=SEQ_CLS"]).lora_task_type == "SEQ_CLS"  # no adapter: unused


def test_set_trainer_names_the_command_instead_of_guessing_a_key() -> None:
    # `--set trainer=dpo` was answered "unknown key 'trainer' (did you mean 'do_train'?)"
    with pytest.raises(ConfigError, match=r"chosen by the command \(`mixer train sft`\), not set; for a dpo run, "
                                          r"use `mixer train dpo`"):
        load_config("sft", None, ["trainer=dpo"])


@pytest.mark.parametrize(("given", "held"), [("false", None), ("true", "last"), ("last", "last")])
def test_resume_from_checkpoint_takes_true_and_false_as_transformers_does(given: str, held: str | None) -> None:
    # --set resume_from_checkpoint=false was "expected a string"
    assert load_config("sft", None, [f"resume_from_checkpoint={given}"]).resume_from_checkpoint == held
