"""What mixer adds to TRL's configs, per trainer, and which key of a recipe belongs to whom.

:class:`MixerArgs` and its per-method subclasses hold only what TRL has no field for (the data, the batching
mode, the chat template, precision, the effective batch, launch); ``tests/train/test_train_config.py`` checks
that none re-declares a TRL field. The tables below say which TRL config each trainer uses, mixer's defaults
for TRL's fields, the old key names that keep working and the TRL fields mixer derives.
:mod:`mixer.train.config` reads a recipe into these owners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mixer.core.errors import MixerError

LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCHING_MODES = ("padding_free", "packed", "padded")
ATTN_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flash_attention_4", "torch_varlen")
DTYPES = ("auto", "bfloat16", "float16", "float32")
MIXED_PRECISION = ("auto", "autocast", "bf16_copy")
COMPILE_MODES = ("none", "regional")


class ConfigError(MixerError):
    """A train config key, type or value is wrong."""


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse a value outside ``choices``, naming the key and the valid values."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class MixerArgs:
    """What mixer adds to TRL's configs (``field(metadata={"help": ...})`` as TRL writes its own), and the
    checks of what one trainer adds (:meth:`check`; :meth:`mixer.train.config.RunConfig.validate` calls it)."""

    #: why this trainer takes padded batches only ("" = every batching mode)
    padded_only: ClassVar[str] = ""
    #: whether ``max_tokens_per_microbatch`` can size this trainer's micro-batches
    token_microbatches: ClassVar[bool] = False
    #: the task type of this trainer's adapter (TRL's ``lora_task_type``, which must agree when it is set)
    task_type: ClassVar[str] = "CAUSAL_LM"

    data: str | None = field(default=None, metadata={
        "help": "A `mixer build` output dir (reads data/*.parquet), a dir of Parquet, or one file."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Train into a non-empty output_dir that is not an earlier mixer run (refused otherwise)."})
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer directory; defaults to `model`."})
    chat_template: str = field(default="auto", metadata={
        "help": "`tulu` (the Tulu 2 format), `tokenizer` (its own template), a .jinja file, or `auto`: the "
        "tokenizer's template if it has one, else `tulu`."})
    batching: str = field(default="padding_free", metadata={
        "help": "`padding_free`: each micro-batch of examples flattened into one row (same examples per step as "
        "the paper); `packed`: best-fit-decreasing bins of max_length tokens; `padded`: classic right padding."})
    mixed_precision: str = field(default="auto", metadata={
        "help": f"One of {MIXED_PRECISION}: `bf16_copy` keeps bf16 copies of the fp32 master weights, cast once "
        "per optimizer step; `autocast` casts them in every forward; `auto` = bf16_copy for one-process full "
        "fine-tuning with bf16, autocast otherwise (multi-GPU presets use FSDP2's or DeepSpeed's own policy)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows (smoke)."})
    effective_batch_size: int = field(default=128, metadata={
        "help": "Examples per optimizer step = per-device batch x gradient accumulation x processes; the "
        "accumulation is derived (and checked to divide)."})
    bnb_4bit_compute_dtype: str = field(default="bfloat16", metadata={
        "help": "QLoRA: dtype of the 4-bit matmuls (TRL's ModelConfig would take `dtype`)."})
    accelerate_config: str = field(default="ddp", metadata={
        "help": "`ddp`, `zero3`, `fsdp2` (train/accelerate/<name>.yaml) or a path to an accelerate YAML."})
    num_processes: int | None = field(default=None, metadata={
        "help": "Processes (GPUs) to launch; default: every visible GPU, else 1."})
    max_tokens_per_microbatch: int | None = field(default=None, metadata={
        "help": "Size micro-batches by tokens (e.g. 16384 on one GPU): each optimizer step still takes "
        "effective_batch_size examples, split into micro-batches of at most this many tokens; the loss still "
        "weighs every assistant token of the step equally. padding_free/padded batching; None = by examples."})
    compile: str = field(default="none", metadata={
        "help": "`regional`: torch.compile each decoder layer (not the whole model); its compile time is logged "
        "(compile_s in metrics.jsonl). `none`: eager."})
    gradient_checkpointing_layers: str | float = field(default="all", metadata={
        "help": "With gradient_checkpointing: `all` layers, `every_other` (half of them), or a fraction such as "
        "0.25 (every 4th layer): the rest keep their activations, trading memory for no recompute."})
    check_memory: bool = field(default=True, metadata={
        "help": "On one GPU, refuse before loading when the estimated weights + gradients + optimizer states do "
        "not fit the card's free memory."})
    peft_method: str | None = field(default=None, metadata={
        "help": "Delta tuning: lora, qlora (LoRA over 4-bit weights), dora, ia3, prompt_tuning or prefix_tuning; "
        "unset: full fine-tuning, or LoRA/QLoRA from use_peft/load_in_4bit as before."})
    num_virtual_tokens: int = field(default=20, metadata={
        "help": "prompt_tuning / prefix_tuning: the virtual tokens (or per-layer prefixes) trained."})

    def check(self, cfg: Any) -> None:
        """The trainer's own checks of the run's settings ``cfg`` (a subclass adds its method's)."""
        if self.padded_only and cfg.batching != "padded":
            raise ConfigError(f"batching {cfg.batching!r} is not available for {self.padded_only}; set batching: "
                              "padded")


@dataclass
class SFTArgs(MixerArgs):
    """What SFT adds: the check of the chat template's loss mask before training."""

    token_microbatches: ClassVar[bool] = True

    check_template: bool = field(default=True, metadata={
        "help": "Before training, check on a sample that the template's loss mask covers exactly the assistant "
        "turns and their end-of-turn token (`mixer check-template`); refuse to train otherwise."})

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        check_choice("packing_strategy", cfg.packing_strategy, ("bfd", "bfd_split", "wrapped"))


@dataclass
class DPOArgs(MixerArgs):
    """DPO adds nothing to mixer's keys; its checks are its own."""

    padded_only: ClassVar[str] = ("DPO: TRL's trainer pads the chosen and rejected rows (padding-free DPO is off "
                                  "upstream)")

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        if cfg.beta <= 0:
            raise ConfigError(f"beta must be positive, got {cfg.beta}")


@dataclass
class RMArgs(MixerArgs):
    """Reward models (Llama 2, Touvron et al. 2023, §3.2.2): the rating margin and the held-out pairs."""

    padded_only: ClassVar[str] = "reward models: TRL's trainer pads the chosen and rejected rows"
    task_type: ClassVar[str] = "SEQ_CLS"  # peft then trains and saves the new score head in full

    margin: bool = field(default=False, metadata={
        "help": "Llama 2's margin m = min(gap / margin_full_gap, 1) from the pair's ratings (score_chosen - "
        "score_rejected, kept by a preference build); unrated pairs get 0; data with no rated pair is an error."})
    margin_full_gap: float = field(default=3.0, metadata={
        "help": "The rating gap that earns the full margin: with 3 (of 1-10), gaps 0/1/2/3+ give 0, 1/3, 2/3, 1 "
        "(Llama 2's 'Margin Small', Table 28)."})
    eval_size: float = field(default=0.05, metadata={
        "help": "Held-out pairs for the final pairwise accuracy: a fraction (< 1) or a count (>= 1); 0 = none."})
    min_warmup_steps: int = field(default=0, metadata={
        "help": "Warm up at least this many steps (Llama 2: 3 % of steps, at least 5)."})

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        if self.margin_full_gap <= 0:
            raise ConfigError(f"margin_full_gap must be positive, got {self.margin_full_gap}")
        if self.eval_size < 0 or (self.eval_size >= 1 and not float(self.eval_size).is_integer()):
            raise ConfigError(f"eval_size must be 0, a fraction below 1 or a whole count, got {self.eval_size}")
        if self.min_warmup_steps < 0:
            raise ConfigError(f"min_warmup_steps must be >= 0, got {self.min_warmup_steps}")


@dataclass
class MergeArgs:
    """Merge a LoRA adapter into its base model and save a plain model (what QLoRA training ends with)."""

    model: str | None = field(default=None, metadata={"help": "The adapter directory (a LoRA training run)."})
    base_model: str | None = field(default=None, metadata={
        "help": "Base model; default: the adapter's base_model_name_or_path."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the merged model is written."})


@dataclass
class RLOOArgs(MixerArgs):
    """On-policy RL (RLOO) with a reward model from ``mixer train rm``."""

    padded_only: ClassVar[str] = "RLOO: TRL's trainer generates and scores padded batches"

    reward_model: str | None = field(default=None, metadata={
        "help": "The reward model scoring each completion (a `mixer train rm` output folder)."})

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        if cfg.num_generations < 2 or cfg.beta < 0:
            raise ConfigError(f"RLOO needs num_generations >= 2 (the leave-one-out baseline) and beta >= 0, got "
                              f"{cfg.num_generations} and {cfg.beta}")


MIXER_ARGS: dict[str, type] = {"sft": SFTArgs, "dpo": DPOArgs, "rm": RMArgs, "rloo": RLOOArgs,
                               "merge": MergeArgs}
TRL_CONFIGS = {"sft": "SFTConfig", "dpo": "DPOConfig", "rm": "RewardConfig", "rloo": "RLOOConfig"}

#: mixer's defaults for fields TRL owns, where they differ from TRL's; the recipes say where each comes from
DEFAULTS: dict[str, dict[str, Any]] = {
    "common": {"bf16": True, "num_train_epochs": 2.0, "learning_rate": 2e-5, "warmup_steps": 0.03,
               "max_length": 8192, "per_device_train_batch_size": 1, "optim": "adamw_torch", "logging_steps": 10,
               "save_strategy": "epoch", "report_to": "none", "dtype": "bfloat16", "attn_implementation": "auto",
               "lora_r": 64, "lora_alpha": 16, "lora_dropout": 0.1, "lora_target_modules": LLAMA_LINEAR_MODULES,
               "use_bnb_nested_quant": True},
    "sft": {"assistant_only_loss": True},
    "rm": {"lora_task_type": RMArgs.task_type},  # written in the saved config; check_peft holds adapters to it
    # a merge keeps the base's own precision (its checkpoint's dtype): bf16 halved an fp32 base without a word
    "merge": {"dtype": "auto"},
}

#: other names of a key -> the key that holds the setting (both are accepted): mixer's short ``model`` (the
#: CLI's ``--model``) for TRL's ``model_name_or_path``, and keys of earlier mixer versions. A trainer whose
#: owners have no such key keeps its own (``merge``'s ``model`` is the adapter folder).
RENAMED = {"use_lora": "use_peft", "bnb_4bit_use_double_quant": "use_bnb_nested_quant",
           "warmup_ratio": "warmup_steps", "model": "model_name_or_path"}

#: TRL fields mixer derives, and the key to set instead
DERIVED = {"gradient_accumulation_steps": "effective_batch_size", "packing": "batching", "padding_free": "batching",
           "fp16": "bf16"}
