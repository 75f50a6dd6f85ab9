"""The ``mixer generate`` command (mounted by :mod:`mixer.cli`)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mixer.generate.backends import BACKENDS
from mixer.generate.prompts import PROMPT_MODES
from mixer.train.cli import exits_on_mixer_error


@exits_on_mixer_error
def generate(
    policy: Annotated[str, typer.Option("--policy", help="Policy model folder that samples (with a chat template).")],
    reward_model: Annotated[str, typer.Option("--reward-model", help="A `mixer train rm` output that scores.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder (new, or an earlier run to resume).")],
    data: Annotated[str | None, typer.Option("--data", help="A mixer build (SFT or preference): prompts.")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="A build recipe whose sources give prompts.")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="Recipe source(s) (default: all).")] = None,
    raw_dir: Annotated[str | None, typer.Option("--raw-dir", help="Overrides the recipe's raw_dir.")] = None,
    prompt_mode: Annotated[str, typer.Option(
        "--prompt-mode", help=f"{' or '.join(PROMPT_MODES)}: the first user turn, or all turns before the last "
        "assistant turn.")] = "first_user",
    max_prompts: Annotated[int | None, typer.Option("--max-prompts", help="Only the first N distinct prompts.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per prompt.")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Run seed; per-prompt seeds derive from it.")] = 42,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per vLLM call; replies per reward "
                                            "pass.")] = 8,
    min_reward_gap: Annotated[float, typer.Option("--min-reward-gap", help="Pairs need best - worst >= this.")] = 0.0,
    dedup: Annotated[bool, typer.Option("--dedup/--no-dedup", help="Identical replies count once.")] = True,
    keep_truncated: Annotated[bool, typer.Option("--keep-truncated/--drop-truncated",
                                                 help="May replies cut at max_new_tokens be picked?")] = True,
    backend: Annotated[str, typer.Option("--backend", help=f"One of {', '.join(BACKENDS)}.")] = "transformers",
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="`tulu` or a .jinja file; default: "
                                                      "the policy folder's own.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float32.")] = "auto",
    shard_prompts: Annotated[int, typer.Option("--shard-prompts", help="Prompts per resumable shard.")] = 64,
    name: Annotated[str | None, typer.Option("--name", help="`dataset` label of the outputs.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-resumable folder.")] = False,
) -> None:
    """Sample N replies per prompt, score them with a reward model, write best-of-N (SFT) and best-vs-worst
    (preference) data with a card. Rerunning resumes an interrupted run; a finished one is not redone."""
    from mixer.generate.run import GenerateConfig, run_generate

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    cfg = GenerateConfig(
        policy=policy, reward_model=reward_model, output=output, data=data, recipe=recipe, sources=source or None,
        raw_dir=raw_dir, prompt_mode=prompt_mode, max_prompts=max_prompts, n=n, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, min_reward_gap=min_reward_gap, dedup=dedup,
        keep_truncated=keep_truncated, backend=backend, chat_template=chat_template, dtype=dtype,
        shard_prompts=shard_prompts, name=name, overwrite=overwrite)
    import contextlib

    from rich.console import Console

    from mixer.report.progress import GenerateProgress

    console = Console(stderr=True)
    bar = GenerateProgress(console) if console.is_terminal else None  # off a terminal: the shard lines only
    with bar or contextlib.nullcontext():
        card = run_generate(cfg, log=lambda msg: console.print(msg, markup=False, highlight=False), progress=bar)
    pairs = card["best_vs_worst"]
    typer.echo(f"{card['prompts']['generated']} prompt(s): {card['best_of_n']['rows']} best-of-{n} row(s), "
               f"{pairs['pairs']} pair(s); no pair: {pairs['no_pair'] or 'none'}; card: {output}/README.md")
