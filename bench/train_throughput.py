"""Trainer throughput: padded vs padding-free vs packed batches, SDPA vs FlashAttention.

Measures, per (attention, batching) pair, the training tokens per second counting only real
(non-padding) tokens, the padding fraction of the batches, peak GPU memory and model FLOPs
utilisation (MFU), with a forward + backward + AdamW step exactly as the trainer runs it (TRL's own
``DataCollatorForLanguageModeling`` builds the padding-free batches, ``pack_dataset`` the bfd bins).

On a GPU host it uses a random ~1.1B Llama-shaped model (TinyLlama shape: 22 layers, hidden 2048,
GQA 32/4 heads, FFN 5632) in bf16; without a GPU it says so and runs a tiny model on CPU, which checks
the benchmark end to end but whose figures say nothing about GPU speed.

Sequence lengths come from a build's ``n_tokens`` column (``--data OUT``; the sample mixture is
resampled to ``--examples`` rows) or, by default, from a synthetic log-normal with a long tail
(median 350 tokens, clipped to ``--max-length``), standing in for the Tulu V2 length distribution.
Token ids are random: throughput does not depend on them.

    python bench/train_throughput.py                      # auto: ~1B on GPU, tiny on CPU
    python bench/train_throughput.py --data out/tulu-v2 --max-length 4096 --json bench/train.json

MFU = (6 * N * T + 6 * L * d * sum(s_i^2)) / (time * peak), N = parameters excluding the input
embedding, T = real tokens, L/d = layers/hidden size, s_i = length of each attended sequence (causal
attention, forward + backward); peak = dense bf16 of the GPU (H100/H200 SXM: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12}


@dataclass
class Result:
    attention: str
    batching: str
    tokens_per_s: float
    padding_fraction: float
    peak_memory_gib: float | None
    mfu: float | None
    steps: int
    real_tokens: int


def model_shape(size: str) -> dict[str, int]:
    if size == "1b":  # TinyLlama-1.1B shape
        return {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
                "num_key_value_heads": 4, "vocab_size": 32000}
    return {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 512}


def sample_lengths(n: int, max_length: int, data: str | None, seed: int) -> list[int]:
    rng = random.Random(seed)
    if data:
        import pyarrow.parquet as pq

        from mixer.train.data import resolve_parquet_files

        pool = [int(x) for f in resolve_parquet_files(data) for x in pq.read_table(f, columns=["n_tokens"])
                .column("n_tokens").to_pylist()]
        lengths = [rng.choice(pool) for _ in range(n)]
    else:
        lengths = [int(math.exp(rng.gauss(math.log(350), 1.0))) for _ in range(n)]
    return [min(max(x, 16), max_length) for x in lengths]


def make_batches(mode: str, lengths: list[int], batch_size: int, max_length: int, vocab: int, seed: int) -> list:
    """Collated batches for one epoch over ``lengths`` (random ids), built by TRL's collator."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rng = random.Random(seed)
    rows = [{"input_ids": [rng.randrange(3, vocab) for _ in range(n)]} for n in lengths]
    if mode == "packed":
        from datasets import Dataset
        from trl.data_utils import pack_dataset

        packed = pack_dataset(Dataset.from_list(rows), max_length, "bfd")
        rows = list(packed)
        batch_size = 1
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=mode != "padded")
    return [collator(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def attended_lengths(batch: dict[str, Any]) -> list[int]:
    if "position_ids" in batch and "attention_mask" not in batch:
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["position_ids"].shape[1]]
        return [b - a for a, b in zip(starts, starts[1:], strict=False) if b > a]
    return batch["attention_mask"].sum(dim=1).tolist()


def run_one(model: Any, batches: list, device: Any, steps: int, warmup: int, peak: float | None,
            n_params: int, layers: int, hidden: int) -> tuple[float, float, float | None, float | None, int]:
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=device.type == "cuda")
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    real = total = 0
    flops = 0.0
    elapsed = 0.0
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            lens = attended_lengths(batch)
            n_real = sum(lens)
            real += n_real
            total += batch["input_ids"].numel()
            flops += 6 * n_params * n_real + 6 * layers * hidden * sum(s * s for s in lens)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    mfu = flops / elapsed / peak if peak else None
    return real / elapsed, 1 - real / total, mem, mfu, real


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-size", choices=["auto", "tiny", "1b"], default="auto")
    ap.add_argument("--data", help="a mixer build dir: use its n_tokens length distribution")
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default 2048 GPU, 256 CPU)")
    ap.add_argument("--max-length", type=int, default=None, help="default 4096 GPU, 512 CPU")
    ap.add_argument("--batch-size", type=int, default=None, help="examples per padded/padding-free step")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--attention", default="auto", help="comma list of sdpa,flash_attention_2,flash_attention_3")
    ap.add_argument("--modes", default="padded,padding_free,packed")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import importlib.util

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    size = args.model_size if args.model_size != "auto" else ("1b" if gpu else "tiny")
    max_length = args.max_length or (4096 if gpu else 512)
    n_examples = args.examples or (2048 if gpu else 256)
    batch_size = args.batch_size or (8 if gpu else 8)
    steps = args.steps or (20 if gpu else 10)
    gpu_name = torch.cuda.get_device_name() if gpu else None
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if gpu_name and k in gpu_name), None)
    if not gpu:
        print("NOTE: no GPU found: running the tiny model on CPU in fp32. This checks that the benchmark runs; "
              "its figures say nothing about GPU throughput, and MFU is not computed.", file=sys.stderr)
    if args.attention == "auto":
        attns = ["sdpa"]
        if gpu and importlib.util.find_spec("flash_attn") is not None:
            attns.append("flash_attention_2")
        if gpu and importlib.util.find_spec("flash_attn_interface") is not None:
            attns.append("flash_attention_3")
    else:
        attns = args.attention.split(",")

    shape = model_shape(size)
    lengths = sample_lengths(n_examples, max_length, args.data, args.seed)
    results: list[Result] = []
    for attn in attns:
        torch.manual_seed(args.seed)
        config = LlamaConfig(**shape, max_position_embeddings=max(max_length, 512), attn_implementation=attn,
                             tie_word_embeddings=False)
        model = LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16 if gpu else torch.float32)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        n_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
        for mode in args.modes.split(","):
            batches = make_batches(mode, lengths, batch_size, max_length, shape["vocab_size"], args.seed)
            random.Random(args.seed).shuffle(batches)
            tps, pad, mem, mfu, real = run_one(model, batches, device, steps, args.warmup, peak, n_params,
                                               shape["num_hidden_layers"], shape["hidden_size"])
            results.append(Result(attn, mode, tps, pad, mem, mfu, steps, real))
            print(f"{attn:18s} {mode:13s} {tps:12.0f} tok/s  padding {pad:6.1%}  "
                  f"mem {mem if mem is None else round(mem, 2)} GiB  MFU {mfu if mfu is None else round(mfu, 3)}",
                  file=sys.stderr)
        del model
        if gpu:
            torch.cuda.empty_cache()

    base = {r.attention: r.tokens_per_s for r in results if r.batching == "padded"}
    sdpa_padded = base.get("sdpa")
    print(f"\ndevice: {gpu_name or 'CPU (no GPU)'}; model: {size} ({shape['num_hidden_layers']} layers, hidden "
          f"{shape['hidden_size']}); max_length {max_length}; {n_examples} examples, lengths "
          f"{'from ' + args.data if args.data else 'synthetic log-normal'} (mean {sum(lengths) / len(lengths):.0f}); "
          f"batch {batch_size} examples (packed: 1 bin of {max_length}); {steps} timed steps\n")
    print("| attention | batching | tokens/s (real) | vs padded SDPA | padding | peak GPU mem | MFU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        speedup = f"{r.tokens_per_s / sdpa_padded:.2f}x" if sdpa_padded else "-"
        mem = f"{r.peak_memory_gib:.1f} GiB" if r.peak_memory_gib is not None else "n/a (CPU)"
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "n/a"
        print(f"| {r.attention} | {r.batching} | {r.tokens_per_s:,.0f} | {speedup} | {r.padding_fraction:.1%} "
              f"| {mem} | {mfu} |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": gpu_name or "cpu", "model": size, "max_length": max_length, "examples": n_examples,
            "batch_size": batch_size, "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
