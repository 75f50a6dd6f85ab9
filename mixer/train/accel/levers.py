"""One-GPU speed levers (issue 21): token-sized micro-batches, regional ``torch.compile``, Liger kernels.

Each is off by default and unmeasured on a GPU so far; ``bench/gpu_check.sh``'s ``ablation`` part measures
each against the packed + bf16-copies baseline. Selective activation checkpointing is transformers' own
``every_n_layers`` (:func:`checkpoint_every_n`); FlashAttention 3/4 are picked by
:mod:`mixer.train.accel.attention`; the memory check before loading is :mod:`mixer.train.accel.memory`.

Token-sized micro-batches. The recipes fix *examples* per optimizer step (Tulu 2's 128), because that is
what their learning rates were tuned for. Fixed examples per micro-batch make the micro-batches' token
counts swing with the examples' lengths: small ones leave a GPU waiting on kernel launches, large ones
run out of memory. With ``max_tokens_per_microbatch`` the data loader hands the trainer the whole step
(``effective_batch_size / processes`` examples, gradient accumulation 1) and :func:`split_step` cuts it
into micro-batches of at most that many tokens, at example boundaries; each runs forward and backward
with the step's assistant-token count as ``num_items_in_batch``, so the summed gradient is the gradient
of (sum of the step's token losses / their count): the same loss as example-sized accumulation.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any

from mixer.train.args import COMPILE_MODES, ConfigError, check_choice
from mixer.train.deps import MissingDependencyError

logger = logging.getLogger("mixer.train")


# --------------------------------------------------------------------------------- token micro-batches
def _boundaries(inputs: dict[str, Any]) -> tuple[str, list[int], int]:
    """How a collated step splits: ``("row", starts, T)`` for one flattened padding-free row (example starts
    from ``position_ids == 0``), ``("batch", [0..B-1], B)`` for padded rows."""
    ids = inputs["input_ids"]
    if ids.shape[0] == 1 and "position_ids" in inputs:
        starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist()
        return "row", starts, ids.shape[1]
    return "batch", list(range(ids.shape[0])), ids.shape[0]


def split_step(inputs: dict[str, Any], max_tokens: int) -> list[dict[str, Any]]:
    """The step's collated batch cut into micro-batches of at most ``max_tokens`` tokens each, at example
    boundaries (an example longer than ``max_tokens`` is a micro-batch of its own). A padded batch counts a
    micro-batch's tokens as rows x its longest row (its padding costs as much as its tokens)."""
    import torch

    kind, starts, total = _boundaries(inputs)
    if kind == "row":
        ends = [*starts[1:], total]
        groups, lo, hi = [], starts[0] if starts else 0, None
        for start, end in zip(starts, ends, strict=True):
            if hi is not None and end - lo > max_tokens:
                groups.append((lo, hi))
                lo = start
            hi = end
        if hi is not None:
            groups.append((lo, hi))
        out = []
        for lo, hi in groups:
            chunk = {}
            for key, value in inputs.items():
                if key.startswith("cu_seq_lens") or key.startswith("max_length"):
                    continue  # recomputed below for the chunk
                is_row = torch.is_tensor(value) and value.dim() >= 2 and value.shape[1] == total
                chunk[key] = value[:, lo:hi] if is_row else value
            if "cu_seq_lens_q" in inputs:
                pos = chunk["position_ids"][0]
                first = (pos == 0).nonzero().flatten()
                cu = torch.cat([first, torch.tensor([pos.numel()], device=first.device)]).to(torch.int32)
                chunk["cu_seq_lens_q"] = chunk["cu_seq_lens_k"] = cu
                if "max_length_q" in inputs:
                    chunk["max_length_q"] = chunk["max_length_k"] = int((cu[1:] - cu[:-1]).max())
            out.append(chunk)
        return out
    mask = inputs.get("attention_mask")
    lengths = (mask.sum(dim=1).tolist() if mask is not None else [inputs["input_ids"].shape[1]] * total)
    groups, current, longest = [], [], 0
    for i, n in enumerate(lengths):
        if current and (len(current) + 1) * max(longest, n) > max_tokens:
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    groups.append(current)
    out = []
    for rows in groups:
        width = max(lengths[i] for i in rows)
        index = torch.tensor(rows, device=inputs["input_ids"].device)
        chunk = {}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == total:
                value = value.index_select(0, index)
                if value.dim() >= 2:  # right padding: drop the columns only other rows needed
                    value = value[:, :width]
            chunk[key] = value
        out.append(chunk)
    return out


def attach_token_microbatches(trainer: Any, max_tokens: int) -> None:
    """Run each optimizer step's batch as micro-batches of at most ``max_tokens`` tokens (see the module
    docstring). The Trainer counts the step's tokens (``num_items_in_batch``) before calling
    ``training_step``; every micro-batch but the last skips DDP's gradient all-reduce (FSDP2 reduces each one:
    correct, slower). DeepSpeed is refused (:func:`before_loading`): its engine steps at every backward."""
    import contextlib

    import torch

    original = trainer.training_step

    def training_step(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        chunks = split_step(inputs, max_tokens)
        total = None
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
            sync = model.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync:
                loss = original(model, chunk, num_items_in_batch)
            total = loss if total is None else total + loss
        trainer.mixer_microbatches = getattr(trainer, "mixer_microbatches", 0) + len(chunks)
        return total

    trainer.training_step = training_step


# ------------------------------------------------------------------------------------- regional compile
def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated decoder blocks: modules whose class transformers lists in ``_no_split_modules``
    (what it never splits across devices: the decoder layer), found under a PEFT wrapper too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in base.modules() if type(m).__name__ in names]


def compile_regional(model: Any) -> int:
    """``torch.compile`` each decoder layer in place: PyTorch's regional compilation recipe. The layers share
    their code, and dynamo treats their parameters as inputs, so one compiled graph serves every layer and the
    compile time stays about one layer's, unlike compiling the whole model. Gradient checkpointing wraps the
    compiled layer from outside. Returns the number of layers compiled."""
    import os


    backend = os.environ.get("MIXER_COMPILE_BACKEND", "inductor")  # tests: aot_eager, no C++ toolchain
    layers = decoder_layers(model)
    if not layers:
        from mixer.core.errors import MixerError

        raise MixerError(f"compile: regional found no decoder layers in {type(model).__name__} "
                         "(its _no_split_modules names none); use compile: none")
    for layer in layers:
        layer.compile(backend=backend)  # nn.Module.compile: in place, the module keeps its name and state
    from mixer.train.runlog import decide

    decide("compile", f"regional, {len(layers)} decoder layers ({backend} backend)",
           "the first steps include compilation")
    return len(layers)


def compile_timer() -> Any:
    """A ``TrainerCallback`` that reports the time spent compiling: PyTorch's own compile start/end callbacks
    (dynamo's tracing and the backend's code generation, the lazily compiled backward and recompilations for
    new shapes included), summed and logged as ``compile_s`` (cumulative) in each log record where it grew,
    with the first step's wall time as ``first_step_s``, so both land in metrics.jsonl."""
    import torch._dynamo
    from transformers import TrainerCallback

    class CompileTimer(TrainerCallback):
        def __init__(self) -> None:
            self.total = 0.0
            self.started: float | None = None
            self.reported = -1.0
            self.first_step: float | None = None
            self.t0 = 0.0
            torch._dynamo.callback_handler.register_start_callback(self.start)
            torch._dynamo.callback_handler.register_end_callback(self.end)

        def start(self, *args: Any) -> None:
            self.started = time.perf_counter()

        def end(self, *args: Any) -> None:
            if self.started is not None:
                self.total += time.perf_counter() - self.started
                self.started = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.first_step is None:
                self.first_step = time.perf_counter() - self.t0

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs is None or self.total <= self.reported:
                return
            logs["compile_s"] = round(self.total, 3)
            if self.first_step is not None:
                logs["first_step_s"] = round(self.first_step, 3)
            if state.log_history:  # the Trainer appended this record before calling back: keep it there too
                state.log_history[-1].update({k: logs[k] for k in ("compile_s", "first_step_s") if k in logs})
            self.reported = self.total
            logger.info("compile: %.1f s so far (first step %.1f s)", self.total, self.first_step or 0.0)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            torch._dynamo.callback_handler.remove_start_callback(self.start)
            torch._dynamo.callback_handler.remove_end_callback(self.end)

    return CompileTimer()


# ------------------------------------------------------------------------------------------------ liger
LIGER_HINT = "pip install 'mixer[liger]' (or pip install liger-kernel; CUDA GPUs only: Triton kernels)"


def require_liger(use_liger_kernel: bool) -> None:
    """``use_liger_kernel: true`` without the package: say which extra provides it before anything loads.

    The kernels are applied by the Trainer to the model instance mixer built (RMSNorm, SwiGLU MLP and RoPE
    patched in place; TRL 1.16 keeps its own fused LM head and turns Liger's fused cross-entropy off). They
    read the modules' own weights, so the bf16 compute copies still feed them, and attention is untouched."""
    if use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        raise MissingDependencyError(f"use_liger_kernel: true needs the `liger` extra: {LIGER_HINT}")


# ------------------------------------------------------------------------------------------- the trainer
def checkpoint_every_n(layers: str | float) -> int:
    """``gradient_checkpointing_layers`` as transformers' ``every_n_layers``: ``all`` = 1, ``every_other`` = 2,
    a fraction f in (0, 1] = round(1 / f) (0.25: every 4th layer)."""
    named = {"all": 1, "every_other": 2}
    if str(layers) in named:
        return named[str(layers)]
    try:
        fraction = float(layers)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise ConfigError(f"gradient_checkpointing_layers must be all, every_other or a fraction in (0, 1]; "
                          f"got {layers!r}")
    return max(1, round(1 / fraction))


def check_levers(cfg: Any) -> None:
    """The levers' settings, checked when the config is read (a dry run shows the error too)."""
    check_choice("compile", cfg.compile, COMPILE_MODES)
    if cfg.compile == "regional" and cfg.torch_compile:
        raise ConfigError("compile: regional and torch_compile: true both compile; torch_compile compiles the "
                          "whole model (long compile), regional each decoder layer: keep one")
    checkpoint_every_n(cfg.gradient_checkpointing_layers)
    if cfg.max_tokens_per_microbatch is not None:
        if cfg.max_tokens_per_microbatch < 1:
            raise ConfigError(f"max_tokens_per_microbatch must be positive, got {cfg.max_tokens_per_microbatch}")
        if not cfg.args.token_microbatches or cfg.batching == "packed":
            raise ConfigError(
                "max_tokens_per_microbatch sizes padding_free or padded SFT micro-batches; packed bins already "
                "hold max_length tokens each (set per_device_train_batch_size to bins per micro-batch)")


def before_loading(cfg: Any, mixed_precision: str, cuda: bool) -> None:
    """The checks that must come before anything loads: the Liger package, and (one GPU, no sharding engine)
    whether the weights and optimizer states fit (:func:`mixer.train.accel.memory.check_fits`)."""
    require_liger(bool(cfg.use_liger_kernel))
    if cfg.max_tokens_per_microbatch and mixed_precision == "DeepSpeed":
        raise ConfigError("max_tokens_per_microbatch does not run under DeepSpeed: its engine steps the optimizer at "
                          "each backward it counts, not once per step; use accelerate_config: fsdp2 or ddp")
    if cuda and cfg.check_memory and mixed_precision not in ("FSDP2", "DeepSpeed"):
        from mixer.train.accel.memory import check_fits

        line = check_fits(cfg, mixed_precision)
        if line:
            from mixer.train.runlog import decide

            decide("memory", "fits", line)


def lever_kwargs(cfg: Any, processes: int) -> dict[str, Any]:
    """The TRL config fields the levers set: whole steps per batch (token micro-batches) and which layers
    gradient checkpointing covers (transformers' ``every_n_layers``)."""
    out: dict[str, Any] = {}
    if cfg.max_tokens_per_microbatch:  # the data loader hands over whole optimizer steps, split by tokens later
        # (the effective batch divides by the processes: gradient_accumulation_steps checked it first)
        out.update(per_device_train_batch_size=cfg.effective_batch_size // processes, gradient_accumulation_steps=1)
    every = checkpoint_every_n(cfg.gradient_checkpointing_layers)
    if cfg.gradient_checkpointing and every > 1:
        require_every_n_layers()
        out["activation_checkpointing_kwargs"] = {**(cfg.activation_checkpointing_kwargs or {}),
                                                  "every_n_layers": every}
    return out


def require_every_n_layers() -> None:
    """Selective checkpointing is transformers' ``every_n_layers`` (5.24 has it; older releases do not)."""
    import inspect

    from transformers import PreTrainedModel

    method = getattr(PreTrainedModel, "activation_checkpointing_enable", None) or \
        PreTrainedModel.gradient_checkpointing_enable
    if "every_n_layers" not in inspect.signature(method).parameters:
        raise ConfigError("gradient_checkpointing_layers other than `all` needs a transformers with every_n_layers "
                          "(5.24 or newer): pip install -U transformers")


def after_building(trainer: Any, cfg: Any) -> None:
    """Install the levers on a built trainer: token micro-batches and regional compilation (with its timer)."""
    if cfg.max_tokens_per_microbatch:
        attach_token_microbatches(trainer, cfg.max_tokens_per_microbatch)
    if cfg.compile == "regional":
        compile_regional(trainer.model)
        trainer.add_callback(compile_timer())
