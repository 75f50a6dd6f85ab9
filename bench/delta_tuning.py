"""Trainable parameters and CPU step time of each delta-tuning method (issue 21 point 4), on the tiny
random Llama the trainer tests build; prints a markdown table.

    python bench/delta_tuning.py [--steps 6]

Step times on a 2-core CPU with a ~0.2M-parameter model say little about a 7B on a GPU; the parameter
counts are the point: what each method trains, relative to the model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "train")]

from train_fixtures import tiny_assets  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from mixer.train.config import load_config  # noqa: E402
from mixer.train.trainer import build_trainer  # noqa: E402

METHODS = ["full", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning"]


class _StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN201
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN201
        self.times.append(time.perf_counter() - self._t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    steps = ap.parse_args().steps
    a = tiny_assets()
    print("| method | trainable parameters | share of the model | median step (ms, CPU) |")
    print("|---|---:|---:|---:|")
    for method in METHODS:
        sets = [f"max_steps={steps}", "save_strategy=no", "lora_r=8", "lora_alpha=16", "num_virtual_tokens=8"]
        if method != "full":
            sets.append(f"peft_method={method}")
        if method in ("prompt_tuning", "prefix_tuning"):
            sets.append("batching=padded")
        with tempfile.TemporaryDirectory() as out:
            cfg = load_config("sft", REPO / "train" / "tiny-cpu.yaml", sets, model=str(a.model), data=str(a.sft_data),
                              output_dir=out)
            timer = _StepTimes()
            trainer = build_trainer(cfg, callbacks=[timer])
            params = list(trainer.model.parameters())
            trainable = sum(p.numel() for p in params if p.requires_grad)
            total = sum(p.numel() for p in params)
            trainer.train()
        times = sorted(timer.times[1:] or timer.times)  # the first step pays for warm-up
        print(f"| {method} | {trainable:,} | {trainable / total:.2%} | {1000 * times[len(times) // 2]:.0f} |")


if __name__ == "__main__":
    main()
