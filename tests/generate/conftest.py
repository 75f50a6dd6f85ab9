"""Fixtures shared by the generate tests: one tiny reward model per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_rm import separable_pairs
from train_fixtures import tiny_assets, write_preference_build

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) reward model: the random Llama with a score head, trained a few steps on toy pairs."""
    from mixer.train.config import load_config
    from mixer.train.trainer import run

    root = tmp_path_factory.mktemp("gen-rm")
    data = write_preference_build(root / "pairs", separable_pairs())
    cfg = load_config("rm", REPO / "train" / "tiny-cpu-rm.yaml", ["max_steps=4", "eval_size=0"],
                      model=str(tiny_assets().model), data=str(data), output_dir=str(root / "rm"))
    run(cfg)
    return root / "rm"
