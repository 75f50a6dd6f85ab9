"""Model, tokenizer, attention kernel and (Q)LoRA setup.

Everything here imports torch/transformers lazily: callers have already passed ``require_train_deps``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

from mixer.chat import TULU_CHAT_TEMPLATE
from mixer.errors import MixerError
from mixer.train.config import BaseRunConfig, ConfigError
from mixer.train.deps import MissingDependencyError, cuda_available

logger = logging.getLogger("mixer.train")


def choose_attn_implementation(requested: str = "auto", *, cuda: bool | None = None) -> str:
    """The attention kernel to load the model with, and why (logged).

    FlashAttention runs variable-length sequences without a mask, which is what makes padding-free and
    packed batches cheap; it only exists for CUDA. FA3 (``flash_attn_interface``) needs Hopper (sm90),
    FA2 (``flash_attn``) Ampere or newer. Anywhere else SDPA is the fast, always-available choice; with
    padding-free batches transformers then builds a block-diagonal mask from ``position_ids`` (correct,
    but it pays for the masked attention a varlen kernel would skip).
    """
    if cuda is None:
        cuda = cuda_available()
    if requested != "auto":
        if requested.startswith("flash_attention") and not cuda:
            raise MixerError(f"attn_implementation {requested} needs a CUDA GPU; use auto or sdpa on this host")
        module = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(requested)
        if module and importlib.util.find_spec(module) is None:
            raise MixerError(f"attn_implementation {requested} needs the `{module}` package, which is not installed")
        logger.info("attention: %s (requested)", requested)
        return requested
    choice, why = "sdpa", "no CUDA device" if not cuda else "flash-attn is not installed"
    if cuda:
        import torch

        major, _minor = torch.cuda.get_device_capability()
        if major >= 9 and importlib.util.find_spec("flash_attn_interface") is not None:
            choice, why = "flash_attention_3", f"flash_attn_interface importable on sm{major}x"
        elif major >= 8 and importlib.util.find_spec("flash_attn") is not None:
            choice, why = "flash_attention_2", f"flash_attn importable on sm{major}x"
        elif major < 8:
            why = f"GPU compute capability {major}.x is below 8.0"
    logger.info("attention: %s (auto: %s)", choice, why)
    return choice


def torch_dtype(name: str) -> Any:
    """``"bfloat16"`` -> ``torch.bfloat16``; ``"auto"`` is passed through for transformers."""
    if name == "auto":
        return "auto"
    import torch

    return getattr(torch, name)


def resolve_chat_template(tokenizer: Any, choice: str, *, need_markers: bool) -> str:
    """The Jinja template to train with.

    ``need_markers``: assistant-only loss reads ``{% generation %}`` spans, so a tokenizer template
    without them is swapped for TRL's training variant when TRL knows it, else rejected with a hint.
    """
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if choice == "tulu" or (choice == "auto" and not own):
        return TULU_CHAT_TEMPLATE
    if choice in ("tokenizer", "auto"):
        if not own:
            raise ConfigError("chat_template: tokenizer, but the tokenizer has no chat template; use `tulu`")
        template = own
    else:
        path = Path(choice)
        if not path.is_file():
            raise ConfigError(f"chat_template must be auto, tulu, tokenizer or a .jinja file; {choice!r} is none")
        template = path.read_text(encoding="utf-8")
    if need_markers and not re.search(r"\{%-?\s*generation\s*-?%\}", template):
        from trl.chat_template_utils import get_training_chat_template

        try:
            patched = get_training_chat_template(tokenizer)
        except Exception:  # noqa: BLE001 - TRL raises ValueError/KeyError for templates it does not know
            patched = None
        if not patched:
            raise ConfigError(
                "the chat template has no {% generation %} markers, so assistant-only loss cannot find the "
                "assistant tokens; use chat_template: tulu, add the markers, or set assistant_only_loss: false"
            )
        template = patched
    return template


def load_tokenizer(cfg: BaseRunConfig, *, need_markers: bool) -> Any:
    """The tokenizer with the training chat template set and a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise MixerError(f"cannot load a tokenizer from {source}: {e}") from e
    tokenizer.chat_template = resolve_chat_template(tokenizer, cfg.chat_template, need_markers=need_markers)
    if tokenizer.eos_token is None:
        raise ConfigError(f"the tokenizer at {source} has no eos token; the chat format ends turns with it")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_qlora_supported() -> None:
    """QLoRA's 4-bit kernels are CUDA-only bitsandbytes kernels; fail before loading anything."""
    if not cuda_available():
        raise MixerError(
            "QLoRA (load_in_4bit: true) needs a CUDA GPU: bitsandbytes 4-bit NF4 kernels do not run on CPU. "
            "On this host use LoRA without quantisation (--set load_in_4bit=false) or full fine-tuning."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError("QLoRA (load_in_4bit: true) needs bitsandbytes: pip install bitsandbytes")


def quantization_config(cfg: BaseRunConfig) -> Any:
    """NF4 4-bit with double quantisation and bf16 compute (the QLoRA paper's and Tulu 2's setting)."""
    check_qlora_supported()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=torch_dtype(cfg.bnb_4bit_compute_dtype),
    )


def lora_config(cfg: BaseRunConfig) -> Any:
    """A causal-LM LoRA config over ``lora_target_modules``."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model(cfg: BaseRunConfig, attn_implementation: str) -> Any:
    """The model to train, on CPU/meta as transformers decides; the Trainer moves it to the device.

    With ``load_in_4bit`` the base weights are quantised on load and prepared for k-bit training
    (norms in fp32, input grads enabled) before TRL wraps them in the LoRA adapter.
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg.dtype), "attn_implementation": attn_implementation}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(cfg)
        kwargs["device_map"] = {"": _local_device_index()}
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    except OSError as e:
        raise MixerError(f"cannot load a model from {cfg.model}: {e}") from e
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def _local_device_index() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", "0"))
