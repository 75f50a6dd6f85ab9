"""Where a training step's GPU time goes: one profiled step of bench/train_throughput.py's model and batches.

    python bench/profile_train_step.py --model-size 7b --modes padding_free,packed --batch-size 4 \\
        --txt $OUT/profile.txt

For each batching mode: two warm-up steps, then one step under ``torch.profiler`` (CUDA activity).
Prints the kernels by total GPU time and a summary by kind (matmul, attention, elementwise/norm,
casts and copies, optimizer, other) with the step's wall time, so the gap between measured MFU and the
matmul ceiling can be attributed. Same step as the benchmark: gradient checkpointing, TRL's fused LM
head, fused AdamW, and ``--master-weights`` copy (fp32 masters with mixer's bf16 compute copies, the
one-process default of ``mixer train``), fp32 (bf16 autocast over fp32 weights) or bf16 (pure bf16).
On CPU it runs the tiny model (CPU activity only), to check the script.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import SHAPES, build_model, compute_copies_for, make_batches, sample_lengths  # noqa: E402

KINDS = (
    ("attention", ("flash", "fmha", "attention", "varlen")),
    ("matmul", ("gemm", "matmul", "::mm", "cutlass", "xmma", "nvjet", "addmm", "bmm")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
    ("casts and copies", ("copy", "cast", "to_copy", "convert")),
    ("elementwise/norm", ("elementwise", "vectorized", "reduce", "norm", "silu", "mul", "add", "pow", "rsqrt",
                          "mean", "softmax", "log", "exp", "cat", "index", "scatter", "gather")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KINDS if any(k in low for k in keys)), "other")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-size", choices=list(SHAPES), default=None)
    ap.add_argument("--modes", default="padding_free,packed")
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--master-weights", choices=["copy", "fp32", "bf16"], default="copy")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--txt", help="also write the report here")
    args = ap.parse_args(argv)

    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    from trl.trainer.utils import add_fused_lm_head

    from mixer.train.accel.attention import choose_attention

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    size = args.model_size or ("7b" if gpu else "tiny")
    attn = choose_attention("auto", cuda=gpu).implementation if args.attention == "auto" else args.attention
    shape = SHAPES[size]
    max_length = args.max_length if gpu else 256
    lengths = sample_lengths(256, max_length, None, 0)
    model = build_model(shape, attn, max_length, device, args.master_weights == "bf16", 0)
    add_fused_lm_head(model)
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=gpu)
    copies = compute_copies_for(model, args.master_weights)
    lines = [f"# profile: {torch.cuda.get_device_name() if gpu else 'CPU'}, {size}, attention {attn}, weights "
             f"{args.master_weights}, batch {args.batch_size}, torch {torch.__version__}"]

    def step(batch: dict) -> None:
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            loss = model(**inputs, use_cache=False, fused_lm_head=True).loss
        loss.backward()
        opt.step()
        if copies is not None:
            copies.refresh()
        opt.zero_grad(set_to_none=True)

    for mode in args.modes.split(","):
        batches = make_batches(mode, lengths, args.batch_size, max_length, shape["vocab_size"], 0)
        for b in batches[:2]:
            step(b)
        if gpu:
            torch.cuda.synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
        batch = batches[2]
        tokens = int(batch["input_ids"].numel())  # a packed batch is one bin of max_length
        t0 = time.perf_counter()
        with profile(activities=activities) as prof:
            step(batch)
            if gpu:
                torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        # on a GPU, count kernels only (an aten op's "self CUDA" time is its kernels' time again)
        events = [e for e in prof.key_averages()
                  if (e.self_device_time_total > 0 and e.device_type == DeviceType.CUDA if gpu
                      else e.self_cpu_time_total > 0)]
        total_us = sum((e.self_device_time_total if gpu else e.self_cpu_time_total) for e in events)
        by_kind: dict[str, float] = defaultdict(float)
        for e in events:
            by_kind[kind_of(e.key)] += e.self_device_time_total if gpu else e.self_cpu_time_total
        lines.append(f"\n## {mode}: {tokens} token slots, profiled step wall {wall * 1e3:.0f} ms, "
                     f"{'GPU' if gpu else 'CPU'} busy {total_us / 1e3:.0f} ms")
        for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {kind:18s} {us / 1e3:9.1f} ms  {us / max(total_us, 1):6.1%}")
        lines.append(prof.key_averages().table(sort_by="self_cuda_time_total" if gpu else "self_cpu_time_total",
                                               row_limit=args.top, max_name_column_width=70))
    report = "\n".join(lines)
    print(report)
    if args.txt:
        Path(args.txt).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
