"""``mixer train merge``: fold a LoRA (or DoRA, (IA)^3) adapter into its base weights and save a plain model.

QLoRA trains an adapter over 4-bit weights; serving and the next stage (DPO) want one ordinary model.
The adapter is merged into the *unquantised* base (loaded in ``dtype``), as the QLoRA and Tulu 2
releases do, so no quantisation error is baked into the merged weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.train.config import RunConfig
from mixer.train.delta import check_mergeable
from mixer.train.deps import require_train_deps
from mixer.train.trainer import save_resolved_config


def adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``, checked to be a weight delta that can be merged."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise MixerError(f"{adapter_dir} is not a LoRA adapter (no adapter_config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    check_mergeable(config, str(adapter_dir))
    return config


def run_merge(cfg: RunConfig) -> Path:
    """Load base + adapter, ``merge_and_unload``, save model and tokenizer; returns the output dir. ``cfg``
    comes from ``load_config("merge", ...)`` with ``model`` and ``output_dir`` set (the CLI checks both)."""
    require_train_deps(("torch", "transformers", "peft"))
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recorded = adapter_config(cfg.model)  # also with --set base_model: a prompt/prefix adapter has nothing to merge
    base_path = cfg.base_model or recorded.get("base_model_name_or_path")
    if not base_path:
        raise MixerError(f"{Path(cfg.model) / 'adapter_config.json'} does not name its base model; pass --set "
                         "base_model=<dir>")
    try:
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=cfg.dtype)
    except OSError as e:
        raise MixerError(f"cannot load the base model {base_path}: {e}") from e
    model: Any = PeftModel.from_pretrained(base, cfg.model)
    merged = model.merge_and_unload()
    out = Path(cfg.output_dir)
    merged.save_pretrained(out)
    tokenizer_src = cfg.model if (Path(cfg.model) / "tokenizer_config.json").is_file() else base_path
    AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(out)
    save_resolved_config(cfg)
    return out
