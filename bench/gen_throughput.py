"""Output tokens/s of generation: transformers' continuous batching vs padded ``generate`` (issue 20).

    python bench/gen_throughput.py --model-size 1b 7b --json OUT/generate.json         # on one GPU
    python bench/gen_throughput.py --model-size tiny --prompts 16 --new-tokens 16 --samples 2   # CPU plumbing

A random-init Llama of each shape (``bench/train_throughput.py``'s SHAPES: 7b = Llama-2-7B, 1b = TinyLlama
1.1B; bf16 on a GPU, fp32 on CPU), ``--prompts`` random prompts (token ids; lengths log-normal around
``--prompt-median`` tokens, at most ``--prompt-max``, seeded), ``--samples`` sampled replies each of exactly
``--new-tokens`` tokens (end-of-sequence disabled, so both modes produce the same number of tokens):

- ``continuous``: ``model.generate_batch`` (paged attention; its CUDA-graph warm-up counted in the time),
  every prompt in one call, ``num_return_sequences`` forked per prompt, as ``mixer generate --batching
  continuous`` runs it;
- ``padded``: ``model.generate`` over batches of ``--padded-batch`` prompts, left-padded, with
  ``num_return_sequences``: the usual way to batch ``generate``.

Reports output tokens/s per mode and the ratio (issue 20's goal: continuous >= 3x padded; anchor: vLLM about
6,300 output tokens/s per H100 for an 8B model). A mode that would run past the part's deadline
(``GC_PART_DEADLINE``, set by ``gpu_check.sh``) stops between batches: its tokens/s is over what it finished,
marked ``partial``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import SHAPES  # noqa: E402 - the bench folder's own module


def prompt_lengths(n: int, median: int, longest: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [max(4, min(longest, int(round(math.exp(rng.gauss(math.log(median), 0.6)))))) for _ in range(n)]


def build(shape: dict[str, int], device: Any, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False, attn_implementation="sdpa")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def deadline_left() -> float:
    deadline = os.environ.get("GC_PART_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def run_continuous(model: Any, prompts: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                              num_return_sequences=args.samples, eos_token_id=-1, pad_token_id=0)
    cb: dict[str, Any] = {"seed": args.seed}
    if model.device.type != "cuda":  # off a GPU the paged cache cannot be sized from free memory
        pages = -(-(max(map(len, prompts)) + args.new_tokens) // 256)
        cb.update(num_blocks=len(prompts) * args.samples * pages + 1, max_batch_tokens=512)
    sync()
    t0 = time.perf_counter()
    out = model.generate_batch(inputs=prompts, generation_config=config, warmup=model.device.type == "cuda",
                               continuous_batching_config=ContinuousBatchingConfig(**cb))
    sync()
    seconds = time.perf_counter() - t0
    tokens = sum(len(r.generated_tokens) for r in out.values())
    failed = sum(r.error is not None for r in out.values())
    return {"mode": "continuous", "seconds": round(seconds, 3), "output_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1), "requests": len(out), "failed": failed,
            "prompts_done": len(prompts), "partial": False, "includes_warmup": True}


def run_padded(model: Any, prompts: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(args.seed)
    tokens = done = 0
    seconds = 0.0
    partial = False
    for start in range(0, len(prompts), args.padded_batch):
        if done and deadline_left() < 2 * seconds / max(1, start // args.padded_batch) + 15:
            partial = True
            break
        batch = prompts[start:start + args.padded_batch]
        width = max(map(len, batch))
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(batch):  # left padding: every prompt ends where generation starts
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, num_return_sequences=args.samples,
                                 pad_token_id=0, eos_token_id=None)
        sync()
        seconds += time.perf_counter() - t0
        tokens += (out.shape[1] - width) * out.shape[0]
        done += len(batch)
    return {"mode": "padded", "seconds": round(seconds, 3), "output_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None, "prompts_done": done,
            "partial": partial, "batch_prompts": args.padded_batch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-size", nargs="+", choices=list(SHAPES), default=["1b", "7b"])
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--prompt-median", type=int, default=128)
    ap.add_argument("--prompt-max", type=int, default=512)
    ap.add_argument("--padded-batch", type=int, default=32, help="prompts per padded generate call")
    ap.add_argument("--modes", nargs="+", choices=["continuous", "padded"], default=["continuous", "padded"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import torch
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": " ".join(sys.argv),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu {platform.machine()}",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"}, "results": []}
    for size in args.model_size:
        shape = SHAPES[size]
        lengths = prompt_lengths(args.prompts, args.prompt_median, args.prompt_max, args.seed)
        rng = random.Random(args.seed + 1)
        prompts = [[rng.randrange(3, shape["vocab_size"]) for _ in range(n)] for n in lengths]
        model = build(shape, device, args.seed)
        row: dict[str, Any] = {"model_size": size, "prompt_tokens": sum(lengths)}
        for mode in args.modes:
            try:
                row[mode] = (run_continuous if mode == "continuous" else run_padded)(model, prompts, args)
            except Exception as e:  # noqa: BLE001 - a failing mode is reported, the other still runs
                row[mode] = {"mode": mode, "status": f"FAILED {type(e).__name__}: {str(e)[:300]}"}
            print(f"{size:5} {mode:11} {json.dumps(row[mode])}", flush=True)
        c, p = row.get("continuous", {}).get("tokens_per_s"), row.get("padded", {}).get("tokens_per_s")
        row["speedup_continuous_vs_padded"] = round(c / p, 2) if c and p else None
        report["results"].append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for row in report["results"]:
        print(f"{row['model_size']}: continuous vs padded {row['speedup_continuous_vs_padded']}x (goal >= 3x)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
