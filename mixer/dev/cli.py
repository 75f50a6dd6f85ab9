"""``mixer dev``: tools for trying mixer out offline (mounted by :mod:`mixer.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Tools for trying mixer out offline.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A new (or empty) folder for the model.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random Llama (about 0.1 M parameters) with a byte-level tokenizer and the Tulu chat
    template: a model `mixer train` and `mixer generate` take on a CPU in seconds, made without a download
    (the tests train the same one). It learns nothing useful; it shows the loop works."""
    from mixer.core.errors import MixerError
    from mixer.dev.tiny_model import make_tiny_model

    try:
        make_tiny_model(out, seed=seed)
    except MixerError as e:  # a user's mistake: one line and exit 2, as every mixer command
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote a tiny model to {out} (use it as --model {out})", err=True)
