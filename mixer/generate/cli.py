"""The ``mixer generate`` command (mounted by :mod:`mixer.cli`)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mixer.generate.backends import BACKENDS, BATCHINGS
from mixer.generate.config import METHODS
from mixer.generate.prompts import PROMPT_MODES
from mixer.report.console import user_errors


@user_errors
def generate(
    policy: Annotated[str, typer.Option("--policy", help="Policy model folder that samples (with a chat template).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder (new, or an earlier run to resume).")],
    method: Annotated[str, typer.Option("--method", help=f"{', '.join(METHODS)}: what to make (see the README's "
                                        "`mixer generate` sections).")] = "best-of-n",
    reward_model: Annotated[str | None, typer.Option("--reward-model", help="A `mixer train rm` output that scores "
                                                     "(best-of-n; context-distill --targeted).")] = None,
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
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per backend call (vLLM, continuous "
                                            "batching).")] = 8,
    min_reward_gap: Annotated[float, typer.Option("--min-reward-gap", help="Pairs need best - worst >= this.")] = 0.0,
    dedup: Annotated[bool, typer.Option("--dedup/--no-dedup", help="Identical replies count once.")] = True,
    keep_truncated: Annotated[bool | None, typer.Option(
        "--keep-truncated/--drop-truncated", help="Keep replies cut at max_new_tokens? Default: best-of-n may pick "
        "them; the other methods drop them (counted as truncated).")] = None,
    backend: Annotated[str, typer.Option("--backend", help=f"One of {', '.join(BACKENDS)}.")] = "transformers",
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="`tulu` or a .jinja file; default: "
                                                      "the policy folder's own.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Policy and reward-model weights: auto (bf16 on GPU, fp32 on "
                                       "CPU), bfloat16, float32.")] = "auto",
    shard_prompts: Annotated[int, typer.Option("--shard-prompts", help="Prompts per resumable shard.")] = 64,
    name: Annotated[str | None, typer.Option("--name", help="`dataset` label of the outputs.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-resumable folder.")] = False,
    batching: Annotated[str, typer.Option("--batching", help=f"transformers backend: {', '.join(BATCHINGS)} (auto: "
                                          "continuous batching where transformers has it, else padded).")] = "auto",
    score_tokens: Annotated[int, typer.Option("--score-tokens", help="Tokens per reward-model pass (replies "
                                              "sorted by length).")] = 16384,
    targeted: Annotated[bool, typer.Option("--targeted", help="context-distill: keep a distilled answer only when "
                                           "the reward model scores it above the answer without pre-prompt.")] = False,
    preprompts: Annotated[str | None, typer.Option("--preprompts", help="context-distill: YAML with adjectives, "
                                                   "template, risk_templates (replaces the built-in ones).")] = None,
    risk_category: Annotated[str | None, typer.Option("--risk-category", help="context-distill: the prompts' risk "
                                                      "category; adds its answer template.")] = None,
    evolution: Annotated[list[str] | None, typer.Option("--evolution", help="evol-instruct: the evolutions to draw "
                                                        "from (default: all).")] = None,
    system_messages: Annotated[str | None, typer.Option("--system-messages", help="orca: YAML list of system "
                                                        "messages (replaces Orca's).")] = None,
    rubric: Annotated[str | None, typer.Option("--rubric", help="judge: YAML with template, pattern, scale "
                                               "(default: MT-Bench single-answer grading).")] = None,
) -> None:
    """Make training data with a model. Default (best-of-n): sample N replies per prompt, score them with a reward
    model, write best-of-N (SFT) and best-vs-worst (preference) data with a card. Other --method values:
    context-distill, self-distill, evol-instruct, orca, judge. Rerunning resumes an interrupted run; a finished
    one is not redone."""
    from mixer.generate.run import GenerateConfig, run_generate

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    cfg = GenerateConfig(
        policy=policy, reward_model=reward_model, output=output, data=data, recipe=recipe, sources=source or None,
        raw_dir=raw_dir, prompt_mode=prompt_mode, max_prompts=max_prompts, n=n, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, min_reward_gap=min_reward_gap, dedup=dedup,
        keep_truncated=keep_truncated, backend=backend, chat_template=chat_template, dtype=dtype,
        shard_prompts=shard_prompts, name=name, overwrite=overwrite, batching=batching,
        score_tokens=score_tokens, method=method, targeted=targeted, preprompts=preprompts,
        risk_category=risk_category, evolutions=evolution or None, system_messages=system_messages, rubric=rubric)
    import contextlib

    from rich.console import Console

    from mixer.report.progress import GenerateProgress

    console = Console(stderr=True)
    bar = GenerateProgress(console) if console.is_terminal else None  # off a terminal: the shard lines only
    from mixer.train.runlog import library_bars_off_terminal

    with bar or contextlib.nullcontext(), library_bars_off_terminal():
        card = run_generate(cfg, log=lambda msg: console.print(msg, markup=False, highlight=False), progress=bar)
    if method != "best-of-n":
        typer.echo(f"{card['prompts']['generated']} prompt(s): {card['rows']} row(s) in {output}/"
                   f"{next(iter(card['outputs']))}; " + ", ".join(f"{k} {v}" for k, v in card["outcome"].items())
                   + f"; card: {output}/README.md")
        return
    pairs = card["best_vs_worst"]
    typer.echo(f"{card['prompts']['generated']} prompt(s): {card['best_of_n']['rows']} best-of-{n} row(s), "
               f"{pairs['pairs']} pair(s); no pair: {pairs['no_pair'] or 'none'}; card: {output}/README.md")


@user_errors
def gatt(
    policy: Annotated[str, typer.Option("--policy", help="Policy model folder that answers (with a chat template).")],
    dialogues: Annotated[str, typer.Option("--dialogues", help="JSONL or Parquet records with `messages` (user "
                                           "turns; assistant turns are regenerated).")],
    output: Annotated[str, typer.Option("--output", "-o", help="The output folder: a new one, or this command's "
                                        "earlier run (resumed; a finished one is not redone).")],
    instructions: Annotated[str | None, typer.Option("--instructions", help="One per line: KIND<TAB>FULL[<TAB>SHORT] "
                                                     "(combined across kinds) or a whole instruction (never "
                                                     "combined); default: hobby, language, public figure.")] = None,
    min_constraints: Annotated[int, typer.Option("--min-constraints", help="Fewest constraints combined in a "
                                                 "dialogue's instruction.")] = 1,
    max_constraints: Annotated[int, typer.Option("--max-constraints", help="Most constraints combined, no two of "
                                                 "one kind (the paper combines at random; 3: its kinds).")] = 3,
    shorten_prob: Annotated[float, typer.Option("--shorten-prob", help="Chance the training record carries the "
                                                "short form, e.g. 'Figure: Napoleon.' (paper: half).")] = 0.5,
    max_dialogues: Annotated[int | None, typer.Option("--max-dialogues", help="Only the first N dialogues.")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Per-dialogue choices derive from it.")] = 42,
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="`tulu` or a .jinja file.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="`dataset` label (default: folder name).")] = None,
    keep_truncated: Annotated[bool, typer.Option("--keep-truncated/--drop-truncated", help="Keep a dialogue whose "
                                                 "reply stopped at max_new_tokens? Default: dropped (counted as "
                                                 "truncated).")] = False,
    shard_dialogues: Annotated[int, typer.Option("--shard-dialogues", help="Dialogues per shard: what an "
                                                 "interrupted run keeps (a rerun resumes).")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT when it is not a `mixer gatt` "
                                            "output or was made with other settings (its files are deleted).")
                         ] = False,
) -> None:
    """Ghost Attention (Llama 2 §3.3): constraints combined at random into an instruction on every user turn while
    the policy answers; written with the instruction (half of the time in its short form) in the first turn only
    and `train: false` on every assistant turn but the last. Rerunning resumes an interrupted run; a finished one
    is not redone."""
    from mixer.generate.gatt import GattConfig, run_gatt
    from mixer.train.runlog import library_bars_off_terminal

    cfg = GattConfig(policy=policy, dialogues=dialogues, output=output, instructions=instructions,
                     max_dialogues=max_dialogues, temperature=temperature, top_p=top_p,
                     max_new_tokens=max_new_tokens, seed=seed, chat_template=chat_template, name=name,
                     min_constraints=min_constraints, max_constraints=max_constraints, shorten_prob=shorten_prob,
                     keep_truncated=keep_truncated, shard_dialogues=shard_dialogues, overwrite=overwrite)
    with library_bars_off_terminal():  # "Loading weights" redrawn into a log file
        card = run_gatt(cfg, say=lambda message: typer.echo(message, err=True))
    d = card["dialogues"]
    dropped = "".join(f", {n} dropped ({why})" for why, n in d["dropped"].items())
    typer.echo(f"{d['written']} of {d['read']} dialogue(s) written{dropped}, {card['turns']['generated']} turn(s) "
               f"generated, {card['instructions']['shortened']} instruction(s) shortened; card: {output}/README.md")


@user_errors
def spin(
    model: Annotated[str, typer.Option("--model", help="The SFT model (iteration 0's generator and reference).")],
    data: Annotated[str, typer.Option("--data", help="An SFT build: prompts with gold answers.")],
    output: Annotated[str, typer.Option("--output", "-o", help="New folder, or an earlier SPIN run to resume.")],
    iterations: Annotated[int, typer.Option("--iterations", help="Iterations to have done (paper: 4, iter 0-3).")] = 4,
    config: Annotated[str, typer.Option("--config", "-c", help="DPO recipe of each iteration.")] = "spin",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key=value.")] = None,
    max_prompts: Annotated[int | None, typer.Option("--max-prompts", help="Only the first N SFT rows.")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="`tulu` or a .jinja file.")] = None,
    previous_pairs: Annotated[bool, typer.Option("--previous-pairs/--no-previous-pairs", help="Iteration t >= 1 "
                                                 "trains on iteration t-1's pairs and its own (the paper's "
                                                 "default), or on its own only.")] = True,
) -> None:
    """SPIN (Chen et al. 2024): each iteration generates answers with the current model, pairs gold (chosen) with
    them (rejected), and trains the next model with DPO's sigmoid loss against the current one, on these pairs and
    (from iteration 1 on) the previous iteration's. Rerun to resume."""
    from mixer.generate.backends import SamplingSettings
    from mixer.generate.spin import run_spin

    sampling = SamplingSettings(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    models = run_spin(model, data, output, iterations, config, set_ or [], sampling, chat_template=chat_template,
                      seed=seed, max_prompts=max_prompts, log=lambda m: typer.echo(m, err=True),
                      previous_pairs=previous_pairs)
    typer.echo(f"{len(models)} iteration(s) done; last model: {models[-1]}")
