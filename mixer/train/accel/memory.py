"""Will the run fit on this GPU? An estimate from config.json, before any weight is loaded.

A 7B full fine-tune with fp32 master weights needs ~126 GB before the first activation: it fits an H200
(141 GB) and not an 80 GB H100, where it would otherwise load for minutes and then die in CUDA OOM.
Bytes per parameter (mixed-precision training as ZeRO's paper counts it, Rajbhandari et al. 2020, §3.1):

- full fine-tuning: fp32 master weights 4 + fp32 gradients 4 + AdamW's two fp32 moments 8 = 16, plus 2
  for the bf16 compute copies (``mixed_precision: bf16_copy``) = 18;
- LoRA: the frozen base in ``dtype`` (2 for bf16) + the adapter's ~1 % of parameters at 16;
- QLoRA: NF4 weights 0.5 + double-quantised constants ~0.03 + the adapter, ~0.7 in all.

Activations come on top and depend on the micro-batch; the check refuses only when the states alone do not
fit in 90 % of the card's free memory, so a refusal is certain and a pass is not a promise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

GIB = 2**30
#: the share of free memory the weights and optimizer states may take (the rest: activations, workspace)
FIT_SHARE = 0.9


class MemoryFitError(MixerError):
    """The run's weights, gradients and optimizer states alone do not fit on the GPU."""


def count_parameters(config: dict[str, Any]) -> int:
    """Parameters of a decoder-only transformer from its config.json (Llama/Mistral/Qwen field names):
    embeddings, attention (grouped-query heads), gated MLP, norms, and an untied LM head."""
    text = config.get("text_config") or config
    hidden = int(text["hidden_size"])
    layers = int(text["num_hidden_layers"])
    vocab = int(text["vocab_size"])
    ffn = int(text.get("intermediate_size") or 4 * hidden)
    heads = int(text.get("num_attention_heads") or 1)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * ffn
    per_layer = attention + mlp + 2 * hidden
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden


def bytes_per_parameter(cfg: Any, mixed_precision: str) -> tuple[float, str]:
    """Bytes per model parameter for weights + gradients + optimizer states, and the breakdown."""
    adapter = 0.01 * 16  # ~1 % of the parameters trainable (r 64 on every linear of a 7B: ~2.4 %), fp32 + AdamW
    if cfg.load_in_4bit:
        return 0.55 + adapter, "QLoRA: NF4 base 0.55 + adapter ~0.16"
    if cfg.use_peft:
        base = 4 if cfg.dtype == "float32" else 2
        return base + adapter, f"LoRA: frozen base {base} + adapter ~0.16"
    optim_bytes = 8 if "adamw" in str(cfg.optim) or "adam" in str(cfg.optim) else 4
    copies = 2 if mixed_precision == "bf16_copy" else 0
    total = 4 + 4 + optim_bytes + copies
    parts = f"fp32 weights 4 + fp32 gradients 4 + optimizer states {optim_bytes}"
    return total, parts + (" + bf16 compute copies 2" if copies else "")


def check_fits(cfg: Any, mixed_precision: str, free_bytes: int | None = None) -> str | None:
    """Refuse (``MemoryFitError``) when the estimated states exceed ``FIT_SHARE`` of the GPU's free memory;
    return the estimate as a line for the log, or None when there is nothing to check (no CUDA, no config.json).

    ``free_bytes`` (tests): the card's free memory; else ``torch.cuda.mem_get_info`` on this process's GPU."""
    config_path = Path(str(cfg.model)) / "config.json"
    if not config_path.is_file():
        return None
    if free_bytes is None:
        import torch

        if not torch.cuda.is_available():
            return None
        free_bytes, _ = torch.cuda.mem_get_info()
    try:
        n = count_parameters(json.loads(config_path.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError):
        return None  # not a shape this estimate knows: let the load decide
    per, parts = bytes_per_parameter(cfg, mixed_precision)
    need = n * per
    line = (f"{n / 1e9:.2f}B parameters x {per:.2f} B ({parts}) = {need / GIB:.1f} GiB for weights, gradients "
            f"and optimizer states; the GPU has {free_bytes / GIB:.1f} GiB free")
    if need > FIT_SHARE * free_bytes:
        raise MemoryFitError(
            f"{cfg.model} will not fit for this run: {line}, and activations need more. Use LoRA (use_peft: true), "
            "QLoRA (use_peft: true, load_in_4bit: true), a bigger card, or shard the states across GPUs with "
            "ZeRO-3 or FSDP2 (accelerate_config: zero3 | fsdp2). check_memory: false skips this check.")
    return line
