"""Direct preference optimisation with TRL's DPOTrainer on a conversational preference build."""

from __future__ import annotations

from typing import Any

from mixer.train.common import (
    make_trl_config,
    merge_trl_args,
    require_paths,
    train_and_save,
    training_kwargs,
)
from mixer.train.config import DPORunConfig
from mixer.train.deps import require_train_deps
from mixer.train.precision import apply_mixed_precision
from mixer.train.runtime import resolve_runtime, tokenise_processes


def reference_dtype(cfg: DPORunConfig) -> str:
    """The dtype the frozen reference is loaded in: ``dtype`` when the policy computes in bf16 (the reference needs
    no fp32 master copy), float32 with ``bf16: false``, where the policy computes in fp32: a bf16 reference would
    then score the pairs differently from the policy it starts equal to (the loss would not start at ln 2, and every
    implicit reward would carry the bf16 rounding of the reference)."""
    return cfg.dtype if cfg.bf16 else "float32"


def dpo_trl_config(cfg: DPORunConfig, n_processes: int | None = None, num_proc: int | None = None) -> Any:
    """The ``DPOConfig`` for this recipe (TRL tokenises ``prompt``/``chosen``/``rejected`` itself)."""
    from trl import DPOConfig

    kwargs = training_kwargs(cfg, n_processes, num_proc)
    kwargs.update(
        max_length=cfg.max_length,
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
    )
    if not cfg.use_lora:  # TRL loads the frozen reference from the same path with these
        kwargs["model_init_kwargs"] = {"dtype": reference_dtype(cfg)}
    return make_trl_config(DPOConfig, merge_trl_args(kwargs, cfg, DPOConfig))


def build_dpo_trainer(cfg: DPORunConfig, callbacks: list[Any] | None = None) -> Any:
    """A ready ``DPOTrainer``. The reference is a frozen copy of the starting model (TRL loads it from
    the same path), or the adapter-disabled base when training LoRA."""
    require_train_deps()
    require_paths(cfg, "model", "data", "output_dir")
    cfg.validate()
    from mixer.train.data import load_preference_dataset, resolve_parquet_files

    resolve_parquet_files(cfg.data)  # a wrong --data fails before the slow imports
    from trl import DPOTrainer

    from mixer.train.deps import cuda_available
    from mixer.train.modeling import load_model, load_tokenizer, lora_config

    if cfg.load_in_4bit:
        from mixer.train.modeling import check_qlora_supported

        check_qlora_supported()
    runtime = resolve_runtime(cfg, cuda=cuda_available())
    tokenizer = load_tokenizer(cfg, need_markers=False)
    train = load_preference_dataset(cfg.data, cfg.max_train_samples)
    args = dpo_trl_config(cfg, num_proc=tokenise_processes(cfg.dataset_num_proc, len(train)))
    model = load_model(cfg, runtime.attn_implementation, runtime.weights_dtype)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.use_lora else None,
        callbacks=callbacks,
    )
    apply_mixed_precision(trainer, runtime.mixed_precision)
    trainer.mixer_runtime = runtime
    return trainer


def run_dpo(cfg: DPORunConfig) -> dict[str, Any]:
    """Train, save the policy (or adapter) and tokenizer to ``output_dir``; return the train metrics."""
    return train_and_save(build_dpo_trainer(cfg), cfg)
