"""The consoles every mixer command prints through, and the one wrapper that turns a user's error into
``error: <message>`` and exit 2 (Ctrl-C: one line and exit 130), for ``mixer``, ``mixer train`` and
``mixer generate`` alike: tracebacks are for bugs in mixer only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from mixer.core.errors import MixerError, user_message

#: the width of a console that is not a terminal (CI logs, pipes, files): wide enough that tables keep their
#: natural width and paths are never cut with "…"; COLUMNS still wins when set
NO_WRAP_WIDTH = 4096


class _Console(Console):
    """A rich console that wraps at the terminal's width on a terminal, and not at all elsewhere: rich's
    own fallback is 80 columns, which split "Apache-2.0" over two lines and cut paths in CI logs."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self.is_terminal or self._width is not None or "COLUMNS" in os.environ:
            return dims
        return ConsoleDimensions(NO_WRAP_WIDTH, dims.height)


err = _Console(stderr=True)
out = _Console()

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a user's error (a MixerError, a read-only folder, a full disk) into ``error: <message>`` on
    stderr and exit code 2; any other error keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            interrupted("interrupted; previous output kept" if fn.__name__ == "build" else "interrupted")
        except (MixerError, OSError) as e:
            message = user_message(e)
            if message is None:
                raise
            # the message is text, not markup: "[ray]" in an install hint must survive
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def interrupted(message: str) -> None:
    """Ctrl-C: stop any progress display, print one line on a clean line of stderr, exit 130 (128 + SIGINT,
    what shells report for a command interrupted so)."""
    live = getattr(err, "_live_stack", None)
    while live:  # a transient progress bar, erased as it stops
        live[-1].stop()
    if err.is_terminal:
        err.file.write("\r\x1b[K")  # the terminal's echoed ^C, or half a line, is cleared first
    err.print(message, highlight=False, markup=False)
    raise typer.Exit(130)
