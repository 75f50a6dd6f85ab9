"""One process in-process, several through ``accelerate launch``.

The same ``mixer train sft ...`` command line runs on a laptop and on an 8-GPU node: with more than one
process it re-executes itself as ``accelerate launch --config_file train/accelerate/<cfg>.yaml
--num_processes N -m mixer.train.run <same arguments>``; each launched process sees ``LOCAL_RANK`` and
trains in-process. ``--dry-run`` prints that command without running it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mixer.errors import MixerError
from mixer.train.batch import gradient_accumulation_steps
from mixer.train.config import BaseRunConfig, ConfigError

ACCELERATE_PRESETS = ("ddp", "zero3", "fsdp2")

#: The repository's ``train/`` directory (recipes and accelerate configs) in a source checkout.
REPO_TRAIN_DIR = Path(__file__).resolve().parents[2] / "train"


def detect_gpu_count() -> int:
    """CUDA devices visible to this process; 0 without torch or CUDA (tests monkeypatch this)."""
    from mixer.train.deps import cuda_available

    if not cuda_available():
        return 0
    import torch

    return int(torch.cuda.device_count())


def inside_launcher() -> bool:
    """True in a process started by ``accelerate launch``/torchrun (which set LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def resolve_accelerate_config(name: str) -> Path:
    """A preset name (``ddp``/``zero3``/``fsdp2``: ``train/accelerate/<name>.yaml`` under the working
    directory, else the source checkout) or a path to an accelerate YAML."""
    if name in ACCELERATE_PRESETS:
        for root in (Path.cwd() / "train", REPO_TRAIN_DIR):
            candidate = root / "accelerate" / f"{name}.yaml"
            if candidate.is_file():
                return candidate
        raise MixerError(f"accelerate preset {name!r}: train/accelerate/{name}.yaml not found (run from the repo)")
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"accelerate_config must be one of {', '.join(ACCELERATE_PRESETS)} or a file; {name!r}")
    return path


@dataclass
class LaunchPlan:
    """How a command will run: ``command`` is None for in-process."""

    num_processes: int
    gradient_accumulation_steps: int
    command: list[str] | None

    def describe(self) -> str:
        if self.command is None:
            return f"in-process (1 process, gradient accumulation {self.gradient_accumulation_steps})"
        return shlex.join(self.command)


def _accelerate_executable() -> list[str]:
    """``accelerate`` next to this interpreter if present (same virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name("accelerate")
    if beside.is_file():
        return [str(beside), "launch"]
    found = shutil.which("accelerate")
    return [found or "accelerate", "launch"]


def plan_launch(
    kind: str,
    cfg: BaseRunConfig,
    forwarded_args: list[str],
    num_processes: int | None = None,
    accelerate_config: str | None = None,
) -> LaunchPlan:
    """Decide processes and command; checks the effective batch for that many processes up front."""
    if inside_launcher():
        n = int(os.environ.get("WORLD_SIZE", "1"))
        return LaunchPlan(n, _accumulation(cfg, n), None)
    n = num_processes or cfg.num_processes or max(1, detect_gpu_count())
    if n < 1:
        raise ConfigError(f"num_processes must be positive, got {n}")
    accumulation = _accumulation(cfg, n)
    if n == 1:
        return LaunchPlan(1, accumulation, None)
    config_file = resolve_accelerate_config(accelerate_config or cfg.accelerate_config)
    command = [
        *_accelerate_executable(),
        "--config_file",
        str(config_file),
        "--num_processes",
        str(n),
        "-m",
        "mixer.train.run",
        kind,
        *forwarded_args,
    ]
    return LaunchPlan(n, accumulation, command)


def _accumulation(cfg: BaseRunConfig, n: int) -> int:
    return gradient_accumulation_steps(cfg.effective_batch_size, cfg.per_device_train_batch_size, n)


def run_launch(plan: LaunchPlan) -> int:
    """Run the ``accelerate launch`` command, streaming its output; returns its exit code."""
    assert plan.command is not None
    return subprocess.call(plan.command)
