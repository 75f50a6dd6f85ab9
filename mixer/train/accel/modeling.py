"""Model, tokenizer, attention kernel and (Q)LoRA setup.

Everything here imports torch/transformers lazily: callers have already passed ``require_train_deps``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from mixer.core.chat import TULU_CHAT_TEMPLATE
from mixer.core.errors import MixerError
from mixer.train.accel.attention import TORCH_VARLEN, register_torch_varlen
from mixer.train.accel.host import engine_mixed_precision
from mixer.train.config import ConfigError, RunConfig
from mixer.train.deps import MissingDependencyError, cuda_available


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


def check_model_source(source: str | Path, option: str | None = "--model") -> None:
    """Refuse a model path that is plainly local but missing, before transformers sends it to the Hub.

    ``runs/sft-typo`` has the shape of a Hub id (``org/name``), so ``from_pretrained`` asks huggingface.co
    and answers, offline, with a several-line connection error that never says the folder is missing.
    Plainly local: it starts with ``/``, ``.`` or ``~``, has more than one ``/``, or its first part is a
    folder here (``runs``). A bare ``name`` or an ``org/name`` with no such folder stays a Hub id.
    """
    text = str(source)
    if Path(text).expanduser().exists():
        return
    parts = text.split("/")
    if text.startswith(("/", ".", "~")) or len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir()):
        label = f"{option} {text}" if option else text
        raise MixerError(f"{label}: no such model folder; for an offline model to try mixer with: "
                         "mixer dev tiny-model DIR")


def load_tokenizer(cfg: RunConfig, *, need_markers: bool) -> Any:
    """The tokenizer with the training chat template set and a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.model
    check_model_source(source, "--tokenizer" if cfg.tokenizer else "--model")
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


def load_model(cfg: RunConfig, attn_implementation: str, dtype: str | None = None,
               auto_class: str = "AutoModelForCausalLM", **kwargs: Any) -> Any:
    """The model to train (``auto_class``, e.g. a one-label ``AutoModelForSequenceClassification`` for a reward
    model, whose new head is seeded by ``seed``); the Trainer moves it to the device.

    ``dtype``: the resolved weight dtype (fp32 master weights for full fine-tuning, see
    :func:`mixer.train.accel.host.weights_dtype`); ``cfg.dtype`` when not given. With ``load_in_4bit`` the base
    is quantised on load (TRL's ``get_quantization_config``: NF4, double quantisation, matmuls in
    ``bnb_4bit_compute_dtype``) and prepared for k-bit training (norms in fp32, input grads enabled) before TRL
    wraps it in the adapter.
    """
    import transformers
    from trl import get_quantization_config

    if attn_implementation == TORCH_VARLEN:
        register_torch_varlen()
    transformers.set_seed(cfg.seed)
    kwargs.update(dtype=dtype or cfg.dtype, attn_implementation=attn_implementation)  # a name: from_pretrained maps it
    if cfg.load_in_4bit:  # check_qlora_supported() ran before anything was loaded (build_trainer)
        kwargs["quantization_config"] = get_quantization_config(cfg.model_config(dtype=cfg.bnb_4bit_compute_dtype))
    if cfg.load_in_4bit or (cuda_available() and engine_mixed_precision() is None):
        # straight from safetensors to this process's GPU (and cast there): a 7B in fp32 is 27 GiB that
        # would otherwise be converted on the CPU first. FSDP/DeepSpeed place (and shard) weights themselves.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = getattr(transformers, auto_class).from_pretrained(cfg.model, **kwargs)
    except OSError as e:
        raise MixerError(f"cannot load a model from {cfg.model}: {e}") from e
    except ValueError as e:
        raise MixerError(f"{cfg.model}: cannot load it as {auto_class}: {e}") from e
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model
