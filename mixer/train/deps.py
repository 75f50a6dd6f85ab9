"""Optional-dependency guards.

The trainer needs the ``[train]`` extra (torch, transformers, trl, peft, accelerate). ``mixer build``
does not, so these imports happen only when a training command runs, and a missing package becomes a
``MixerError`` with the install line instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.util

from mixer.core.errors import MixerError

TRAIN_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate")

INSTALL_HINT = (
    "pip install 'mixer[train]' (install torch for your CPU/CUDA first: https://pytorch.org/get-started/)"
)


class MissingDependencyError(MixerError):
    """A package of the ``[train]`` extra (or bitsandbytes for QLoRA) is not installed."""


def require_train_deps(packages: tuple[str, ...] = TRAIN_PACKAGES) -> None:
    """Raise ``MissingDependencyError`` naming every missing package and the install command."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingDependencyError(f"training needs {', '.join(missing)}: {INSTALL_HINT}")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False when torch is missing)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
