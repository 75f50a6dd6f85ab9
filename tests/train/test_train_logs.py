"""What ``mixer train`` says while it runs (issue 24, point 17): a cheap ``--dry-run``, the run's decisions at
INFO in one block, known-benign library warnings silenced, and no ANSI codes where output is not a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mixer.train import trl_fields
from mixer.train.accel.launch import gpu_device_files
from mixer.train.config import ConfigError, load_config, to_yaml

# --- a dry run without the trainer stack -------------------------------------------------------------------


def test_recorded_trl_fields_are_those_of_the_installed_trl() -> None:
    recorded = json.loads(trl_fields.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert recorded["versions"] == trl_fields.installed_versions(), (
        "trl_fields.json was recorded for other trl/transformers versions: dry runs import TRL again (slow). "
        "Refresh it: python -m mixer.train.trl_fields")
    assert recorded == json.loads(json.dumps(trl_fields.record())), (
        "trl_fields.json differs from the installed TRL classes: python -m mixer.train.trl_fields")


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
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "# resolved sft config" in done.stdout and "in-process (1 process, gradient accumulation 2)" in done.stdout
    modules = set(done.stdout.rsplit("MODULES ", 1)[1].split())
    assert not modules & {"trl", "transformers", "peft", "accelerate"}
    if not gpu_device_files():  # on a GPU host torch is asked how many GPUs it sees: that needs torch
        assert "torch" not in modules
