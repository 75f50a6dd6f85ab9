"""``mixer check-template`` and ``mixer tokenize`` (mounted by :mod:`mixer.cli`): preparing a build for the
trainer with the trainer's own tokenizer, template and tokenisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixer.report.console import user_errors

DataArg = Annotated[Path, typer.Argument(metavar="OUT", help="A `mixer build` output folder or a Parquet file.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model folder (its tokenizer and template).")]
TokenizerOpt = Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer folder (instead of --model).")]
TemplateOpt = Annotated[str, typer.Option(
    "--chat-template", help="auto, tulu, tokenizer or a .jinja file, as the trainer's `chat_template`.")]


@user_errors
def check_template(
    data: DataArg,
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    chat_template: TemplateOpt = "auto",
    n: Annotated[int, typer.Option("-n", min=0, help="Records to check (0 = all); each shape (system turn, "
                                   "multi-turn, tool calls, <think>) is sought first.")] = 1000,
    max_length: Annotated[int | None, typer.Option("--max-length", min=1, help="Truncate as the trainer "
                                                   "would (default: check whole records).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a page showing the loss tokens.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the --html file even when mixer "
                                            "did not write it.")] = False,
) -> None:
    """Check that the chat template's loss mask covers exactly the assistant turns and their end-of-turn
    token. Exit 0: it does; exit 1: a record is wrong (the first is shown); exit 2: bad input or a
    template with no assistant markers."""
    from mixer.core.outdir import check_output_file
    from mixer.train.template_check import describe_failure, is_check_html, run_check, summary, write_html

    if html is not None:
        check_output_file(html, is_ours=is_check_html, overwrite=overwrite, what="HTML page path")
    report = run_check(data, model, tokenizer, chat_template, sample=n or None, max_length=max_length)
    if html is not None:
        typer.echo(f"wrote {write_html(report, html)}", err=True)
    typer.echo(summary(report))
    if report.failures:
        typer.echo(f"FAIL: the loss mask is wrong for {len(report.failures)} of {len(report.records)} records; "
                   f"the first:\n{describe_failure(report.failures[0])}")
        raise typer.Exit(1)
    typer.echo("OK: loss on exactly the assistant turns and their end-of-turn tokens")


@user_errors
def tokenize(
    data: DataArg,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Tokens per conversation (truncated "
                                            "keeping the start) and per packed row.")],
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    chat_template: TemplateOpt = "auto",
    pack: Annotated[str | None, typer.Option("--pack", help="bfd: best-fit-decreasing bins of --max-length "
                                             "tokens.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: OUT-tokenized "
                                                "beside the build).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty folder that is not an "
                                            "earlier `mixer tokenize` output (its files are deleted).")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Tokenising processes (default: as "
                                                "the trainer, min(cores, 16) from 10,000 records).")] = None,
) -> None:
    """Tokenize a build once, as `mixer train sft` would (same template, mask and truncation), into Parquet
    shards with a manifest of the tokenizer's and template's hashes and tokens per source; `mixer train sft
    --data DIR` then trains from it without tokenizing."""
    from mixer.core.outdir import check_not_an_input
    from mixer.train.runlog import library_bars_off_terminal
    from mixer.train.template_check import load_check_tokenizer
    from mixer.train.tokenized import default_output, write_tokenized

    out = output or default_output(data)
    # the output folder is replaced as a whole: `-o runs/tiny --overwrite` must not delete the model it reads
    check_not_an_input(out, [(option, Path(p)) for option, p in (("--model", model), ("--tokenizer", tokenizer),
                                                                   ("--chat-template", chat_template))
                             if p and Path(p).exists()], option="--output")
    tok = load_check_tokenizer(model, tokenizer, chat_template)
    with library_bars_off_terminal():
        manifest = write_tokenized(data, tok, out, max_length=max_length, pack=pack, overwrite=overwrite,
                                   workers=workers, settings={"tokenizer_source": tokenizer or model,
                                                              "chat_template": chat_template})
    t = manifest["totals"]
    packed = f" in {manifest['rows']:,} packed rows ({manifest['packing']['fill']:.1%} full)" if pack else ""
    why = ", ".join(f"{n:,} {what}" for what, n in (("past max_length", t["dropped_past_max_length"]),
                                                     ("with no assistant reply", t["dropped_no_reply"])) if n)
    typer.echo(f"wrote {t['kept']:,} conversations ({t['trainable_tokens']:,} trainable of {t['total_tokens']:,} "
               f"tokens){packed} to {out}; dropped {t['dropped_no_loss_token']:,} with no loss token"
               + (f" ({why})" if why else "") + f", truncated {t['truncated']:,}")
