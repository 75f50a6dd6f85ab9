"""The ``mixer`` command line.

A user error (recipe, raw file, record) prints one clear message and exits 2; tracebacks are for
bugs in mixer only.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mixer import __version__
from mixer.core.errors import MixerError
from mixer.report.console import err, out, user_errors

app = typer.Typer(
    name="mixer",
    help="Build, audit and extend instruction-tuning mixtures (Tulu V2 and your own).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_json(obj: Any) -> None:
    """One JSON document on stdout (the ``--json`` views): nothing else goes to stdout."""
    import json

    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False
          ) -> None:
    if version:
        out.print(f"mixer {__version__}")
        raise typer.Exit()


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/v2-sample.yaml.")]
RawDirOpt = Annotated[str | None, typer.Option("--raw-dir", help="Folder holding the raw source files "
                                                "(overrides the recipe's raw_dir).")]


@app.command()
@user_errors
def build(
    recipe: RecipeArg,
    raw_dir: RawDirOpt = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Output folder (overrides recipe).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (overrides the recipe's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary (warnings are still "
                                        "printed).")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes for reading and token counting "
                                                "(default: all cores).")] = None,
    token_cache: Annotated[bool, typer.Option(help="Reuse token counts from earlier builds "
                                              "($MIXER_CACHE_DIR, default ~/.cache/mixer).")] = True,
    read_cache: Annotated[bool, typer.Option(help="Reuse a source's read stage (records read, normalised, "
                                             "filtered) from an earlier build when its files, settings "
                                             "and mixer's code are unchanged.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT even when it is not an earlier "
                                            "mixer build, or holds files that build did not write (its files are "
                                            "deleted).")] = False,
    engine: Annotated[str, typer.Option(help="Where the work runs: local (this machine's cores) or ray (a Ray "
                                        "cluster; needs the \\[ray] extra). Both give the same bytes.")] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: the cluster to join (what `ray start "
                                                "--head` printed, or auto); default: start Ray here.")] = None,
    work_dir: Annotated[str | None, typer.Option(help="Folder for intermediate files: a path, a file:// URI "
                                                 "or an object store URI (s3://bucket/prefix); with a cluster, "
                                                 "one every node reaches.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {out, card} as JSON on stdout when done (no "
                                          "tables, no progress; warnings still on stderr).")] = False,
) -> None:
    """Build a mixture: sharded Parquet in OUT/data, the data card in OUT/README.md and OUT/card.json,
    every dropped record in OUT/dropped/."""

    from mixer.build import build as run_build
    from mixer.recipe.load import load_recipe
    from mixer.report.progress import build_reporter

    if not token_cache:
        os.environ["MIXER_TOKEN_CACHE"] = "0"  # worker processes inherit it
    if not read_cache:
        os.environ["MIXER_READ_CACHE"] = "0"
    if engine not in ("local", "ray"):
        raise MixerError(f"--engine {engine!r}: choose local or ray")
    if address is not None and engine != "ray":
        raise MixerError("--address needs --engine ray")
    if workers is not None and engine == "ray":
        raise MixerError("--workers sizes the local engine; --engine ray runs as many units at once as the "
                         "cluster has CPUs")
    r = load_recipe(recipe, raw_dir=raw_dir, output=out_dir, seed=seed)
    reporter = build_reporter(err, quiet=quiet or as_json)
    if engine == "ray":
        from mixer.engine.ray_engine import RayEngine

        if address is not None and "MIXER_CACHE_DIR" not in os.environ:
            # read units write the read cache's entries, so on a cluster it must be on shared storage:
            # without a MIXER_CACHE_DIR (which every node then reaches), no read cache
            os.environ["MIXER_READ_CACHE"] = "0"

        with RayEngine(address) as ray_engine:
            result = run_build(r, reporter, engine=ray_engine, overwrite=overwrite,  # type: ignore[arg-type]
                               work_dir=work_dir)
    else:
        result = run_build(r, reporter, workers, overwrite=overwrite, work_dir=work_dir)  # type: ignore[arg-type]
    if as_json:
        _print_json({"out": str(result.out), "card": result.card})
    elif not quiet:
        from mixer.report.terminal import print_card

        print_card(result.card, out)
        t = result.timings
        wall = sum(v["wall_s"] for k, v in t.items() if isinstance(v, dict) and "wall_s" in v)
        hits = t.get("read_cache_hits")
        cached = f"; {len(hits)} of {len(r.sources)} sources from the read cache" if hits else ""
        err.print(f"wrote {result.card['totals']['records']:,} records to {result.out} "
                  f"in {wall:.1f} s (peak RSS {t['peak_rss_mb']:.0f} MiB{cached})", highlight=False)


@app.command()
@user_errors
def validate(recipe: RecipeArg, raw_dir: RawDirOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (problems "
                                                   "included; exit 2 when there are any).")] = False) -> None:
    """Check a recipe and its files (existence, format of the first records) without building; every
    missing or bad file is reported in one pass."""
    from mixer.recipe.validate import ValidationFailed, check_recipe, print_check

    result = check_recipe(recipe, raw_dir)
    if as_json:
        _print_json(result)
    else:
        print_check(result, out)
    if result["problems"]:
        raise ValidationFailed(str(recipe), result["problems"])


@app.command()
@user_errors
def sources(as_json: Annotated[bool, typer.Option("--json", help="Print the adapters as JSON.")] = False) -> None:
    """List the source adapters, the formats they read, their licences, and each option with its default,
    valid values and meaning."""
    from mixer.report.terminal import describe_sources, print_sources

    if as_json:
        _print_json(describe_sources())
    else:
        print_sources(out)


@app.command()
@user_errors
def card(
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="A build's output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print card.json instead of tables.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report "
                                              "(card, plots, sample records) to this file.")] = None,
    n: Annotated[int, typer.Option("-n", min=0, help="Records per source in the HTML report.")] = 5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the --html file even when mixer "
                                            "did not write it.")] = False,
) -> None:
    """Show a build's data card, or the card of a `mixer generate` or `mixer gatt` output."""
    from mixer.report.markdown import is_generate_card, load_card
    from mixer.report.terminal import print_card, print_generate_card

    c = load_card(out_path, builds_only=html is not None)
    if is_generate_card(c) and not as_json:
        print_generate_card(out_path, out)
        return
    if html is not None:
        from mixer.core.outdir import check_output_file, is_html_report
        from mixer.report.html import write_html_report

        check_output_file(html, is_ours=is_html_report, overwrite=overwrite, what="HTML report path")

        err.print(f"wrote {write_html_report(out_path, html, n)}", highlight=False)
    if as_json:
        sys.stdout.write((out_path / "card.json").read_text(encoding="utf-8"))
        return
    print_card(c, out)


@app.command()
@user_errors
def diff(
    a: Annotated[Path, typer.Argument(metavar="OUT_A", help="First build's output folder.")],
    b: Annotated[Path, typer.Argument(metavar="OUT_B", help="Second build's output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the difference as JSON.")] = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when the builds' records or counts "
                                            "differ, 0 when they do not (as `git diff --exit-code`).")] = False,
) -> None:
    """What changed between two builds: counts, tokens, records only in one, recipe differences."""
    from mixer.report.diff import builds_differ, diff_builds, print_diff

    d = diff_builds(a, b)
    if as_json:
        _print_json(d)
    else:
        print_diff(d, out)
    if exit_code and builds_differ(d):
        raise typer.Exit(1)


@app.command()
@user_errors
def show(
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="A build's output folder.")],
    n: Annotated[int, typer.Option("-n", min=1, help="Number of records.")] = 3,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source: its recipe name "
                                               "or dataset label (prefix match, e.g. science).")] = None,
    dropped: Annotated[bool, typer.Option("--dropped", help="The records the build dropped (OUT/dropped/), "
                                          "with the stage and reason.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record (JSON Lines).")] = False,
) -> None:
    """Print records of a build, readable."""
    from mixer.report.terminal import print_records

    print_records(out_path, n, source, out, dropped=dropped, as_json=as_json)


@app.command()
@user_errors
def pin(recipe: RecipeArg, raw_dir: RawDirOpt = None) -> None:
    """Write the sha256 of every raw file the recipe names into the recipe (`sha256:` per file), so
    later builds refuse a file that changed; a Hub entry also gets the commit its revision resolves to."""
    from mixer.recipe.load import load_recipe
    from mixer.recipe.pin import pin_recipe

    pins = pin_recipe(recipe, raw_dir)
    for p in pins:
        out.print(f"{p.source}: {p.path} sha256:{p.sha256}" + ("" if p.changed else " (unchanged)"),
                  highlight=False)
    written = sum(p.changed for p in pins)
    kept = len(pins) - written  # already pinned to the same bytes: a second `mixer pin` finds them all so
    already = f" ({kept} already pinned, unchanged)" if kept else ""
    err.print(f"pinned {written} of {len(pins)} files in {recipe}{already}", highlight=False)
    globs = [f"{s.name}: {f.path}" for s in load_recipe(recipe, raw_dir=raw_dir).sources for f in s.files
             if any(ch in f.path for ch in "*?[") and not f.is_hub]
    if globs:
        err.print(f"[yellow]warning:[/] not pinned, as a pin names one file's bytes: {escape(', '.join(globs))} "
                  "(list the files one by one to pin them)", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def fetch(recipe: RecipeArg, raw_dir: RawDirOpt = None,
          force: Annotated[bool, typer.Option(help="Download files that already exist.")] = False) -> None:
    """Download each recipe file that has a `url` into the raw folder, and each `hf` entry's files into
    the Hugging Face cache."""
    from mixer.recipe.fetch import fetch_recipe
    from mixer.recipe.load import load_recipe

    fetch_recipe(load_recipe(recipe, raw_dir=raw_dir), force=force, console=err)


def _mount_train() -> None:
    try:
        from mixer.train.cli import app as train_app
    except ImportError:  # the trainer module itself only imports torch lazily
        return
    # `mixer train --help` shows the train app's own help (with the shipped recipes); this list, the short one
    app.add_typer(train_app, name="train", short_help="Fine-tune with TRL on a built mixture (needs the train "
                  "extra: pip install mixer\\[train]).")


_mount_train()


dev_app = typer.Typer(help="Tools for trying mixer out offline.", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
app.add_typer(dev_app, name="dev", short_help="Tools for trying mixer out offline (a tiny model).")


@dev_app.command("tiny-model")
@user_errors
def dev_tiny_model(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A new (or empty) folder for the model.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random Llama (about 0.1 M parameters) with a byte-level tokenizer and the Tulu chat
    template: a model `mixer train` and `mixer generate` take on a CPU in seconds, made without a download
    (the tests train the same one). It learns nothing useful; it shows the loop works. A folder that already
    holds it (same seed) is kept, so the commands that use it can be run again."""
    from mixer.train.runlog import library_bars_off_terminal
    from mixer.train.tiny_model import is_tiny_model, make_tiny_model

    if is_tiny_model(out, seed=seed):  # a rerun of the README's commands
        typer.echo(f"{out} already holds the tiny model (seed {seed}); kept as is", err=True)
        return
    with library_bars_off_terminal():
        make_tiny_model(out, seed=seed)
    typer.echo(f"wrote a tiny model to {out} (use it as --model {out})", err=True)


def _mount_generate() -> None:
    from mixer.generate.cli import gatt, generate, spin

    app.command("generate")(generate)  # prints its own errors (exit 2)
    app.command("gatt")(gatt)
    app.command("spin")(spin)


_mount_generate()


def _mount_prep() -> None:
    from mixer.train.prep_cli import check_template, tokenize

    app.command("check-template")(check_template)  # print their own errors (exit 2)
    app.command("tokenize")(tokenize)


_mount_prep()


def _one_line_summaries(typer_app: typer.Typer) -> None:
    """Give every command a one-line summary: its docstring's first paragraph with the source's line breaks
    folded. Typer's rich command list prints a docstring's line breaks as they are, so the wrapped source
    lines showed as ragged rows in ``mixer --help``; a one-line summary is re-wrapped to the terminal."""
    for info in typer_app.registered_commands:
        if info.short_help is None:
            doc = info.help or inspect.getdoc(info.callback) or ""
            info.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _one_line_summaries(group.typer_instance)


_one_line_summaries(app)


def main() -> None:
    app()


if __name__ == "__main__":  # python -m mixer.cli (it exited 0 without doing anything)
    main()
