"""What a run resolves on the host it starts on: attention kernel, batching, weight dtype and mixed
precision, workers.

A recipe says what the user wants (``attn_implementation: auto``, ``batching: padding_free``, ...);
whether that is fast, or even correct, depends on the host: a CUDA GPU without a varlen kernel turns
padding-free rows into dense-masked rows; a bf16-loaded model trained on one process has no fp32
master copy, and AdamW's small updates round away. :func:`resolve_runtime` decides once, says what
and why in the run's decision block (INFO), and the run saves it beside its config.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

from mixer.recipe.settings import usable_cores
from mixer.train.accel.attention import AttentionChoice, choose_attention, read_model_config
from mixer.train.config import ConfigError, RunConfig
from mixer.train.runlog import decide

logger = logging.getLogger("mixer.train")

#: Below this many rows, tokenising in one process is faster than starting workers.
PARALLEL_TOKENISE_MIN_ROWS = 10_000
MAX_TOKENISE_PROCESSES = 16


def world_size() -> int:
    """Processes in this run: ``WORLD_SIZE`` as set by ``accelerate launch``/torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def engine_mixed_precision() -> str | None:
    """``FSDP2``/``DeepSpeed`` when ``accelerate launch`` started this process with that engine (which then
    owns the bf16 casts and places and shards the weights itself), else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP2"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed"
    return None


def deepspeed_zero3_launched() -> bool:
    """Whether this process was started by ``accelerate launch`` with a DeepSpeed ZeRO-3 config."""
    return engine_mixed_precision() == "DeepSpeed" and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


@dataclass(frozen=True)
class Runtime:
    """The host-dependent choices of one run (saved as ``resolved:`` in the run's config)."""

    attn_implementation: str
    attention_reason: str
    batching: str
    batching_reason: str
    weights_dtype: str
    weights_reason: str
    mixed_precision: str = "autocast"
    mixed_precision_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def weights_dtype(cfg: RunConfig) -> tuple[str, str]:
    """The dtype to load weights in, and why.

    Full fine-tuning keeps fp32 master weights whenever it computes in bf16/fp16: the model is loaded
    in fp32 and the trainer's mixed precision (autocast in one process, FSDP2's or DeepSpeed's
    mixed-precision policies across GPUs) runs the matmuls in bf16. Loading bf16 and letting AdamW
    update bf16 weights loses most updates at Tulu's learning rates (2e-5 SFT, 5e-7 DPO: below bf16's
    resolution for weights of magnitude ~1e-2 and up). With LoRA/QLoRA the base is frozen, so
    ``dtype`` applies as given; PEFT keeps the adapter in fp32.
    """
    if cfg.use_peft:
        return cfg.dtype, "LoRA/QLoRA: frozen base weights in `dtype`, adapter weights in fp32"
    compute = "bf16 compute (mixed precision)" if cfg.bf16 else "fp32 compute"
    note = "" if cfg.dtype == "float32" else f"; dtype {cfg.dtype} applies to frozen (LoRA) weights only"
    return "float32", f"full fine-tuning: fp32 master weights, {compute}{note}"


def choose_batching(requested: str, attention: AttentionChoice, cuda: bool) -> tuple[str, str]:
    """Keep padding-free/packed rows only where a varlen kernel runs them (or on CPU, for tests).

    On CUDA with SDPA or eager, a padding-free row gets a dense ``[T, T]`` block-diagonal mask and
    SDPA's math path: slower than padding. Fall back to padded batches and say how to get the fast path.
    """
    if requested == "padded":
        return requested, "as configured"
    if not cuda or attention.varlen:
        return requested, f"{attention.implementation} runs {requested} rows" + (
            " as separate sequences (varlen)" if attention.varlen else " with a block-diagonal mask (CPU)")
    return "padded", (
        f"{requested} batches need a varlen attention kernel on CUDA, and {attention.implementation} has none "
        f"(it would build a dense [T, T] mask, slower than padding): using padded batches. For the fast path "
        f"use attn_implementation: auto or torch_varlen (torch >= 2.9), or install flash-attn-4 (Hopper+)")


def choose_mixed_precision(cfg: RunConfig, *, processes: int, engine: str | None) -> tuple[str, str]:
    """How bf16 compute runs over the fp32 master weights: ``bf16_copy``, ``autocast``, an engine's own
    policy, or ``none`` (fp32 compute); and why.

    ``bf16_copy`` (:mod:`mixer.train.accel.precision`) casts the weights once per optimizer step instead of in
    every forward and recomputation. It needs the model's parameters to be plain tensors that this
    process alone updates: one process, full fine-tuning. Across processes DDP's gradient hooks sit on
    the fp32 parameters, and FSDP2/DeepSpeed already cast once per step with their own policies; with
    LoRA the frozen base is already in ``dtype`` and only the small fp32 adapter goes through autocast.
    An explicit ``bf16_copy`` that cannot apply is an error where the recipe contradicts itself (LoRA,
    ``bf16: false``) and a warning where it is the launch that differs (several processes).
    """
    asked = cfg.mixed_precision
    if not cfg.bf16:
        if asked == "bf16_copy":
            raise ConfigError("mixed_precision: bf16_copy needs bf16: true")
        return "none", "bf16: false, fp32 compute"
    if cfg.use_peft:
        if asked == "bf16_copy":
            raise ConfigError("mixed_precision: bf16_copy is for full fine-tuning; with LoRA the frozen base "
                              "is already in `dtype` (use auto or autocast)")
        return "autocast", "LoRA/QLoRA: base weights already in `dtype`, the fp32 adapter goes through autocast"
    if engine is not None:
        note = "; mixed_precision: bf16_copy applies to one process only" if asked == "bf16_copy" else ""
        if note:
            logger.warning("mixed_precision: bf16_copy is not used under %s: its own policy casts once per step",
                           engine)
        return engine, f"{engine}'s mixed-precision policy (bf16 compute, fp32 master shards){note}"
    if processes > 1:
        if asked == "bf16_copy":
            logger.warning("mixed_precision: bf16_copy is not used with %d DDP processes: autocast instead",
                           processes)
        return "autocast", f"{processes} DDP processes: autocast over fp32 parameters"
    if asked == "autocast":
        return "autocast", "as configured: fp32 weights cast to bf16 in every forward and recomputation"
    return "bf16_copy", ("one process, full fine-tuning: bf16 compute copies of the fp32 master weights, "
                         "cast once per optimizer step")


def resolve_runtime(cfg: RunConfig, *, cuda: bool) -> Runtime:
    """Decide the host-dependent choices; they are said with the run's other decisions (at INFO, before
    training; see :mod:`mixer.train.runlog`) and saved beside the run's config."""
    attention = choose_attention(cfg.attn_implementation, cuda=cuda, model_config=read_model_config(cfg.model))
    batching, batching_reason = choose_batching(cfg.batching, attention, cuda)
    dtype, dtype_reason = weights_dtype(cfg)
    precision, precision_reason = choose_mixed_precision(cfg, processes=world_size(), engine=engine_mixed_precision())
    runtime = Runtime(attention.implementation, attention.reason, batching, batching_reason, dtype, dtype_reason,
                      precision, precision_reason)
    decide("attention", runtime.attn_implementation, runtime.attention_reason)
    decide("batching", runtime.batching, runtime.batching_reason)
    decide("weights", runtime.weights_dtype, runtime.weights_reason)
    decide("mixed precision", runtime.mixed_precision, runtime.mixed_precision_reason)
    return runtime


def tokenise_processes(configured: int | None, n_rows: int) -> int | None:
    """Processes for tokenisation: as configured, else ``min(cores, 16)`` for large data.

    Tokenising 326k conversations in one process takes ~15 minutes on rank 0 while the other ranks
    wait at a barrier; small data (tests, smoke runs) stays in-process (``None``), where starting
    workers costs more than it saves.
    """
    if configured is not None:
        return configured if configured > 1 else None
    if n_rows < PARALLEL_TOKENISE_MIN_ROWS:
        return None
    n = min(usable_cores(), MAX_TOKENISE_PROCESSES)
    return n if n > 1 else None
