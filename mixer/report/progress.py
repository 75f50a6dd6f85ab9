"""What a build shows on stderr while it runs.

On a terminal every stage of the build is named while it runs (spinner, label, elapsed time), with a
bar where the stage counts its own work (records read, sources selected), and one line when a stage
that took a second or more ends. Off a terminal (CI, pipes, files) nothing but warnings is printed:
a log is no place for redrawn bars. ``-q`` keeps only the warnings too.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn
from rich.text import Text

from mixer.stages.base import Reporter

#: a stage that ends faster than this gets no line of its own (the build's summary covers it)
SHOWN_AFTER_S = 1.0


class WarningReporter(Reporter):
    """Warnings only (a source left out, a take the data cannot fill): ``--quiet``, and every build whose
    stderr is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class StageProgress(WarningReporter):
    """Every stage's name, elapsed time and, where the stage counts its work, a bar (rich, transient)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        super().__init__(console)
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                                  _Count(), TimeElapsedColumn(), console=console, transient=True)
        self._stage: Any = None
        self._task: Any = None
        self._counted = False  # the running sub-task has a total: each unit shows at once
        self._pending = 0

    def stage_started(self, name: str, label: str) -> None:
        self._stage = self._progress.add_task(label, total=None)
        self._progress.start()
        self._progress.refresh()  # named at once, not at the next tick: short stages show too

    def stage_finished(self, name: str, label: str, seconds: float, dropped: int) -> None:
        if self._stage is not None:
            self._progress.remove_task(self._stage)
            self._stage = None
        self._progress.stop()
        if seconds >= SHOWN_AFTER_S:
            note = f", {dropped:,} dropped" if dropped else ""
            self.console.print(f"[green]✓[/] {escape(label)} [dim]{seconds:.1f} s{note}[/]", highlight=False)

    def start(self, description: str, total: int | None = None) -> None:
        self._task = self._progress.add_task(f"  {description}", total=total)
        self._counted = total is not None
        self._progress.start()
        self._progress.refresh()

    def advance(self, n: int = 1) -> None:
        self._pending += n
        if self._task is not None and (self._counted or self._pending >= 2000):  # records: in steps
            self._progress.advance(self._task, self._pending)
            self._pending = 0

    def finish(self) -> None:
        if self._task is not None:
            self._progress.advance(self._task, self._pending)
            self._pending = 0
            self._progress.remove_task(self._task)
            self._task = None
        if self._stage is None:
            self._progress.stop()

    def warn(self, message: str) -> None:
        self._progress.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Count(ProgressColumn):
    """``done/total`` for a task that counts its units; ``done`` alone for records read (no total known);
    nothing for a stage's own line (its spinner and time say it is running)."""

    def render(self, task: Any) -> Any:
        if task.total is not None:
            return Text(f"{int(task.completed):,}/{int(task.total):,}")
        return Text(f"{int(task.completed):,}" if task.completed else "")


def build_reporter(console: Console, *, quiet: bool) -> Reporter:
    """The reporter ``mixer build`` uses: bars on a terminal, warnings only with ``quiet`` or off one."""
    if quiet or not console.is_terminal:
        return WarningReporter(console)
    return StageProgress(console)


class GenerateProgress:
    """``mixer generate``'s bar on a terminal: prompts done of all, tokens/s and the time left, from the
    shards this run generated (prompts an earlier run did count as done, not into the speed). A callable for
    ``run_generate(progress=...)``; use as a context manager."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(TextColumn("generate"), BarColumn(bar_width=30), TextColumn("{task.description}"),
                                  console=console, transient=True)
        self._task: Any = None
        self.done = self.total = self.new_prompts = self.tokens = 0
        self.seconds = 0.0

    def __enter__(self) -> GenerateProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, prompts: int, total: int, tokens: int, seconds: float) -> None:
        self.total = total
        self.done += prompts
        if seconds > 0:
            self.new_prompts += prompts
            self.tokens += tokens
            self.seconds += seconds
        if self._task is None:
            self._task = self._progress.add_task("", total=total)
        self._progress.update(self._task, completed=self.done, description=self.describe())
        self._progress.refresh()

    def describe(self) -> str:
        """``12/40 prompts · 85.3 tokens/s · ETA 0:01:10`` (speed and ETA once a shard is done)."""
        text = f"{self.done:,}/{self.total:,} prompts"
        if self.seconds > 0:
            left = (self.total - self.done) * self.seconds / max(self.new_prompts, 1)
            minutes, secs = divmod(round(left), 60)
            text += f" · {self.tokens / self.seconds:,.1f} tokens/s · ETA {minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        return text
