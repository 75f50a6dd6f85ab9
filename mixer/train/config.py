"""Typed run configs, YAML loading and ``--set key=value`` overrides.

A recipe is a flat YAML mapping whose keys are the fields below (plus ``trainer: sft|dpo|rm|merge`` so a
DPO recipe cannot be run by ``mixer train sft`` by mistake). Flat keys keep ``--set`` simple: any field
can be overridden with its name. Values in YAML and in ``--set`` are parsed as YAML scalars and then
coerced to the field's type (PyYAML reads ``2e-5`` as a string, so floats need the coercion).

The dataclasses mirror TRL's config style (``field(metadata={"help": ...})``) so that the help text
lives next to the default it explains; only the knobs a recipe needs are here, and ``trl_args`` passes
anything else straight to ``SFTConfig``/``DPOConfig``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixer.errors import MixerError, did_you_mean
from mixer.yamlio import UniqueKeyLoader


class ConfigError(MixerError):
    """A recipe key, type or value is wrong."""


class _Loader(UniqueKeyLoader):
    """YAML with 1.2 booleans: only true/false are booleans, so ``save_strategy: no`` stays the string
    TrainingArguments expects (PyYAML's 1.1 rules read yes/no/on/off as booleans). A key given twice in
    one mapping is an error (PyYAML would keep the last one silently)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (or one ``--set`` value) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

BATCHING_MODES = ("padding_free", "packed", "padded")
ATTN_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flash_attention_4", "torch_varlen")
DTYPES = ("auto", "bfloat16", "float16", "float32")
MIXED_PRECISION = ("auto", "autocast", "bf16_copy")


@dataclass
class BaseRunConfig:
    """Fields shared by SFT and DPO: paths, model loading, optimisation, batching, LoRA/QLoRA, launch."""

    # Paths (usually given on the command line)
    model: str | None = field(default=None, metadata={"help": "Local model directory (or hub id, if online)."})
    data: str | None = field(
        default=None,
        metadata={"help": "A `mixer build` output dir (reads data/*.parquet), a dir of Parquet, or one file."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where checkpoints and the final model go."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into a non-empty output_dir that is not an earlier mixer run (refused otherwise)."},
    )
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer directory; defaults to `model`."})

    # Model loading
    chat_template: str = field(
        default="auto",
        metadata={
            "help": "`tulu` (the Tulu 2 format), `tokenizer` (the tokenizer's own template), a .jinja file, or "
            "`auto`: the tokenizer's template if it has one, else `tulu`."
        },
    )
    attn_implementation: str = field(
        default="auto",
        metadata={
            "help": f"One of {ATTN_CHOICES}; `auto` = FlashAttention 3/2/4 if transformers reports it usable on "
            "the GPU, else `torch_varlen` (PyTorch's FlashAttention varlen kernel) on CUDA, else sdpa."
        },
    )
    dtype: str = field(
        default="bfloat16",
        metadata={
            "help": f"Dtype of frozen weights (the LoRA/QLoRA base), one of {DTYPES}. Full fine-tuning always "
            "keeps fp32 master weights and computes in bf16 when `bf16: true`."
        },
    )
    bf16: bool = field(default=True, metadata={"help": "bf16 mixed precision (TrainingArguments.bf16)."})
    mixed_precision: str = field(
        default="auto",
        metadata={
            "help": f"How one process computes in bf16 over fp32 master weights, one of {MIXED_PRECISION}: "
            "`bf16_copy` keeps a bf16 copy of the weights, cast once per optimizer step; `autocast` casts "
            "them in every forward and recomputation; `auto` = bf16_copy for one-process full fine-tuning "
            "with bf16, autocast otherwise (multi-GPU presets use FSDP2's or DeepSpeed's own policy)."
        },
    )
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations to save memory."})

    # Data
    max_length: int = field(default=8192, metadata={"help": "Tokens per example; longer ones are truncated."})
    batching: str = field(
        default="padding_free",
        metadata={
            "help": "`padding_free`: each micro-batch of examples is flattened into one row without padding "
            "(same examples per step as the paper); `packed`: best-fit-decreasing bins of max_length tokens "
            "(a row is a bin, not an example); `padded`: classic right padding, for comparison."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows (smoke)."})
    dataset_num_proc: int | None = field(
        default=None,
        metadata={"help": "Processes for tokenisation; default min(cores, 16), one process below 10,000 rows."},
    )

    # Optimisation
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs over the data."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, stop after this many optimizer steps."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of steps spent warming up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    optim: str = field(default="adamw_torch", metadata={"help": "transformers optimizer name."})
    effective_batch_size: int = field(
        default=128,
        metadata={"help": "per-device batch x gradient accumulation x world size; accumulation is derived."},
    )
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Micro-batch per process."})
    seed: int = field(default=42, metadata={"help": "Random seed (data order, LoRA init)."})

    # Logging and checkpoints
    logging_steps: int = field(default=10, metadata={"help": "Log every N optimizer steps."})
    save_strategy: str = field(default="epoch", metadata={"help": "`no`, `steps` or `epoch`."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps when save_strategy=steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep at most N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint dir, or `last` for the newest checkpoint-* in output_dir."},
    )
    report_to: str = field(default="none", metadata={"help": "`none`, `tensorboard`, `wandb`, ..."})

    # LoRA / QLoRA
    use_lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of all weights."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),
        metadata={"help": "Linear modules to adapt (default: all attention and feed-forward linears)."},
    )
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: 4-bit base weights (bitsandbytes, GPU)."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "`nf4` or `fp4`."})
    bnb_4bit_use_double_quant: bool = field(default=True, metadata={"help": "Quantise the quantisation constants."})
    bnb_4bit_compute_dtype: str = field(default="bfloat16", metadata={"help": "Dtype of the 4-bit matmuls."})

    # Launch
    accelerate_config: str = field(
        default="ddp",
        metadata={"help": "`ddp`, `zero3`, `fsdp2` (train/accelerate/<name>.yaml) or a path to an accelerate YAML."},
    )
    num_processes: int | None = field(
        default=None, metadata={"help": "Processes (GPUs) to launch; default: every visible GPU, else 1."}
    )
    ddp_timeout: int = field(
        default=1800,
        metadata={"help": "Seconds ranks wait at a barrier (e.g. while rank 0 tokenises) before failing."},
    )

    # Escape hatch
    trl_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra SFTConfig/DPOConfig fields passed through unchanged (`--set trl_args.x=y`)."},
    )

    def validate(self) -> None:
        """Reject values TRL would only reject deep inside a run (or silently accept)."""
        _check_choice("batching", self.batching, BATCHING_MODES)
        _check_choice("attn_implementation", self.attn_implementation, ATTN_CHOICES)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if self.max_length < 1:
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        if self.load_in_4bit and not self.use_lora:
            raise ConfigError("load_in_4bit (QLoRA) needs use_lora: true; 4-bit weights cannot be trained directly")
        if self.lora_r < 1:
            raise ConfigError(f"lora_r must be positive, got {self.lora_r}")


@dataclass
class SFTRunConfig(BaseRunConfig):
    """Supervised fine-tuning on a V2 mixture (`messages`). Defaults are the Tulu 2 SFT recipe."""

    assistant_only_loss: bool = field(
        default=True,
        metadata={"help": "Loss only on assistant tokens (+ their end-of-turn token), via {% generation %}."},
    )
    packing_strategy: str = field(default="bfd", metadata={"help": "TRL packing strategy when batching=packed."})
    check_template: bool = field(
        default=True,
        metadata={"help": "Before training, check on a sample that the template's loss mask covers exactly the "
                  "assistant turns and their end-of-turn token (`mixer check-template`); refuse otherwise."},
    )

    def validate(self) -> None:
        super().validate()
        _check_choice("packing_strategy", self.packing_strategy, ("bfd", "bfd_split", "wrapped"))


@dataclass
class DPORunConfig(BaseRunConfig):
    """Direct preference optimisation on `prompt`/`chosen`/`rejected`. Defaults follow Zephyr-beta."""

    beta: float = field(default=0.1, metadata={"help": "KL strength: higher stays closer to the reference."})
    loss_type: str = field(default="sigmoid", metadata={"help": "TRL DPO loss (`sigmoid` = original DPO)."})
    precompute_ref_log_probs: bool = field(
        default=False, metadata={"help": "Score the reference once up front and free it (saves memory)."}
    )

    def validate(self) -> None:
        super().validate()
        if self.batching != "padded":
            raise ConfigError(
                f"batching {self.batching!r} is not available for DPO: TRL 1.x's DPOTrainer pads "
                "(padding-free DPO is disabled upstream); set batching: padded"
            )
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")


@dataclass
class RMRunConfig(BaseRunConfig):
    """A reward model on `prompt`/`chosen`/`rejected` pairs: the base model with a one-scalar head, trained with
    the binary ranking loss ``-log sigmoid(r_chosen - r_rejected - m)`` (Llama 2, Touvron et al. 2023, §3.2.2).
    Defaults are the Llama 2 reward-model settings where the paper gives them (see train/rm.yaml)."""

    margin: bool = field(
        default=False,
        metadata={
            "help": "Llama 2's margin m: derived from the pair's rating gap (`score_chosen - score_rejected` columns, "
            "as in UltraFeedback's 1-10 ratings; a preference build keeps them) as min(gap / margin_full_gap, 1); "
            "unrated pairs get m = 0, and data with no rated pair is an error. Off: m = 0 (HH-RLHF has no ratings)."
        },
    )
    margin_full_gap: float = field(
        default=3.0,
        metadata={
            "help": "The rating gap that earns the full margin 1. With 3 (of a 1-10 scale), gaps of 0/1/2/3+ give "
            "0, 1/3, 2/3, 1: Llama 2's 'Margin Small' for negligibly/slightly/better/significantly better."
        },
    )
    eval_size: float = field(
        default=0.05,
        metadata={
            "help": "Held-out pairs for the pairwise accuracy written at the end: a fraction (< 1) or a count (>= 1); "
            "0 = no held-out set."
        },
    )
    min_warmup_steps: int = field(
        default=0, metadata={"help": "Warm up at least this many steps (Llama 2: 3 % of steps, at least 5)."}
    )
    center_rewards_coefficient: float | None = field(
        default=None,
        metadata={"help": "TRL's auxiliary loss pulling rewards towards 0 (Eisenstein et al. 2023); off in Llama 2."},
    )

    def validate(self) -> None:
        super().validate()
        if self.batching != "padded":
            raise ConfigError(
                f"batching {self.batching!r} is not available for reward models: TRL's RewardTrainer pads the "
                "chosen and rejected rows of a batch together; set batching: padded"
            )
        if self.margin_full_gap <= 0:
            raise ConfigError(f"margin_full_gap must be positive, got {self.margin_full_gap}")
        if self.eval_size < 0:
            raise ConfigError(f"eval_size must be 0, a fraction below 1 or a count, got {self.eval_size}")
        if self.eval_size >= 1 and not float(self.eval_size).is_integer():
            raise ConfigError(f"eval_size >= 1 is a count of pairs and must be whole, got {self.eval_size}")
        if self.min_warmup_steps < 0:
            raise ConfigError(f"min_warmup_steps must be >= 0, got {self.min_warmup_steps}")


@dataclass
class MergeRunConfig:
    """Merge a LoRA adapter into its base model and save a plain model (what QLoRA training ends with)."""

    model: str | None = field(default=None, metadata={"help": "The adapter directory (a LoRA training run)."})
    base_model: str | None = field(
        default=None, metadata={"help": "Base model; default: the adapter's base_model_name_or_path."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the merged model is written."})
    dtype: str = field(
        default="bfloat16",
        metadata={"help": "Dtype of the base weights for merging; QLoRA merges into unquantised weights."},
    )

    def validate(self) -> None:
        _check_choice("dtype", self.dtype, DTYPES)


CONFIG_CLASSES: dict[str, type] = {
    "sft": SFTRunConfig, "dpo": DPORunConfig, "rm": RMRunConfig, "merge": MergeRunConfig,
}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def field_names(cls: type) -> list[str]:
    """The keys a recipe for ``cls`` may set."""
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Coerce a YAML-parsed value to the field type ``tp``, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: cannot be null")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):  # --set lora_target_modules=q_proj,v_proj
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(name, v, item_tp) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _set_field(cfg: Any, hints: dict[str, Any], key: str, value: Any, source: str) -> None:
    names = list(hints)
    head, _, rest = key.partition(".")
    if head not in hints:
        raise ConfigError(
            f"{source}: unknown key {head!r}{did_you_mean(head, names)} for `{_kind_of(cfg)}`; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    if rest:  # dotted key into a dict field: trl_args.foo=bar
        if typing.get_origin(hints[head]) is not dict:
            raise ConfigError(f"{source}: {head!r} is not a mapping, so {key!r} cannot be set")
        getattr(cfg, head)[rest] = value
        return
    setattr(cfg, head, _coerce(f"{source}: {head}", value, hints[head]))


def _kind_of(cfg: Any) -> str:
    return next((k for k, c in CONFIG_CLASSES.items() if isinstance(cfg, c) and type(cfg) is c), "?")


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as a YAML scalar (``true``, ``3``, ``null``, ``[a, b]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


#: The shipped training recipes and accelerate presets (package data; ``train/`` in a checkout links here).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with mixer (``--config NAME``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path as given, else a shipped recipe by name (``tulu2-sft``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    shipped = RECIPES_DIR / f"{name}.yaml"
    if len(p.parts) <= 1 or p.parts[-2:-1] == ("train",):  # a bare name, or train/<name>.yaml outside a checkout
        if shipped.is_file():
            return shipped
    raise ConfigError(f"config {name_or_path} is neither a file nor a shipped recipe; shipped: "
                      f"{', '.join(shipped_recipes())}")


def load_config(
    kind: str,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    **cli_values: Any,
) -> Any:
    """Build the run config for ``kind`` (sft, dpo, rm, merge): dataclass defaults < YAML file < CLI options < --set.

    ``cli_values`` are the dedicated options (``model=``, ``data=``, ``output_dir=``...); ``None`` means
    "not given". Unknown keys anywhere raise ``ConfigError`` listing the valid keys.
    """
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"unknown trainer {kind!r}; expected one of {', '.join(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[kind]
    cfg = cls()
    hints = typing.get_type_hints(cls)
    if path is not None:
        p = resolve_recipe(path)
        data = p.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ConfigError(f"{p}: line {line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})"
                              ) from None
        try:
            raw = load_yaml(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of config keys")
        raw.pop("resolved", None)  # what a saved run resolved on its host (see runtime.py), not a setting
        declared = raw.pop("trainer", kind)
        if declared != kind:
            raise ConfigError(f"{p} is a `{declared}` recipe; run it with `mixer train {declared}`")
        for key, value in raw.items():
            _set_field(cfg, hints, str(key), value, str(p))
    for key, value in cli_values.items():
        if value is not None:
            _set_field(cfg, hints, key, value, "command line")
    for item in overrides or []:
        key, value = parse_override(item)
        _set_field(cfg, hints, key, value, f"--set {item}")
    cfg.validate()
    return cfg


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (what ``--dry-run`` prints and what a run saves next to its model)."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, default_flow_style=None)
