"""Which attention kernel a run uses, and PyTorch's own FlashAttention varlen kernel as a fallback.

Padding-free and packed batches are one long row holding many sequences. They are only fast with a
*varlen* kernel that takes the sequence boundaries (``cu_seq_lens``) and skips the attention between
sequences: FlashAttention 2/3/4, or ``torch.nn.attention.varlen.varlen_attn`` (PyTorch's built-in
FlashAttention, no extra package). With SDPA, transformers builds a dense ``[T, T]`` block-diagonal
mask instead, and a packed 8k row of ~350-token examples then does ~20x the attention work needed.

So ``auto`` asks transformers which FlashAttention packages are usable (its own ``is_flash_attn_*``
helpers check the distribution name, so ``flash-attn-4``'s ``flash_attn/cute`` is not taken for FA2),
then falls back to ``torch_varlen`` on CUDA, and to SDPA on CPU. Everything here imports torch and
transformers lazily.

``torch_varlen`` honours what the model's attention layers ask of it or refuses them by name, never
silently computing something else: a sliding window (Mistral's 4,096 tokens, Gemma's and gpt-oss's local
layers) becomes the kernel's ``window_size``; logit soft-capping (Gemma 2) and attention sinks (gpt-oss)
have no equivalent in PyTorch's kernel, so a model with them is refused for ``torch_varlen`` and ``auto``
picks SDPA for it instead.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

from mixer.core.errors import MixerError

TORCH_VARLEN = "torch_varlen"
FLASH_IMPLEMENTATIONS = ("flash_attention_3", "flash_attention_2", "flash_attention_4")
#: Kernels that run a padding-free row as separate sequences (no [T, T] mask).
VARLEN_IMPLEMENTATIONS = (*FLASH_IMPLEMENTATIONS, TORCH_VARLEN)
#: FlashAttention versions and the pip package that provides each (for messages).
FLASH_PACKAGES = {
    "flash_attention_2": "flash-attn (Ampere or newer; pip builds it with nvcc)",
    "flash_attention_3": "flash-attn-3 / flash_attn_interface (Hopper; built from the flash-attention repo)",
    "flash_attention_4": "flash-attn-4 (Hopper and newer; wheels on PyPI)",
}


@dataclass(frozen=True)
class AttentionChoice:
    """The kernel a run loads the model with, and why (printed at WARNING and saved with the run)."""

    implementation: str
    reason: str

    @property
    def varlen(self) -> bool:
        """Whether padding-free/packed rows run without a dense mask."""
        return self.implementation in VARLEN_IMPLEMENTATIONS


def flash_available(name: str) -> bool:
    """transformers' own answer to "is this FlashAttention usable here" (False when it cannot tell)."""
    from transformers import utils

    version = name.rsplit("_", 1)[-1]
    check = getattr(utils, f"is_flash_attn_{version}_available", None)
    if check is None:
        return False
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a broken install answers "no", never crashes the choice
        return False


def torch_varlen_available() -> bool:
    """Whether this torch has ``torch.nn.attention.varlen.varlen_attn`` (PyTorch 2.9 and newer)."""
    try:
        return importlib.util.find_spec("torch.nn.attention.varlen") is not None
    except (ImportError, ValueError):
        return False


def torch_varlen_unsupported(model_config: Any) -> list[str]:
    """The attention features of ``model_config`` that PyTorch's varlen kernel cannot compute.

    A sliding window is not among them (the kernel takes a ``window_size``); soft-capping of the
    attention logits (Gemma 2's ``attn_logit_softcapping``) and learned attention sinks (gpt-oss) are.
    Read from the config, so the choice is made before any weight is loaded.
    """
    if model_config is None:
        return []
    features = []
    configs = [model_config, getattr(model_config, "text_config", None)]
    for cfg in (c for c in configs if c is not None):
        if getattr(cfg, "attn_logit_softcapping", None) is not None:
            features.append(f"logit soft-capping (attn_logit_softcapping={cfg.attn_logit_softcapping})")
        if getattr(cfg, "model_type", "") in SINK_MODEL_TYPES:
            features.append(f"attention sinks ({cfg.model_type})")
    return features


def read_model_config(model: str | None) -> Any:
    """The transformers config of a local model folder, or None where there is none to read (the model
    loader reports a missing model later, with its own message); only ``config.json`` is read."""
    if not model:
        return None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model, local_files_only=True)
    except Exception:  # noqa: BLE001 - any unreadable config means "unknown model", decided at load time
        return None


#: Model types whose attention layers add learned sink logits (transformers passes them as ``s_aux``).
SINK_MODEL_TYPES = frozenset({"gpt_oss"})


def choose_attention(requested: str = "auto", *, cuda: bool, model_config: Any = None) -> AttentionChoice:
    """Resolve ``attn_implementation`` for this host (and model, when its config is given).

    An explicit request is checked (a FlashAttention kernel needs CUDA and its package; ``torch_varlen``
    a model without soft-capping or sinks) and kept; ``auto`` takes FA3, FA2, FA4 in that order when
    transformers reports them usable on a GPU of compute capability 8.0 or newer, else ``torch_varlen`` on
    CUDA where the model allows it, else SDPA.
    """
    unsupported = torch_varlen_unsupported(model_config)
    if requested != "auto":
        if requested == TORCH_VARLEN and unsupported:
            raise MixerError(
                f"attn_implementation torch_varlen cannot compute this model's {' and '.join(unsupported)}: "
                "use sdpa or eager (or a FlashAttention kernel that supports it)"
            )
        if requested in VARLEN_IMPLEMENTATIONS and requested != TORCH_VARLEN and not cuda:
            raise MixerError(f"attn_implementation {requested} needs a CUDA GPU; use auto or sdpa on this host")
        if requested in FLASH_PACKAGES and not flash_available(requested):
            raise MixerError(
                f"attn_implementation {requested} is not usable here: transformers reports the package "
                f"{FLASH_PACKAGES[requested]} missing or unusable; use auto (FlashAttention if installed, else "
                "PyTorch's varlen kernel) or sdpa"
            )
        if requested == TORCH_VARLEN and not torch_varlen_available():
            raise MixerError("attn_implementation torch_varlen needs torch >= 2.9 (torch.nn.attention.varlen)")
        return AttentionChoice(requested, "requested")
    if not cuda:
        return AttentionChoice("sdpa", "no CUDA device: SDPA (FlashAttention kernels are CUDA-only)")
    import torch

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return AttentionChoice("sdpa", f"GPU compute capability {major}.{minor} is below 8.0 (no FlashAttention)")
    for name in FLASH_IMPLEMENTATIONS:
        if flash_available(name):
            return AttentionChoice(name, f"{name} usable on sm{major}{minor} (transformers reports it installed)")
    if torch_varlen_available() and unsupported:
        return AttentionChoice(
            "sdpa", f"PyTorch's varlen kernel cannot compute this model's {' and '.join(unsupported)}: SDPA"
        )
    if torch_varlen_available():
        return AttentionChoice(
            TORCH_VARLEN,
            f"no FlashAttention package installed; PyTorch {torch.__version__}'s built-in FlashAttention varlen "
            "kernel (torch.nn.attention.varlen); `pip install flash-attn-4` on Hopper for FA4",
        )
    return AttentionChoice("sdpa", "no FlashAttention package and torch < 2.9 has no varlen kernel")


def register_torch_varlen() -> None:
    """Make ``attn_implementation="torch_varlen"`` loadable by transformers (idempotent).

    Its mask is FlashAttention's: ``None`` for padding-free rows and unpadded batches, the 2D padding
    mask otherwise, so nothing O(T^2) is materialised; :func:`varlen_attention` reads the sequence
    boundaries from the batch instead.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    if TORCH_VARLEN not in AttentionInterface._global_mapping:
        AttentionInterface.register(TORCH_VARLEN, varlen_attention)
    if TORCH_VARLEN not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        ALL_MASK_ATTENTION_FUNCTIONS.register(TORCH_VARLEN, flash_attention_mask)


def sequence_boundaries(batch: int, length: int, attention_mask: Any, kwargs: dict[str, Any],
                        device: Any) -> tuple[Any, int, Any]:
    """``(cu_seq_lens, max_len, token_index)`` for the rows of one attention call.

    - a padding-free row (batch 1) carries TRL's ``cu_seq_lens_q``/``max_length_q``: used as is; without
      them, the boundaries are where ``position_ids`` restart at 0;
    - a padded batch carries a 2D ``[batch, length]`` mask: the real tokens are gathered (``token_index``)
      and each row is one sequence;
    - otherwise every row is one full sequence.
    """
    import torch

    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and batch == 1:
        cu = cu.to(device=device, dtype=torch.int32)
        max_len = kwargs.get("max_length_q")
        return cu, int(max_len) if max_len is not None else int((cu[1:] - cu[:-1]).max()), None
    position_ids = kwargs.get("position_ids")
    if cu is None and batch == 1 and attention_mask is None and position_ids is not None:
        starts = (position_ids.reshape(-1) == 0).nonzero().flatten().to(device=device, dtype=torch.int32)
        if starts.numel() > 1:
            end = torch.tensor([length], device=device, dtype=torch.int32)
            cu = torch.cat([starts, end]) if int(starts[0]) == 0 else torch.cat([starts.new_zeros(1), starts, end])
            return cu, int((cu[1:] - cu[:-1]).max()), None
    if attention_mask is not None and attention_mask.dim() == 2:
        mask = attention_mask.to(device=device, dtype=torch.bool)
        lengths = mask.sum(dim=1, dtype=torch.int32)
        cu = torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        return cu, int(lengths.max()), mask.flatten().nonzero().flatten()
    cu = torch.arange(0, (batch + 1) * length, length, device=device, dtype=torch.int32)
    return cu, length, None


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """A transformers attention function over PyTorch's FlashAttention varlen kernel (causal).

    ``query``: ``[batch, heads, length, dim]``; returns ``[batch, length, heads, dim]`` like every
    transformers attention function. On CPU (tests) the same sequences run through causal SDPA one by
    one, so the CPU path checks the boundaries the GPU kernel gets.
    """

    if dropout:
        raise MixerError("attn_implementation torch_varlen does not implement attention dropout")
    if kwargs.get("softcap") is not None:
        raise MixerError("attn_implementation torch_varlen cannot compute logit soft-capping (softcap); use sdpa")
    if kwargs.get("s_aux") is not None:
        raise MixerError("attn_implementation torch_varlen cannot compute attention sinks (s_aux); use sdpa")
    window = kwargs.get("sliding_window")
    window = int(window) if window is not None else None
    if window is not None and window < 1:
        raise MixerError(f"sliding_window must be a positive number of tokens, got {window}")
    b, hq, s, d = query.shape
    hk = key.shape[1]
    cu, max_len, index = sequence_boundaries(b, s, attention_mask, kwargs, query.device)
    q, k, v = (t.transpose(1, 2).reshape(b * s, t.shape[1], d) for t in (query, key, value))
    if index is not None:
        q, k, v = q[index], k[index], v[index]
    if query.is_cuda:
        out = _cuda_varlen(q, k, v, cu, max_len, scaling, hq != hk, window)
    else:
        out = _reference_varlen(q, k, v, cu, scaling, window)
    if index is not None:
        full = out.new_zeros(b * s, hq, d)
        full[index] = out
        out = full
    return out.reshape(b, s, hq, d), None


def _cuda_varlen(q: Any, k: Any, v: Any, cu: Any, max_len: int, scaling: float | None, gqa: bool,
                 window: int | None = None) -> Any:
    import torch
    from torch.nn.attention.varlen import varlen_attn

    params = _varlen_keywords()
    dtype = q.dtype
    if dtype not in (torch.bfloat16, torch.float16):  # fp32 residual stream (e.g. QLoRA norms): kernel is 16-bit
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    extra: dict[str, Any] = {}
    if gqa:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if "window_size" in params:
        # (left, right) as in FlashAttention: query i sees keys i-left..i, so a window of W tokens
        # (transformers: key j visible when j > i - W) is W - 1 to the left
        extra["window_size"] = (window - 1, 0) if window is not None and window < max_len else (-1, 0)
    elif window is not None and window < max_len:
        raise MixerError(
            f"this torch's varlen_attn has no window_size, so it cannot apply the model's {window}-token sliding "
            f"window to sequences of up to {max_len} tokens; use sdpa, or torch >= 2.11"
        )
    else:
        extra["is_causal"] = True
    if scaling is not None and "scale" in params:
        extra["scale"] = scaling
    out = varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)
    if isinstance(out, tuple):
        out = out[0]
    return out.to(dtype)


@functools.cache
def _varlen_keywords() -> frozenset[str]:
    """The keywords this torch's ``varlen_attn`` takes (2.10: ``is_causal``; later: ``window_size``,
    ``scale``, ``enable_gqa``), read once rather than in every layer's attention call."""
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _reference_varlen(q: Any, k: Any, v: Any, cu: Any, scaling: float | None, window: int | None = None) -> Any:
    """Causal (optionally sliding-window) attention per sequence with SDPA: what the CUDA kernel computes,
    for CPU runs."""
    import torch
    import torch.nn.functional as F

    rep = q.shape[1] // k.shape[1]
    outs = []
    bounds = cu.tolist()
    for start, end in zip(bounds, bounds[1:], strict=False):
        if end <= start:
            continue
        qi, ki, vi = (t[start:end].transpose(0, 1) for t in (q, k, v))
        if rep > 1:
            ki, vi = ki.repeat_interleave(rep, dim=0), vi.repeat_interleave(rep, dim=0)
        if window is not None and end - start > window:
            pos = torch.arange(end - start, device=q.device)
            distance = pos[:, None] - pos[None, :]
            mask = (distance >= 0) & (distance < window)
            att = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scaling)
        else:
            att = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scaling)
        outs.append(att.transpose(0, 1))
    out = torch.cat(outs, dim=0) if outs else q.new_zeros(0, q.shape[1], q.shape[2])
    if out.shape[0] < q.shape[0]:  # trailing padding of a padding-free row (pad_to_multiple_of)
        out = torch.cat([out, out.new_zeros(q.shape[0] - out.shape[0], *out.shape[1:])], dim=0)
    return out
