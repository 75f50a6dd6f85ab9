"""Worker entry point for ``accelerate launch -m mixer.train.run {sft,dpo} ...``.

Each launched process runs the same Typer app; it sees ``LOCAL_RANK`` and so trains in-process
instead of launching again.
"""

from __future__ import annotations

from mixer.train.cli import app


def main() -> None:
    """Run the ``mixer train`` app with this process's arguments."""
    app(prog_name="mixer train")


if __name__ == "__main__":
    main()
