"""The one trainer builder: SFT, DPO and reward models differ only in what their :class:`Method` adds.

Every run does the same steps: check the paths and the config, resolve the host's choices (attention
kernel, batching, weight dtype, mixed precision; said in the run's decision block, :mod:`mixer.train.runlog`),
load the tokenizer, the rows and the model, build the TRL config with the derived gradient accumulation, and
hand all of it to TRL's trainer.
After training, :func:`train_and_save` saves the model, tokenizer, resolved config and loss history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mixer.core.errors import MixerError
from mixer.train.accel.batch import gradient_accumulation_steps
from mixer.train.accel.host import deepspeed_zero3_launched, resolve_runtime, tokenise_processes, world_size
from mixer.train.accel.levers import after_building, before_loading, lever_kwargs
from mixer.train.config import ConfigError, RunConfig, to_yaml
from mixer.train.dpo import DPO
from mixer.train.method import METRICS_NAME, RESOLVED_CONFIG_NAME, Method
from mixer.train.rloo import RLOO
from mixer.train.rm import RM
from mixer.train.runlog import decide, log_decisions, progress_bars, run_output
from mixer.train.sft import SFT

METHODS: dict[str, type[Method]] = {"sft": SFT, "dpo": DPO, "rm": RM, "rloo": RLOO}
__all__ = ["METRICS_NAME", "RESOLVED_CONFIG_NAME", "build_trainer", "run", "train_and_save"]

def require_paths(cfg: Any, *names: str) -> None:
    """Fail with the option to pass when a required path was given neither in YAML nor on the CLI."""
    for name in names:
        if not getattr(cfg, name):
            raise ConfigError(f"`{name}` is not set: pass --{name.replace('_', '-')} or set it in the config")


def derived_kwargs(cfg: RunConfig, n_rows: int = 0, n_processes: int | None = None,
                   num_proc: int | None = None) -> dict[str, Any]:
    """The TRL config fields mixer derives: gradient accumulation from the effective batch (``BatchError`` when
    it does not divide), tokenisation workers, and the method's own (:meth:`Method.trl_kwargs`).

    LoRA with ZeRO-3 and gradient checkpointing needs reentrant checkpointing; TRL sets it under the old
    ``gradient_checkpointing_kwargs`` name, which transformers 5 reads only at construction, so it is set here
    under the name the Trainer reads.
    """
    n = world_size() if n_processes is None else n_processes
    accumulation = gradient_accumulation_steps(cfg.effective_batch_size, cfg.per_device_train_batch_size, n)
    derived: dict[str, Any] = {"gradient_accumulation_steps": accumulation, "dataset_num_proc": num_proc,
                               **METHODS[cfg.kind]().trl_kwargs(cfg, n_rows)}
    derived.update(lever_kwargs(cfg, n))
    processes = f"{n} process{'es' if n > 1 else ''}"
    if cfg.max_tokens_per_microbatch:
        decide("batch", f"{cfg.effective_batch_size} examples per optimizer step over {processes}, in micro-batches "
               f"of at most {cfg.max_tokens_per_microbatch} tokens")
    else:
        decide("batch", f"{cfg.effective_batch_size} examples per optimizer step = {cfg.per_device_train_batch_size} "
               f"per device x {accumulation} gradient accumulation x {processes}")
    if cfg.use_peft and cfg.gradient_checkpointing and deepspeed_zero3_launched():
        derived["activation_checkpointing_kwargs"] = {**derived.get("activation_checkpointing_kwargs", {}),
                                                      "use_reentrant": True}
    from mixer.train.deps import cuda_available

    if "dataloader_pin_memory" not in cfg.values and not cuda_available():
        # pinned memory only speeds copies to a GPU; without one torch warns on every DataLoader (issue 24, 17)
        derived["dataloader_pin_memory"] = False
        decide("pin_memory", "off", "no CUDA device: pinned memory only speeds copies to a GPU")
    if "disable_tqdm" not in cfg.values and not progress_bars():  # a log file gets the loss lines, not a bar
        derived["disable_tqdm"] = True
    return derived


def build_trainer(cfg: RunConfig, callbacks: list[Any] | None = None) -> Any:
    """A ready TRL trainer for ``cfg.kind`` (tests inspect it before training); ``trainer.mixer_runtime`` keeps
    the host's choices for the saved config."""
    from mixer.train.data import resolve_parquet_files
    from mixer.train.deps import cuda_available

    require_paths(cfg, "model", "data", "output_dir")  # load_config checked the [train] extra is installed
    cfg.validate()
    resolve_parquet_files(cfg.data)  # a wrong --data fails before the slow imports
    import trl

    from mixer.train.accel.modeling import check_qlora_supported, load_model, load_tokenizer
    from mixer.train.accel.precision import attach_compute_copies
    from mixer.train.delta import peft_config

    if cfg.load_in_4bit:
        check_qlora_supported()  # before any loading: the error must be the first thing a CPU user sees
    method = METHODS[cfg.kind]()
    runtime = resolve_runtime(cfg, cuda=cuda_available())
    cfg = cfg.replace(batching=runtime.batching)
    before_loading(cfg, runtime.mixed_precision, cuda_available())
    tokenizer = load_tokenizer(cfg, need_markers=method.needs_markers(cfg))
    rows = method.load(cfg)
    # a config class without dataset_num_proc (RLOO tokenises nothing ahead) drops it in RunConfig.trl_config
    num_proc = tokenise_processes(cfg.values.get("dataset_num_proc"), len(rows))
    args = cfg.trl_config(**derived_kwargs(cfg, len(rows), num_proc=num_proc))
    rows = method.prepare(cfg, rows, tokenizer, args)
    model = load_model(cfg, runtime.attn_implementation, runtime.weights_dtype, method.auto_class,
                       **method.model_kwargs)
    trainer = getattr(trl, method.trainer)(
        model=model, args=args, train_dataset=rows, processing_class=tokenizer, callbacks=callbacks,
        peft_config=peft_config(cfg), **method.trainer_kwargs(cfg))
    method.ready(trainer, cfg)
    # bf16_copy: compute copies, removed after training (train_and_save) so that plain fp32 weights are saved
    trainer.mixer_compute_copies = (attach_compute_copies(trainer) if runtime.mixed_precision == "bf16_copy"
                                    else None)
    after_building(trainer, cfg)
    trainer.mixer_runtime = runtime
    trainer.mixer_method = method
    return trainer


def run(cfg: RunConfig, progress: bool | None = None) -> dict[str, Any]:
    """Build, train and save (:func:`train_and_save`); return the train metrics (and what the method adds).

    The run's decisions are said in one block before training, known-benign library messages are silenced,
    and progress bars show on a terminal only (``progress=False``: nowhere); see :mod:`mixer.train.runlog`."""
    with run_output(cfg.kind, progress=progress):
        trainer = build_trainer(cfg)
        return trainer.mixer_method.finish(trainer, cfg, train_and_save(trainer, cfg))


def checkpoint_folders(out: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of a run folder, by step (what transformers' ``get_last_checkpoint`` picks
    the last of), read without importing transformers: a dry run looks at them too."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def resume_checkpoint(cfg: RunConfig) -> str | None:
    """``resume_from_checkpoint``: a directory as is, or ``last`` for the newest ``checkpoint-N``."""
    value = cfg.resume_from_checkpoint
    if not value:
        return None
    if value in ("last", "latest", "true", "True"):
        out = Path(cfg.output_dir or ".")
        folders = checkpoint_folders(out)
        if not folders:
            raise MixerError(f"resume_from_checkpoint: last, but {out} has no checkpoint-* directory (a run writes "
                             "them with save_strategy: steps or epoch; the tiny-cpu recipes set save_strategy: no)")
        return str(folders[-1])
    if not Path(value).is_dir():
        raise MixerError(f"resume_from_checkpoint: {value} is not a directory")
    return value


def save_resolved_config(cfg: Any, resolved: dict[str, Any] | None = None) -> Path:
    """Keep the exact recipe next to the model so a run can be reproduced; ``resolved`` (what the host
    decided: attention kernel, batching, weight dtype, and why) is saved under ``resolved:``, which
    ``load_config`` skips when the file is used as a recipe again."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = to_yaml(cfg)
    if resolved:
        text += yaml.safe_dump({"resolved": resolved}, sort_keys=False, width=200)
    path = out / RESOLVED_CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def metrics_callback(path: Path, *, fresh: bool) -> Any:
    """A ``TrainerCallback`` appending every log record (loss, learning rate, grad norm, ...) to ``path`` (JSON
    lines) as it happens, whatever ``save_strategy`` is. ``fresh``: start the file anew (not resuming).

    A resumed run keeps the history up to its checkpoint's step and drops the records of later steps (the
    interrupted run logged them, and the resumed run does those steps again), and a last line the interruption
    cut short; with no file left, the history is the checkpoint's own ``log_history``."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = [] if fresh else resumed_history(path, state)
            path.write_text("".join(json.dumps(r, default=float) + "\n" for r in kept), encoding="utf-8")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}, default=float) + "\n")

    return MetricsLog()


def resumed_history(path: Path, state: Any) -> list[dict[str, Any]]:
    """The metrics records a run resumed at ``state.global_step`` keeps (see :func:`metrics_callback`)."""
    if not path.exists():
        return [{"step": r.get("step"), "epoch": r.get("epoch"), **r} for r in state.log_history]
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line the interruption cut short
            continue
        if isinstance(record, dict) and (record.get("step") or 0) <= state.global_step:
            kept.append(record)
    return kept


def train_and_save(trainer: Any, cfg: RunConfig) -> dict[str, Any]:
    """Train (resuming when asked), save the model or adapter, the tokenizer and the resolved config to
    ``output_dir``; return the train metrics. ``trainer`` is :func:`build_trainer`'s (it carries the host's
    choices and the compute copies). The resolved config is written first, so a run that crashes
    still says what it was; the loss history goes to ``output_dir/metrics.jsonl`` as training runs."""
    resolved = trainer.mixer_runtime.as_dict()
    checkpoint = resume_checkpoint(cfg)  # before the config is written: a resume that cannot start changes nothing
    if trainer.is_world_process_zero():
        save_resolved_config(cfg, resolved)
    trainer.add_callback(metrics_callback(Path(cfg.output_dir) / METRICS_NAME, fresh=checkpoint is None))
    if trainer.is_world_process_zero():
        log_decisions()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.mixer_compute_copies is not None:  # a plain fp32 model for saving and what runs after (RM eval)
        trainer.mixer_compute_copies.remove()
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(cfg.output_dir)
        save_resolved_config(cfg, resolved)
    return dict(result.metrics)
