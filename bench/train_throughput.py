"""Trainer throughput: padded vs padding-free vs packed batches, per attention kernel.

Measures, per (attention, batching) pair, training tokens per second counting only real (non-padding)
tokens, the padding fraction, peak GPU memory and model FLOPs utilisation (MFU), for the step the
trainer runs: TRL's ``DataCollatorForLanguageModeling`` builds the batches (``pack_dataset`` the bfd
bins), the model is called with ``use_cache=False`` (so padding-free rows are masked per sequence) and
TRL's fused LM head (``add_fused_lm_head``: log-probs in tiles, no ``[T, vocab]`` logits), gradient
checkpointing on as in the recipes, fused AdamW, and the weights as ``--master-weights`` says: ``copy``
(the default, what one-process ``mixer train`` does for full fine-tuning: fp32 master weights, bf16
compute copies cast once per optimizer step by ``mixer.train.accel.precision``), ``fp32`` (fp32 weights with
bf16 autocast, ``mixed_precision: autocast``) or ``bf16`` (pure bf16 weights, which lose small updates).

Shapes: ``7b`` (Llama-2-7B: 32 layers, hidden 4096, MHA 32 heads, FFN 11008), ``1b`` (TinyLlama-1.1B:
22 layers, hidden 2048, GQA 32/4, FFN 5632), ``tiny`` (CPU check). On a GPU the model is built on the
GPU directly in its training dtype (no fp32 CPU copy first). Without a GPU it says so and runs the tiny
model on CPU, which checks the benchmark end to end but whose figures say nothing about GPU speed.

Attention kernels: ``auto`` = SDPA plus what ``mixer train``'s ``auto`` picks on this host
(FlashAttention 3/2/4 when transformers reports it usable, else PyTorch's ``torch_varlen``).

Sequence lengths come from a build's ``n_tokens`` column (``--data OUT``) or, by default, from a
synthetic log-normal (median 350 tokens, clipped to ``--max-length``), standing in for the Tulu V2
length distribution. Token ids are random: throughput does not depend on them.

    python bench/train_throughput.py                      # auto: 1b on GPU, tiny on CPU
    python bench/train_throughput.py --model-size 7b --max-length 4096 --json bench/train.json

MFU = (6 * N * T + 6 * L * d * sum(s_i^2)) / (time * peak), N = parameters excluding the input
embedding, T = real tokens, L/d = layers/hidden size, s_i = length of each attended sequence (causal
attention, forward + backward; recomputation by gradient checkpointing is not counted, as usual);
peak = dense bf16 of the GPU by its datasheet (H100/H200 SXM 989, H100 NVL/H200 NVL 835, H100 PCIe
756 TFLOP/s).
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

#: Dense bf16 peak by GPU name, most specific first (datasheets; sparse figures are twice these).
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("GH200", 989e12), ("H100", 989e12),
    ("H200", 989e12), ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12),
)

SHAPES: dict[str, dict[str, int]] = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32000},
    # a ~3B Llama shape (Llama 3.2 3B's layers with Llama 2's vocabulary): what an 80 GB card fits for full
    # fine-tuning with fp32 master weights and AdamW (16 bytes per parameter: ~51 GiB for 3.2B)
    "3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
           "num_key_value_heads": 8, "vocab_size": 32000},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512},
}


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
    first_loss: float
    last_loss: float


def peak_flops(gpu_name: str | None) -> float | None:
    """Dense bf16 peak of the named GPU, or None when unknown."""
    if not gpu_name:
        return None
    return next((v for k, v in PEAK_BF16_FLOPS if k in gpu_name), None)


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

        rows = list(pack_dataset(Dataset.from_list(rows), max_length, "bfd"))
        batch_size = 1
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=mode != "padded")
    return [collator(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def attended_lengths(batch: dict[str, Any]) -> list[int]:
    """Lengths of the sequences attention runs over (one per example, or per packed document)."""
    if "cu_seq_lens_q" in batch:
        cu = batch["cu_seq_lens_q"].tolist()
        return [b - a for a, b in zip(cu, cu[1:], strict=False) if b > a]
    return batch["attention_mask"].sum(dim=1).tolist()


def attention_kernels(requested: str, gpu: bool) -> list[str]:
    """SDPA plus what mixer's ``auto`` picks here, or the given comma list."""
    if requested != "auto":
        return requested.split(",")
    from mixer.train.accel.attention import choose_attention

    best = choose_attention("auto", cuda=gpu).implementation
    return ["sdpa"] + ([best] if best != "sdpa" else [])


def build_model(shape: dict[str, int], attn: str, max_length: int, device: Any, master_bf16: bool, seed: int) -> Any:
    """A random-init Llama of ``shape`` built directly on ``device`` in its training dtype."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mixer.train.accel.attention import TORCH_VARLEN, register_torch_varlen

    if attn == TORCH_VARLEN:
        register_torch_varlen()
    torch.manual_seed(seed)
    config = LlamaConfig(**shape, max_position_embeddings=max(max_length, 512), tie_word_embeddings=False,
                         attn_implementation=attn)
    dtype = torch.bfloat16 if (master_bf16 and device.type == "cuda") else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def compute_copies_for(model: Any, master_weights: str) -> Any:
    """mixer's bf16 compute copies for ``--master-weights copy`` (None otherwise); the caller refreshes
    them after each optimizer step, as the trainer's callback does."""
    if master_weights != "copy":
        return None
    import torch

    from mixer.train.accel.precision import ComputeCopies

    return ComputeCopies(model, torch.bfloat16)


def run_one(model: Any, batches: list, device: Any, steps: int, warmup: int, peak: float | None,
            n_params: int, layers: int, hidden: int,
            master_weights: str = "copy") -> tuple[float, float, float | None, float | None, int, list]:
    """``steps`` timed optimizer steps (after ``warmup``) of forward + backward + fused AdamW."""
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            fused=device.type == "cuda")
    copies = compute_copies_for(model, master_weights)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    real = total = 0
    flops = elapsed = 0.0
    losses = []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**inputs, use_cache=False, fused_lm_head=True).loss
        loss.backward()
        opt.step()
        if copies is not None:
            copies.refresh()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        losses.append(loss.detach().item())
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            lens = attended_lengths(batch)
            n_real = sum(lens)
            real += n_real
            total += batch["input_ids"].numel()
            flops += 6 * n_params * n_real + 6 * layers * hidden * sum(s * s for s in lens)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    mfu = flops / elapsed / peak if peak else None
    if copies is not None:
        copies.remove()
    del opt
    return real / elapsed, 1 - real / total, mem, mfu, real, losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-size", choices=["auto", *SHAPES], default="auto")
    ap.add_argument("--data", help="a mixer build dir: use its n_tokens length distribution")
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default 2048 GPU, 256 CPU)")
    ap.add_argument("--max-length", type=int, default=None, help="default 4096 GPU, 512 CPU")
    ap.add_argument("--batch-size", type=int, default=None, help="examples per padded/padding-free step (8)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--attention", default="auto",
                    help="comma list of sdpa,torch_varlen,flash_attention_2/3/4; auto = sdpa + mixer's auto pick")
    ap.add_argument("--modes", default="padded,padding_free,packed")
    ap.add_argument("--no-gradient-checkpointing", action="store_true", help="the recipes use it; off for tests")
    ap.add_argument("--master-weights", choices=["copy", "fp32", "bf16"], default="copy",
                    help="copy (mixer train's one-process full fine-tuning: fp32 masters, bf16 compute copies), "
                    "fp32 (fp32 weights, bf16 autocast) or pure bf16")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from trl.trainer.utils import add_fused_lm_head

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    size = args.model_size if args.model_size != "auto" else ("1b" if gpu else "tiny")
    max_length = args.max_length or (4096 if gpu else 512)
    n_examples = args.examples or (2048 if gpu else 256)
    batch_size = args.batch_size or 8
    steps = args.steps or (20 if gpu else 10)
    gpu_name = torch.cuda.get_device_name() if gpu else None
    peak = peak_flops(gpu_name)
    if not gpu:
        print("NOTE: no GPU found: running on CPU (autocast off). This checks that the benchmark runs; its figures say "
              "nothing about GPU throughput, and MFU is not computed.", file=sys.stderr)
    attns = attention_kernels(args.attention, gpu)
    shape = SHAPES[size]
    lengths = sample_lengths(n_examples, max_length, args.data, args.seed)
    results: list[Result] = []
    for attn in attns:
        model = build_model(shape, attn, max_length, device, args.master_weights == "bf16", args.seed)
        add_fused_lm_head(model)
        if not args.no_gradient_checkpointing:
            getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        n_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
        for mode in args.modes.split(","):
            batches = make_batches(mode, lengths, batch_size, max_length, shape["vocab_size"], args.seed)
            random.Random(args.seed).shuffle(batches)
            tps, pad, mem, mfu, real, losses = run_one(model, batches, device, steps, args.warmup, peak, n_params,
                                                       shape["num_hidden_layers"], shape["hidden_size"],
                                                       args.master_weights)
            results.append(Result(attn, mode, tps, pad, mem, mfu, steps, real, losses[0], losses[-1]))
            print(f"{attn:18s} {mode:13s} {tps:12.0f} tok/s  padding {pad:6.1%}  "
                  f"mem {mem if mem is None else round(mem, 2)} GiB  MFU {mfu if mfu is None else round(mfu, 3)}  "
                  f"loss {losses[0]:.3f} -> {losses[-1]:.3f}", file=sys.stderr)
        del model
        if gpu:
            torch.cuda.empty_cache()

    base = {r.attention: r.tokens_per_s for r in results if r.batching == "padded"}
    sdpa_padded = base.get("sdpa")
    autocast = " + bf16 autocast" if gpu and args.master_weights == "fp32" else ""
    print(f"\ndevice: {gpu_name or 'CPU (no GPU)'}; model: {size} ({shape['num_hidden_layers']} layers, hidden "
          f"{shape['hidden_size']}); weights {args.master_weights}{autocast}; gradient "
          f"checkpointing {'off' if args.no_gradient_checkpointing else 'on'}; max_length {max_length}; "
          f"{n_examples} examples, lengths {'from ' + args.data if args.data else 'synthetic log-normal'} (mean "
          f"{sum(lengths) / len(lengths):.0f}); batch {batch_size} examples (packed: 1 bin of {max_length}); "
          f"{steps} timed steps\n")
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
            "batch_size": batch_size, "master_weights": args.master_weights,
            "gradient_checkpointing": not args.no_gradient_checkpointing, "peak_bf16_flops": peak,
            "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
