"""One process in-process, several through ``accelerate launch``.

The same ``mixer train sft ...`` command line runs on a laptop and on an 8-GPU node: with more than one
process it re-executes itself as ``accelerate launch --config_file <preset>.yaml --num_processes N -m
mixer.train.run <same arguments>``; each launched process sees ``LOCAL_RANK`` and trains in-process.
One process on a host with several GPUs re-executes itself with ``CUDA_VISIBLE_DEVICES`` pinned to one
GPU (otherwise the Trainer wraps the model in ``nn.DataParallel``, which TRL refuses). ``--dry-run``
prints the command without running it, after the same checks (DeepSpeed installed for a DeepSpeed
preset, the batch arithmetic).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mixer.train.accel.batch import gradient_accumulation_steps
from mixer.train.accel.host import world_size
from mixer.train.config import RECIPES_DIR, ConfigError, RunConfig
from mixer.train.deps import MissingDependencyError

ACCELERATE_PRESETS = ("ddp", "zero3", "fsdp2")
ACCELERATE_DIR = RECIPES_DIR / "accelerate"


def gpu_device_files() -> bool:
    """Whether this host has GPU device files torch could use (``/dev/nvidia*``: CUDA; ``/dev/kfd``: ROCm,
    which torch also reports as CUDA). Without them torch cannot see a GPU, so asking it (importing torch,
    seconds) is skipped: a dry run on a CPU host stays cheap."""
    dev = Path("/dev")
    return (dev / "kfd").exists() or any(dev.glob("nvidia[0-9]*")) or not dev.is_dir()


def detect_gpu_count() -> int:
    """CUDA devices visible to this process; 0 without torch or CUDA (tests monkeypatch this)."""
    from mixer.train.deps import cuda_available

    if not gpu_device_files() or not cuda_available():
        return 0
    import torch

    return int(torch.cuda.device_count())


def inside_launcher() -> bool:
    """True in a process started by ``accelerate launch``/torchrun (which set LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def resolve_accelerate_config(name: str) -> Path:
    """A preset name (``ddp``/``zero3``/``fsdp2``, shipped with mixer) or a path to an accelerate YAML."""
    if name in ACCELERATE_PRESETS:
        return ACCELERATE_DIR / f"{name}.yaml"
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"accelerate_config must be one of {', '.join(ACCELERATE_PRESETS)} or a file; {name!r}")
    return path


def check_launcher_dependencies(config_file: Path) -> None:
    """Fail before launching when the accelerate config needs a package that is not installed.

    ``accelerate launch`` with a DeepSpeed config and no ``deepspeed`` dies with a traceback in every
    rank; say it once, with the install line, and exit 2 (in ``--dry-run`` too).
    """
    import yaml

    try:
        settings = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"accelerate config {config_file}: cannot read it: {e}") from e
    if not isinstance(settings, dict):
        raise ConfigError(f"accelerate config {config_file}: expected a mapping")
    if str(settings.get("distributed_type", "")).upper() == "DEEPSPEED" and importlib.util.find_spec(
        "deepspeed"
    ) is None:
        raise MissingDependencyError(
            f"accelerate config {config_file} uses DeepSpeed, which is not installed: pip install 'mixer[deepspeed]' "
            "(needs a CUDA toolkit matching torch), or use the torch-native FSDP2 preset: "
            "--accelerate-config fsdp2"
        )


def first_visible_gpu() -> str:
    """The GPU a one-process run is pinned to: the first of ``CUDA_VISIBLE_DEVICES``, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    return visible[0].strip() or "0"


@dataclass
class LaunchPlan:
    """How a command will run: ``command`` is None for in-process."""

    num_processes: int
    gradient_accumulation_steps: int
    command: list[str] | None
    env: dict[str, str] = field(default_factory=dict)
    #: what the user asked for that this plan does not do, said before the run starts
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.command is None:
            return f"in-process (1 process, gradient accumulation {self.gradient_accumulation_steps})"
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{prefix} {shlex.join(self.command)}" if prefix else shlex.join(self.command)


def _accelerate_executable() -> list[str]:
    """``accelerate`` next to this interpreter if present (same virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name("accelerate")
    if beside.is_file():
        return [str(beside), "launch"]
    found = shutil.which("accelerate")
    return [found or "accelerate", "launch"]


def plan_launch(
    kind: str,
    cfg: RunConfig,
    forwarded_args: list[str],
    num_processes: int | None = None,
    accelerate_config: str | None = None,
) -> LaunchPlan:
    """Decide processes and command; checks the effective batch for that many processes up front."""
    if inside_launcher():
        n = world_size()
        return LaunchPlan(n, _accumulation(cfg, n), None)
    gpus = detect_gpu_count()
    # `is not None`: --num-processes 0 (or num_processes: 0) is an error, not "the default"
    n = next((v for v in (num_processes, cfg.num_processes) if v is not None), max(1, gpus))
    if n < 1:
        raise ConfigError(f"num_processes must be positive, got {n}")
    accumulation = _accumulation(cfg, n)
    if n == 1:
        # an accelerate preset shapes multi-process runs only; one asked for by name on the command line
        # must not be dropped silently (FSDP2/ZeRO-3 on one GPU is not what this run will do)
        ignored = [f"--accelerate-config {accelerate_config} is not used: one process runs without accelerate "
                   "(presets apply to runs of 2+ processes)"] if accelerate_config else []
        if gpus > 1:  # pin one GPU, else the Trainer wraps the model in nn.DataParallel (TRL refuses it)
            command = [sys.executable, "-m", "mixer.train.run", kind, *forwarded_args]
            return LaunchPlan(1, accumulation, command, {"CUDA_VISIBLE_DEVICES": first_visible_gpu()}, ignored)
        return LaunchPlan(1, accumulation, None, warnings=ignored)
    if gpus and n > gpus:
        raise ConfigError(f"num_processes {n} is more than the {gpus} GPU(s) visible on this host")
    config_file = resolve_accelerate_config(accelerate_config or cfg.accelerate_config)
    check_launcher_dependencies(config_file)
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


def _accumulation(cfg: RunConfig, n: int) -> int:
    return gradient_accumulation_steps(cfg.effective_batch_size, cfg.per_device_train_batch_size, n)


def run_launch(plan: LaunchPlan) -> int:
    """Run the ``accelerate launch`` command, streaming its output; returns its exit code."""
    assert plan.command is not None
    return subprocess.call(plan.command, env={**os.environ, **plan.env})
