"""What ``mixer train`` says while it runs (issue 24, point 17): a cheap ``--dry-run``, the run's decisions at
INFO in one block, known-benign library warnings silenced, and no ANSI codes where output is not a terminal."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mixer.train import trl_fields
from mixer.train.accel.launch import gpu_device_files
from mixer.train.config import ConfigError, load_config, to_yaml
from mixer.train.runlog import decide, routine_reward_head_report, run_output

REPO = Path(__file__).resolve().parents[2]
TINY = {"sft": "tiny-cpu", "dpo": "tiny-cpu-dpo", "rm": "tiny-cpu-rm"}


def _mixer(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``mixer ARGS`` as a user runs it with output to a file or pipe (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CI", None)  # transformers doubles its records into the root logger under CI=1
    return subprocess.run([sys.executable, "-m", "mixer", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)

# --- a dry run without the trainer stack -------------------------------------------------------------------


def test_recorded_trl_fields_are_those_of_the_installed_trl() -> None:
    recorded = json.loads(trl_fields.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert recorded["versions"] == trl_fields.installed_versions(), (
        "trl_fields.json was recorded for other trl/transformers versions: dry runs import TRL again (slow). "
        "Refresh it: python -m mixer.train.trl_fields")
    assert recorded == json.loads(json.dumps(trl_fields.record())), (
        "trl_fields.json differs from the installed TRL classes: python -m mixer.train.trl_fields")


def test_the_trl_fields_are_recorded_for_the_locked_trl_and_transformers() -> None:
    pins = dict(line.split("==", 1) for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    recorded = json.loads(trl_fields.SCHEMA_PATH.read_text(encoding="utf-8"))["versions"]
    assert recorded == {name: pins[name] for name in trl_fields.VERSIONED}, (
        "scripts/refresh_constraints.sh moved trl or transformers: python -m mixer.train.trl_fields")


@pytest.mark.parametrize("kind, sets", [
    ("sft", ["learning_rate=1e-4", "lr_scheduler_type=cosine", "max_steps=3"]),
    ("dpo", ["beta=0.2", "batching=padded", "optim=adamw_torch_fused"]),
    ("rm", ["batching=padded", "margin=true", "eval_strategy=steps"]),
    ("rloo", ["batching=padded", "num_generations=4"]),
    ("merge", ["dtype=float32"]),
])
def test_recorded_fields_resolve_a_config_as_the_trl_classes_do(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                                 sets: list[str]) -> None:
    fast = load_config(kind, None, sets, model="m", output_dir="o")
    monkeypatch.setattr(trl_fields, "_recorded", lambda: None)  # as with another TRL version: the classes
    slow = load_config(kind, None, sets, model="m", output_dir="o")
    assert to_yaml(fast) == to_yaml(slow)
    assert {k: str(owner) for k, (owner, _) in fast.owners.items()} == {
        k: str(owner) for k, (owner, _) in slow.owners.items()}
    for name in ("max_steps", "torch_compile", "num_train_epochs", "gradient_checkpointing", "report_to"):
        if name in fast.owners:
            assert getattr(fast, name) == getattr(slow, name)


def test_recorded_fields_reject_a_wrong_value_with_the_same_message(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = []
    for recorded in (True, False):
        if not recorded:
            monkeypatch.setattr(trl_fields, "_recorded", lambda: None)
        with pytest.raises(ConfigError) as e:
            load_config("sft", None, ["max_steps=many"], model="m", output_dir="o")
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "max_steps" in messages[0] and "expected an integer" in messages[0]


DRY_RUN_MODULES = """
import sys
from mixer.cli import main
sys.argv = ["mixer", "train", "sft", "-c", "tiny-cpu", "--model", "m", "--data", "d", "-o", "runs/x", "--dry-run"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print("MODULES", " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_dry_run_imports_neither_trl_nor_transformers_nor_torch(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", DRY_RUN_MODULES], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "# resolved sft config" in done.stdout and "in-process (1 process, gradient accumulation 2)" in done.stdout
    modules = set(done.stdout.rsplit("MODULES ", 1)[1].split())
    assert not modules & {"trl", "transformers", "peft", "accelerate"}
    if not gpu_device_files():  # on a GPU host torch is asked how many GPUs it sees: that needs torch
        assert "torch" not in modules


# --- a run's output: decisions at INFO in one block, no library noise, no ANSI off a terminal ----------------


@pytest.mark.parametrize("kind", ["sft", "dpo", "rm"])
def test_a_run_says_its_decisions_once_at_info_with_no_noise_in_a_log_file(tmp_path: Path, kind: str) -> None:
    from train_fixtures import tiny_assets

    a = tiny_assets()
    data = a.sft_data if kind == "sft" else a.pref_data
    done = _mixer("train", kind, "-c", TINY[kind], "--model", str(a.model), "--data", str(data), "-o", "run",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "\x1b[" not in err + done.stdout  # no ANSI codes where output is a file or a pipe
    assert err.count(f"INFO mixer train {kind}: decisions\n") == 1
    block = err.split("decisions\n", 1)[1].split("\n20", 1)[0]  # up to the next timestamped record
    for line in ("attention: sdpa (no CUDA device", "batch: 4 examples per optimizer step = ",
                 "pin_memory: off (no CUDA device", "progress bars: off (stderr is not a terminal)"):
        assert f"\n  {line}" in "\n" + block, line
    assert {"sft": "  template check: passed (checked 12 of 12 records",
            "dpo": "  reference model: a frozen copy of --model in float32",
            "rm": "  reward head: a new one-scalar `score` layer"}[kind] in block
    assert " WARNING " not in err and "Warning:" not in err  # routine runs: nothing to act on
    assert "%|" not in err and "\r" not in err  # no progress bars in a log file
    assert "LOAD REPORT" not in err and "model_init_kwargs" not in err
    assert "trained " + kind in done.stdout


def test_quiet_hides_the_decisions_and_keeps_real_problems_at_warning(tmp_path: Path) -> None:
    from train_fixtures import SFT_RECORDS, tiny_assets, write_sft_build

    a = tiny_assets()
    too_long = {"dataset": "toy", "id": "toy_long", "messages": [
        {"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Fine."}]}
    data = write_sft_build(tmp_path / "data", [*SFT_RECORDS, too_long])
    args = ["train", "sft", "-c", "tiny-cpu", "--model", str(a.model), "--data", str(data), "-o", "run", "-q",
            "--set", "check_template=false"]
    done = _mixer(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "decisions" not in done.stderr and " INFO " not in done.stderr
    assert ("WARNING dropped 1 of 13 row(s) with no token to train on: 1 whose assistant turns start past "
            "max_length=256") in done.stderr


def test_decisions_outside_a_run_are_said_at_info_at_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mixer.train"):
        decide("batching", "padded", "as configured")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, "batching: padded (as configured)")]


def test_only_the_known_benign_warnings_are_silenced_and_only_during_the_run() -> None:
    def warn(message: str, module: str) -> None:
        warnings.warn_explicit(message, FutureWarning, f"{module.replace('.', '/')}.py", 1, module=module)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with run_output("sft", progress=True):
            warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", "transformers.modeling_utils")
            warn("`something_else` is deprecated", "transformers.modeling_utils")
            warn("`is_gradient_checkpointing` is deprecated", "mymodel")  # the user's own code: shown
        warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", "transformers.modeling_utils")
    assert [str(w.message) for w in seen] == [
        "`something_else` is deprecated", "`is_gradient_checkpointing` is deprecated",
        "`is_gradient_checkpointing` is deprecated and will be removed in v6."]


REPORT = ("\x1b[1mLlamaForSequenceClassification LOAD REPORT\x1b[0m from: model\n"
          "Key            | Status     | \n---------------+------------+-\n"
          "lm_head.weight | UNEXPECTED | \nscore.weight   | MISSING    | \n\nNotes:\n- UNEXPECTED:\tcan be ignored")


def test_a_reward_models_load_report_is_routine_only_for_the_lm_and_score_heads() -> None:
    assert routine_reward_head_report(REPORT)
    other = REPORT.replace("score.weight   | MISSING", "model.layers.0.mlp.up_proj.weight | MISSING")
    assert not routine_reward_head_report(other)
    assert not routine_reward_head_report(REPORT.replace("ForSequenceClassification", "ForCausalLM"))


def test_a_load_report_that_names_other_weights_is_shown_without_ansi_off_a_terminal() -> None:
    import io

    import transformers.utils.logging  # noqa: F401 - its handler on the `transformers` logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("transformers").addHandler(handler)
    try:
        with run_output("rm", progress=False):  # pytest's stderr is not a terminal
            loader = logging.getLogger("transformers.modeling_utils")
            loader.warning(REPORT)
            loader.warning(REPORT.replace("score.weight   | MISSING", "model.norm.weight | MISSING"))
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    shown = stream.getvalue()
    assert shown.count("LOAD REPORT") == 1 and "model.norm.weight | MISSING" in shown and "\x1b[" not in shown


@pytest.mark.parametrize("sets, line", [
    ([], "batch: 8 examples per optimizer step = 2 per device x 2 gradient accumulation x 2 processes"),
    (["max_tokens_per_microbatch=512"], "batch: 8 examples per optimizer step over 2 processes, in micro-batches of "
                                        "at most 512 tokens"),
])
def test_the_batch_decision_states_the_arithmetic_the_run_uses(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               sets: list[str], line: str) -> None:
    from mixer.train.trainer import derived_kwargs

    cfg = load_config("sft", "tiny-cpu", ["effective_batch_size=8", *sets], model="m", data=str(tmp_path),
                      output_dir="o")
    with caplog.at_level(logging.INFO, logger="mixer.train"):
        derived_kwargs(cfg, n_processes=2)
    assert line in [r.getMessage() for r in caplog.records]
