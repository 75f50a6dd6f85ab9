"""The ``ablation`` part of bench/gpu_check.sh: issue 21's one-GPU speed levers, each on its own against the
baseline (``auto`` attention, packed bins of 4,096 tokens, bf16 compute copies of the fp32 master weights, full
gradient checkpointing), through ``mixer train``'s own trainer (:func:`gpu_check.train_once`).

    python bench/gpu_ablation.py        (gpu_check.sh runs it when PARTS names it)

Variants (one lever changed each; a lever whose package is missing is reported as skipped, not failed):

- ``baseline``: packed + bf16 copies;
- ``padding_free``: the same examples per step without packing (the reference for the next one);
- ``tokens16k``: padding-free, micro-batches of at most 16,384 tokens (``max_tokens_per_microbatch``), same
  examples per optimizer step;
- ``liger``: ``use_liger_kernel: true`` (needs liger-kernel);
- ``compile``: ``compile: regional`` (its compile time is in the row, and excluded from tokens/s by the warm-up);
- ``ckpt_every_other``: ``gradient_checkpointing_layers: every_other``;
- ``fa3``/``fa4``: the FlashAttention 3/4 kernel when transformers reports it usable.

Writes ``ablation.json`` to ``$OUT`` and a copy to ``$RESULTS_DIR`` (default ``bench/results/``; the CPU smoke
mode writes under ``$OUT``) named ``ablation-<date>-<gpu>-<size>.json``; ``gpu_check.py summary`` prints its rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import gpu_check as gc_

#: name -> (overrides on top of the baseline's, the package it needs or None)
#: sizes: packed steps are AB_BINS bins of max_length (4 x 4,096 = 16k tokens, one micro-batch); the
#: padding-free pair takes AB_EXAMPLES examples per step (~350 tokens each: ~11k-16k tokens), in micro-batches of
#: PDB examples or of at most 16k tokens
BINS = int(os.environ.get("AB_BINS", "4"))
EXAMPLES = int(os.environ.get("AB_EXAMPLES", "32"))
STEPS = int(os.environ.get("AB_STEPS", "5"))  # the first 2 are warm-up (and compilation), not timed
PADDING_FREE = ["batching=padding_free", f"per_device_train_batch_size={gc_.PDB}", f"effective_batch_size={EXAMPLES}"]
VARIANTS: dict[str, tuple[list[str], str | None]] = {
    "baseline": ([], None),
    "padding_free": (PADDING_FREE, None),
    "tokens16k": ([*PADDING_FREE, "max_tokens_per_microbatch=16384"], None),
    "liger": (["use_liger_kernel=true"], "liger_kernel"),
    "compile": (["compile=regional"], None),
    "ckpt_every_other": (["gradient_checkpointing_layers=every_other"], None),
    "fa3": (["attn_implementation=flash_attention_3"], "flash_attention_3"),
    "fa4": (["attn_implementation=flash_attention_4"], "flash_attention_4"),
}


def _missing(need: str | None) -> str | None:
    """Why a variant cannot run here (its package is not installed or not usable), else None."""
    if need is None:
        return None
    if need.startswith("flash_attention"):
        if not gc_.cuda():
            return "skipped: FlashAttention needs CUDA"
        from mixer.train.accel.attention import flash_available

        return None if flash_available(need) else f"skipped: {need} not installed"
    if not gc_.cuda():
        return "skipped: Liger's Triton kernels need CUDA"
    return None if importlib.util.find_spec(need) else f"skipped: {need} not installed (pip install 'mixer[liger]')"


def stage_ablation() -> None:
    """Run every variant (as the deadline allows) and write ablation.json (+ the copy under bench/results/)."""
    gpu = gc_.cuda()
    max_len = 4096 if gpu else 256
    per_variant = {"7b": 40, "3b": 30, "1b": 20}.get(gc_.SIZE, 10)  # load + 5 steps of ~16k tokens
    deadline = float(os.environ.get("GC_PART_DEADLINE", "inf"))
    tokens = 16384 if gpu else 256
    results: list[dict[str, Any]] = []
    for name, (extra, need) in VARIANTS.items():
        skip = _missing(need)
        if skip is None and time.time() + per_variant > deadline:
            skip = "skipped: part time limit"
        if skip:
            results.append({"variant": name, "status": skip})
            continue
        extra = [e.replace("=16384", f"={tokens}") for e in extra]
        overrides = ["attn_implementation=auto", "batching=packed", "mixed_precision=auto",
                     f"per_device_train_batch_size={BINS}", f"effective_batch_size={BINS}",
                     f"max_steps={STEPS}", "learning_rate=2e-5", *gc_.common_overrides(max_len)]
        keys = {e.split("=", 1)[0] for e in extra}
        overrides = [o for o in overrides if o.split("=", 1)[0] not in keys] + extra
        if not gpu:
            overrides.append("check_memory=false")
        results.append(gc_.train_once("sft", f"ablation-{name}", overrides, gc_.WORK / "sft", 6))
        results[-1]["variant"] = name
        results[-1]["overrides"] = extra
        _write(results)
    _write(results)


def _write(results: list[dict[str, Any]]) -> None:
    env = gc_.read("env.json") or {}
    record = {"date": time.strftime("%Y-%m-%d"), "gpu": (env.get("gpu") or {}).get("name", "cpu"),
              "model_size": gc_.SIZE, "packed_bins_per_step": BINS, "padding_free_examples_per_step": EXAMPLES,
              "per_device_batch": gc_.PDB, "steps": STEPS,
              "results": results}
    gc_.write("ablation.json", record)
    default = gc_.OUT / "results" if not gc_.cuda() else gc_.REPO / "bench" / "results"
    folder = Path(os.environ.get("RESULTS_DIR", str(default)))
    folder.mkdir(parents=True, exist_ok=True)
    gpu = "".join(c if c.isalnum() else "-" for c in record["gpu"]).strip("-").lower()
    (folder / f"ablation-{record['date']}-{gpu}-{gc_.SIZE}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    stage_ablation()
