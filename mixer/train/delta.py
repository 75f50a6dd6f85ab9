"""Delta tuning beyond LoRA: which PEFT method a run trains, as one ``peft_method`` key.

The delta-tuning survey (Ding et al. 2023) sorts parameter-efficient methods into *addition* (prompt and
prefix tuning add virtual tokens or per-layer key/value prefixes), *specification* and *reparameterisation*
(LoRA and DoRA add low-rank weight deltas; (IA)^3 learns per-channel scales); Astraios (Zhuo et al. 2024)
compares them on code LLMs. TRL builds LoRA/DoRA/QLoRA from its ``ModelConfig`` (``get_peft_config``); the
other methods are peft's own configs, made here. Only weight deltas (LoRA, DoRA, (IA)^3) can be folded into
the base by ``mixer train merge``; prompt and prefix tuning stay adapters that peft loads beside the model.
"""

from __future__ import annotations

from typing import Any

from mixer.train.args import ConfigError, check_choice

PEFT_METHODS = ("lora", "qlora", "dora", "ia3", "prompt_tuning", "prefix_tuning")
#: methods whose adapter is a weight delta ``merge_and_unload`` folds into the base
MERGEABLE = ("lora", "qlora", "dora", "ia3")
#: methods that add virtual tokens before the sequence, so every row needs its own positions from 0:
#: padding-free and packed rows (many sequences in one row) cannot carry them
VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning")
#: peft's ``peft_type`` in adapter_config.json -> the method name users set
PEFT_TYPES = {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt_tuning", "PREFIX_TUNING": "prefix_tuning"}


def resolved_method(cfg: Any) -> str | None:
    """The method a run trains: ``peft_method`` when set, else ``lora``/``qlora`` from ``use_peft`` and
    ``load_in_4bit`` (the keys recipes used before ``peft_method``), else None (full fine-tuning)."""
    if cfg.peft_method:
        return cfg.peft_method
    if cfg.use_peft:
        return "qlora" if cfg.load_in_4bit else "lora"
    return None


def check_peft(cfg: Any) -> None:
    """``peft_method`` implies ``use_peft`` (and ``qlora`` 4-bit weights: both are set on ``cfg``); methods that
    prepend virtual tokens need padded rows; an adapter's task type is its trainer's (a reward model's adapter
    with ``CAUSAL_LM`` would leave the new score head untrained and unsaved)."""
    method = cfg.peft_method
    if method is not None:
        check_choice("peft_method", method, PEFT_METHODS)
        if cfg.values.get("use_peft") is False:
            raise ConfigError(f"peft_method {method} trains an adapter, but use_peft is false; drop one of them")
        cfg.values["use_peft"] = True
        if method == "qlora":
            cfg.values["load_in_4bit"] = True
        elif cfg.load_in_4bit and method != "lora":
            raise ConfigError(f"load_in_4bit is QLoRA (LoRA over 4-bit weights); peft_method {method} does not "
                              "take it: use peft_method: qlora, or drop load_in_4bit")
        if method in VIRTUAL_TOKEN_METHODS:
            if cfg.batching != "padded":
                raise ConfigError(
                    f"peft_method {method} puts {cfg.num_virtual_tokens} virtual tokens before every sequence, so "
                    f"rows cannot hold several sequences: set batching: padded (it is {cfg.batching})")
            if cfg.num_virtual_tokens < 1:
                raise ConfigError(f"num_virtual_tokens must be positive, got {cfg.num_virtual_tokens}")
    if cfg.use_peft and cfg.lora_task_type != cfg.args.task_type:
        raise ConfigError(f"lora_task_type {cfg.lora_task_type!r} does not fit `mixer train {cfg.kind}`, whose adapter "
                          f"is {cfg.args.task_type}; drop the key")


def peft_config(cfg: Any) -> Any:
    """The peft config of the run's method, or None for full fine-tuning.

    The task type is TRL's ``lora_task_type``, checked to be the trainer's (:func:`check_peft`): ``CAUSAL_LM`` for
    SFT/DPO/RLOO, ``SEQ_CLS`` for reward models (peft then trains the new score head in full, whatever the method).
    """
    method = resolved_method(cfg)
    if method is None:
        return None
    task_type = cfg.lora_task_type
    if method in ("lora", "qlora", "dora"):
        from trl import get_peft_config

        return get_peft_config(cfg.model_config(use_peft=True, use_dora=method == "dora", lora_task_type=task_type))
    import peft

    if method == "ia3":
        # peft's own per-architecture defaults (Llama: k_proj, v_proj, down_proj; down_proj as feed-forward)
        return peft.IA3Config(task_type=task_type)
    if method == "prompt_tuning":
        return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)
    return peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)


def check_mergeable(adapter_config: dict[str, Any], where: str) -> None:
    """Refuse to merge an adapter that is not a weight delta, naming its method."""
    from mixer.core.errors import MixerError

    method = PEFT_TYPES.get(str(adapter_config.get("peft_type", "")).upper(), adapter_config.get("peft_type"))
    if method in VIRTUAL_TOKEN_METHODS:
        raise MixerError(
            f"{where}: a {method} adapter adds {adapter_config.get('num_virtual_tokens', 'its')} virtual tokens "
            "in front of every input, not a change of weights, so there is nothing to fold into the base model; "
            "serve it with peft (PeftModel.from_pretrained(base, adapter)) instead of merging")
    if method not in MERGEABLE:
        raise MixerError(f"{where}: mixer train merge folds {', '.join(MERGEABLE)} adapters; this one is {method}")
