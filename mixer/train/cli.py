"""``mixer train {sft,dpo,rm,rloo,merge}``: the Typer app the main CLI mounts as ``mixer train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mixer.core.errors import MixerError
from mixer.core.outdir import TRAIN_MARKER, check_not_an_input, check_output_dir, check_run_dir, unwritable
from mixer.report.console import user_errors
from mixer.train.config import load_config, shipped_recipes, to_yaml
from mixer.train.runlog import setup_cli_logging
from mixer.train.trainer import require_paths

app = typer.Typer(
    name="train",
    help="Fine-tune with TRL on a built mixture: SFT (full/LoRA/QLoRA), DPO, reward models, RLOO, and merging LoRA "
    "adapters (needs the train extra: pip install mixer\\[train]). "
    f"Shipped recipes (--config NAME): {', '.join(shipped_recipes())}.",
    no_args_is_help=True,
    add_completion=False,
)

ConfigOpt = Annotated[str | None, typer.Option(
    "--config", "-c", help=f"A recipe YAML file, or a shipped recipe by name: {', '.join(shipped_recipes())}.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model directory to start from.")]
DataOpt = Annotated[str | None, typer.Option("--data", help="`mixer build` output dir or a Parquet file.")]
OutOpt = Annotated[str | None, typer.Option("--output-dir", "-o", help="Run directory.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: key=value (repeatable).")
]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and launch command; stop.")]
NprocOpt = Annotated[
    int | None, typer.Option("--num-processes", help="Processes/GPUs (default: all visible GPUs, else 1).")
]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite-output-dir", help="Train into an --output-dir that holds an earlier run (its files are "
    "overwritten) or other files (they stay).")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No decision block or progress bars (warnings and errors still reach stderr).")]
AccOpt = Annotated[
    str | None, typer.Option("--accelerate-config", help="ddp, zero3, fsdp2 or an accelerate YAML path.")
]


def _forwarded(config: str | None, model: str | None, data: str | None, output_dir: str | None,
               sets: list[str] | None, overwrite_output_dir: bool = False, quiet: bool = False) -> list[str]:
    """The options a launched worker needs to resolve the very same config (and say as much as asked)."""
    args: list[str] = ["--overwrite-output-dir"] if overwrite_output_dir else []
    args += ["--quiet"] if quiet else []
    for flag, value in (("--config", config), ("--model", model), ("--data", data), ("--output-dir", output_dir)):
        if value is not None:
            args += [flag, value]
    for item in sets or []:
        args += ["--set", item]
    return args


def _notes_on_paths(cfg: Any) -> list[str]:
    """A note for each path that is not on this machine: a dry run may plan a launch for another host, so a
    missing path is not an error there (the config itself was checked when it was loaded)."""
    notes = []
    if not Path(cfg.data).exists():
        notes.append(f"--data {cfg.data} does not exist on this machine; it is checked when the run starts")
    if not Path(cfg.model).exists():
        notes.append(f"--model {cfg.model} is not a folder on this machine: the run loads it from there, "
                     "or from the Hugging Face Hub when it is a hub id and the host is online")
    return notes


def _train(kind: str, config: str | None, model: str | None, data: str | None, output_dir: str | None,
           sets: list[str] | None, dry_run: bool, num_processes: int | None, accelerate_config: str | None,
           overwrite_output_dir: bool = False, quiet: bool = False) -> None:
    from mixer.train.accel.launch import inside_launcher, plan_launch, run_launch

    cfg = load_config(kind, config, sets, model=model, data=data, output_dir=output_dir,
                      overwrite_output_dir=True if overwrite_output_dir else None)
    # before a dry run prints a launch that could not run, and before every launched rank fails on its own
    require_paths(cfg, "model", "data", "output_dir")
    if cfg.output_dir and not inside_launcher():  # once, before any rank starts writing
        check_run_dir(cfg.output_dir, inputs=[("--model", cfg.model), ("--data", cfg.data),
                                              ("tokenizer", cfg.tokenizer),
                                              ("reward_model", getattr(cfg, "reward_model", None))],  # rloo's
                      overwrite=cfg.overwrite_output_dir, resuming=bool(cfg.resume_from_checkpoint))
        stale = _earlier_checkpoints(cfg) if cfg.overwrite_output_dir and not cfg.resume_from_checkpoint else []
        if stale:
            typer.echo(f"warning: {cfg.output_dir} holds {len(stale)} checkpoint folder(s) of the earlier run "
                       f"(newest {stale[-1]}); --overwrite-output-dir leaves them, and a later "
                       "resume_from_checkpoint=last continues from the highest-numbered checkpoint, which may be "
                       "the earlier run's. Remove them for a clean run folder", err=True)
    forwarded = _forwarded(config, model, data, output_dir, sets, overwrite_output_dir, quiet)
    plan = plan_launch(kind, cfg, forwarded, num_processes, accelerate_config)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if dry_run:
        for note in _notes_on_paths(cfg) + _resume_notes(cfg):
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"# resolved {kind} config\n{to_yaml(cfg)}")
        typer.echo(f"# processes: {plan.num_processes}, gradient_accumulation_steps: "
                   f"{plan.gradient_accumulation_steps}")
        typer.echo(f"# launch\n{plan.describe()}")
        return
    check_host(cfg)  # before a launch: each rank would fail the same way, after its slow imports
    if plan.command is not None:
        rc = run_launch(plan)
        if rc:
            raise typer.Exit(rc)
        return
    setup_cli_logging(quiet)
    from mixer.train.trainer import METRICS_NAME, RESOLVED_CONFIG_NAME, run

    metrics = run(cfg, progress=not quiet)
    out = Path(cfg.output_dir)
    typer.echo(f"trained {kind}: {metrics}; saved to {out}")
    typer.echo(f"loss history: {out / METRICS_NAME}; resolved config: {out / RESOLVED_CONFIG_NAME}")


def _earlier_checkpoints(cfg: Any) -> list[str]:
    """The ``checkpoint-N`` folders an earlier run left in the run folder, oldest first."""
    from mixer.train.trainer import checkpoint_folders

    return [p.name for p in checkpoint_folders(Path(cfg.output_dir))]


def _resume_notes(cfg: Any) -> list[str]:
    """A dry run's note when the checkpoint to resume from is not on this machine: the run's own check
    (:func:`~mixer.train.trainer.resume_checkpoint`) would stop it there."""
    from mixer.train.trainer import resume_checkpoint

    try:
        resume_checkpoint(cfg)
    except MixerError as e:
        return [f"{e}; the run stops there unless the host it runs on has it"]
    return []


def check_host(cfg: Any) -> None:
    """What this host must offer the run, checked before tokenising or loading weights: the model folders
    exist (a path that is not a Hugging Face id is not sent to the Hub, whose "Repo id must use
    alphanumeric chars" names nothing the user did), the output folder can be written, and a bf16 recipe
    has a CUDA GPU (TRL's own message asks for a `use_cpu` the user has not heard of)."""
    for option, value in (("--model", cfg.model), ("tokenizer", cfg.tokenizer)):
        if value and not Path(value).exists() and not _hub_id(str(value)):
            raise MixerError(f"{option} {value}: no such model folder (and not a Hugging Face model id such as "
                             "meta-llama/Llama-2-7b-hf); for an offline model to try mixer with: "
                             "mixer dev tiny-model DIR")
        if value:  # `runs/sft-typo` is shaped like a Hub id, but `runs` is a folder here: a local typo
            from mixer.train.accel.modeling import check_model_source

            check_model_source(value, option)
    problem = unwritable(cfg.output_dir)
    if problem:
        raise MixerError(f"--output-dir {cfg.output_dir}: cannot be written ({problem}); nothing was trained")
    if cfg.resume_from_checkpoint:  # before tokenising and loading: a missing checkpoint stops the run anyway
        from mixer.train.trainer import resume_checkpoint

        resume_checkpoint(cfg)
    from mixer.train.deps import cuda_available

    if cfg.load_in_4bit:  # QLoRA's own message says more (its kernels, and LoRA without quantisation)
        from mixer.train.accel.modeling import check_qlora_supported

        check_qlora_supported()
    if cfg.bf16 and not getattr(cfg, "use_cpu", False) and not cuda_available():
        raise MixerError("this recipe computes in bf16 and needs a CUDA GPU, which this host does not have; "
                         "on CPU use a CPU recipe (-c tiny-cpu, tiny-cpu-dpo, tiny-cpu-rm) or keep this one "
                         "with --set bf16=false (fp32, slow for a large model)")


def _hub_id(value: str) -> bool:
    """``name`` or ``org/name`` as the Hub spells model ids (no leading ``/``, ``.``, ``~``)."""
    import re

    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", value) is not None and ".." not in value


def _trainer_command(kind: str, help_text: str) -> None:
    """Register ``mixer train KIND``: the same options for every method, its own help."""

    def command(config: ConfigOpt = None, model: ModelOpt = None, data: DataOpt = None, output_dir: OutOpt = None,
                set_: SetOpt = None, dry_run: DryOpt = False, num_processes: NprocOpt = None,
                accelerate_config: AccOpt = None, overwrite_output_dir: OverwriteOpt = False,
                quiet: QuietOpt = False) -> None:
        _train(kind, config, model, data, output_dir, set_, dry_run, num_processes, accelerate_config,
               overwrite_output_dir, quiet)

    command.__doc__ = help_text
    app.command(name=kind)(user_errors(command))


_trainer_command("sft", "Supervised fine-tuning (full, LoRA or QLoRA) on a V2 SFT mixture.")
_trainer_command("dpo", "Direct preference optimisation on a preference build (prompt/chosen/rejected).")
_trainer_command("rm", "A reward model (one-scalar head, Llama 2's ranking loss, optional rating margin) on "
                 "preference pairs; ends with the held-out pairwise accuracy (OUTPUT/rm_eval.json).")
_trainer_command("rloo", "On-policy RL (RLOO) on a build's prompts against a `mixer train rm` reward model "
                 "(reward_model: DIR), with a KL penalty (beta) to the starting model: Llama 2's RLHF step, "
                 "with RLOO in place of PPO.")


@app.command()
@user_errors
def merge(config: ConfigOpt = None, model: Annotated[str | None, typer.Option(
              "--model", help="The LoRA adapter directory (a LoRA/QLoRA run).")] = None,
          output_dir: OutOpt = None, set_: SetOpt = None, dry_run: DryOpt = False,
          overwrite_output_dir: Annotated[bool, typer.Option(
              "--overwrite-output-dir", help="Write into a non-empty --output-dir that is not an earlier mixer "
              "output (its model files are replaced).")] = False) -> None:
    """Merge a LoRA adapter into its base model's (unquantised) weights and save a plain model."""
    cfg = load_config("merge", config, set_, model=model, output_dir=output_dir)
    require_paths(cfg, "model", "output_dir")
    if cfg.output_dir:  # save_pretrained writes over (and prunes) the model files of whatever folder it is given
        inputs = [("--model", Path(cfg.model))] if cfg.model else []
        base = cfg.base_model or _adapter_base(cfg.model)
        if base and Path(base).exists():  # the base the adapter names: often an earlier `mixer train sft` run
            inputs.append(("the adapter's base model", Path(base)))
        check_not_an_input(cfg.output_dir, inputs, option="--output-dir")
        if not overwrite_output_dir:
            _refuse_a_training_run(Path(cfg.output_dir))
        check_output_dir(cfg.output_dir, marker=TRAIN_MARKER, overwrite=overwrite_output_dir,
                         option="--overwrite-output-dir", what="output folder")
    if dry_run:
        typer.echo(f"# resolved merge config\n{to_yaml(cfg)}\n# launch\nin-process")
        return
    setup_cli_logging()
    from mixer.train.merge import run_merge

    out = run_merge(cfg)
    typer.echo(f"merged {cfg.model} into {out}")


def _adapter_base(adapter: str | None) -> str | None:
    """The base model an adapter folder's ``adapter_config.json`` names, or None (no such file, or unreadable:
    the merge itself then says what is wrong)."""
    import json

    try:
        config = json.loads((Path(adapter or "") / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return base if isinstance(base, str) and base else None


def _refuse_a_training_run(out: Path) -> None:
    """A merge replaces an earlier merge's model; a training run's folder (its marker says ``trainer: sft``...)
    holds a model the user trained, which only ``--overwrite-output-dir`` may replace."""
    import yaml

    try:
        saved = yaml.safe_load((out / TRAIN_MARKER).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    kind = saved.get("trainer") if isinstance(saved, dict) else None
    if kind and kind != "merge":
        raise MixerError(f"{out}: the output folder holds a `mixer train {kind}` run, whose model the merge would "
                         "replace; choose another --output-dir, or pass --overwrite-output-dir to replace it")


def _check_new_output(output_dir: str, inputs: list[tuple[str, str]], marker: str, overwrite: bool) -> None:
    """The output folder is new, empty or an earlier output of the same command, and none of the inputs."""
    check_not_an_input(output_dir, [(option, Path(p)) for option, p in inputs], option="--output-dir")
    check_output_dir(output_dir, marker=marker, overwrite=overwrite, option="--overwrite-output-dir",
                     what="output folder")


@app.command()
@user_errors
def prune(model: Annotated[str, typer.Option("--model", help="The model folder to prune (with its tokenizer).")],
          data: Annotated[str, typer.Option("--data", help="A `mixer build` output: the calibration records.")],
          blocks: Annotated[int, typer.Option("--blocks", help="How many consecutive decoder blocks to drop.")],
          output_dir: Annotated[str, typer.Option("--output-dir", "-o", help="Where the pruned model goes.")],
          samples: Annotated[int, typer.Option("--samples", help="Calibration records (the build's first).")] = 256,
          max_length: Annotated[int, typer.Option("--max-length", help="Tokens per calibration record.")] = 512,
          overwrite_output_dir: Annotated[bool, typer.Option(
              "--overwrite-output-dir", help="Replace a non-empty --output-dir that is not an earlier prune.")] = False,
          ) -> None:
    """Drop the N consecutive decoder blocks whose input and output hidden states are closest (angular distance
    on calibration data; Gromov et al. 2024) and save the smaller model with a report of every window."""
    from mixer.train.prune import REPORT_NAME, run_prune

    _check_new_output(output_dir, [("--model", model), ("--data", data)], REPORT_NAME, overwrite_output_dir)
    choice = run_prune(model, data, blocks, output_dir, samples=samples, max_length=max_length)
    typer.echo(f"removed blocks {choice.removed} of {choice.num_layers} (distance "
               f"{choice.distances[choice.start]:.4f}); saved to {output_dir} with {REPORT_NAME}")


@app.command(name="merge-models")
@user_errors
def merge_models(model_a: Annotated[str, typer.Argument(help="First model folder (t = 0).")],
                 model_b: Annotated[str, typer.Argument(help="Second model folder (t = 1).")],
                 output_dir: Annotated[str, typer.Option("--output-dir", "-o", help="Where the merge goes.")],
                 method: Annotated[str, typer.Option("--method", help="slerp or linear.")] = "slerp",
                 t: Annotated[float, typer.Option("--t", help="Interpolation factor in [0, 1].")] = 0.5,
                 overwrite_output_dir: Annotated[bool, typer.Option(
                     "--overwrite-output-dir", help="Replace a non-empty --output-dir that is not an earlier "
                     "merge.")] = False) -> None:
    """Merge two fine-tuned models of the same shape in weight space (SLERP or linear, via mergekit)."""
    from mixer.train.merge_models import REPORT_NAME, run_merge_models

    _check_new_output(output_dir, [("A", model_a), ("B", model_b)], REPORT_NAME, overwrite_output_dir)
    out = run_merge_models(model_a, model_b, method, t, output_dir)
    typer.echo(f"merged {model_a} and {model_b} ({method}, t={t}) into {out}")
