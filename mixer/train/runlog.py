"""What a training run says: its decisions at INFO in one block, real problems at WARNING, no library noise.

A run decides things the user should see once (attention kernel, batching, weight dtype, mixed precision,
the effective batch and its gradient accumulation, pinned memory, the chat template's check, ...). Each
decision is recorded with :func:`decide` and the run prints them together at INFO right before training
starts::

    mixer train sft: decisions
      attention: sdpa (no CUDA device: SDPA (FlashAttention kernels are CUDA-only))
      batch: 4 examples per optimizer step = 2 per device x 2 accumulation steps x 1 process
      ...

Outside a run (a test, ``mixer check-template``) :func:`decide` logs the line at INFO at once. WARNING is
kept for what the user should act on (rows dropped, a setting that could not apply, ...).

Known-benign library messages are silenced for the run only (:func:`run_output`), each matched by its
module or logger and its text, so anything else, new or unknown, still reaches stderr:

- transformers' ``FutureWarning: `is_gradient_checkpointing` is deprecated`` (transformers 5): raised when
  TRL and peft read the old property inside the trainer; no setting of the user's calls it.
- TRL's DPO warning "You passed `model_init_kwargs` to the `DPOConfig`, but your model is already
  instantiated. The `model_init_kwargs` will be ignored.": mixer passes them for the frozen reference model,
  which TRL does load with them (``DPOTrainer`` builds the reference from ``args.model_init_kwargs``), so the
  message is wrong for mixer's runs.
- transformers' LOAD REPORT when a reward model is loaded and the only differences from the checkpoint are
  the causal LM's head (``lm_head.weight``, unused) and the new one-scalar ``score`` head (initialised
  here, trained by the run): said as the ``reward head`` decision instead. A report naming any other weight
  is shown as before.

Not silenced: torch's ``pin_memory`` warning. Without a CUDA device mixer turns ``dataloader_pin_memory``
off (a decision), so the warning appears only when a recipe asks for pinned memory on a host without a GPU,
which the user can fix.

When stderr is not a terminal (a log file, a pipe, CI) progress bars are off (transformers', datasets' and
the Trainer's ``disable_tqdm``: their carriage-return updates fill a log file) and ANSI escape sequences are
removed from the log records mixer's and transformers' handlers write (transformers' load report makes its
title bold with them).
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

logger = logging.getLogger("mixer.train")

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

#: warnings.filterwarnings arguments: (message regex, category, module regex), each explained above
BENIGN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.modeling_utils"),
)
#: log records dropped during a run: (logger name, message regex)
BENIGN_RECORDS: tuple[tuple[str, str], ...] = (
    ("trl.trainer.dpo_trainer", r"You passed `model_init_kwargs` to the `DPOConfig`, but your model is already "
                                r"instantiated"),
)
#: the weights a reward model's checkpoint differs in as a matter of course (the LM head, the new score head)
REWARD_HEAD_ROWS = {("lm_head.weight", "UNEXPECTED"), ("score.weight", "MISSING"), ("score.bias", "MISSING")}
_REPORT_ROW = re.compile(r"^(\S+)\s*\|\s*([A-Z_]+)\s*\|", re.MULTILINE)


@dataclass
class Decisions:
    """The decisions of one run, in the order they were made; said once by :meth:`log`."""

    kind: str
    lines: list[str] = field(default_factory=list)
    logged: bool = False
    last: str | None = None  # said after the others (how the run shows its progress)

    def add(self, line: str) -> None:
        if self.logged:  # made after training started (e.g. by a callback): said on its own
            logger.info("%s", line)
        elif line not in self.lines:
            self.lines.append(line)

    def log(self) -> None:
        lines = [*self.lines, *([self.last] if self.last else [])]
        if not self.logged and lines:
            logger.info("%s", "\n".join([f"mixer train {self.kind}: decisions", *(f"  {line}" for line in lines)]))
        self.logged = True


_current: ContextVar[Decisions | None] = ContextVar("mixer_train_decisions", default=None)
_progress: ContextVar[bool] = ContextVar("mixer_train_progress", default=True)


def decide(key: str, value: object, why: str = "") -> None:
    """Record one decision (``key: value (why)``) for the run's block; outside a run, log it at INFO now."""
    line = f"{key}: {value}" + (f" ({why})" if why else "")
    decisions = _current.get()
    if decisions is None:
        logger.info("%s", line)
    else:
        decisions.add(line)


def log_decisions() -> None:
    """Say the run's decisions (once; nothing outside a run). Called right before training starts."""
    decisions = _current.get()
    if decisions is not None:
        decisions.log()


def progress_bars() -> bool:
    """Whether this run shows progress bars: on a terminal, unless ``-q``."""
    return _progress.get()


class _Tidy(logging.Filter):
    """Drops the known-benign records; removes ANSI escapes where the output is not a terminal."""

    def __init__(self, strip_ansi: bool) -> None:
        super().__init__()
        self.strip_ansi = strip_ansi

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(record.name == name and re.search(rx, message) for name, rx in BENIGN_RECORDS):
            return False
        if routine_reward_head_report(message):
            return False
        if self.strip_ansi and "\x1b[" in message:
            record.msg, record.args = ANSI_ESCAPE.sub("", message), None
        return True


def routine_reward_head_report(message: str) -> bool:
    """A transformers LOAD REPORT for a sequence classifier that differs from its checkpoint only in the LM head
    and the new score head (what loading a causal LM as a reward model always gives)."""
    if "LOAD REPORT" not in message or "ForSequenceClassification" not in message:
        return False
    rows = set(_REPORT_ROW.findall(message))
    return bool(rows) and rows <= REWARD_HEAD_ROWS


@contextmanager
def run_output(kind: str, *, progress: bool | None = None) -> Iterator[Decisions]:
    """For the duration of one run: collect its decisions, silence the known-benign warnings and log records,
    and, off a terminal (or with ``progress=False``), turn progress bars off and ANSI escapes out."""
    import transformers.utils.logging as hf_logging

    hf_logging.get_logger("transformers")  # its handler exists from here on, so the filter can sit on it
    terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    show_progress = terminal if progress is None else progress and terminal
    decisions = Decisions(kind)
    tokens = (_current.set(decisions), _progress.set(show_progress))
    tidy = _Tidy(strip_ansi=not terminal)
    # the handlers that write this process's log records: the root's (mixer, TRL) and transformers' own
    handlers = [*logging.getLogger().handlers, *logging.getLogger("transformers").handlers]
    for handler in handlers:
        handler.addFilter(tidy)
    restore_bars = _progress_bars_off() if not show_progress else None
    if not show_progress:
        decisions.last = "progress bars: off (" + ("-q" if terminal else "stderr is not a terminal") + ")"
    try:
        with warnings.catch_warnings():
            for message, category, module in BENIGN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            yield decisions
    finally:
        for handler in handlers:
            handler.removeFilter(tidy)
        if restore_bars is not None:
            restore_bars()
        _current.reset(tokens[0])
        _progress.reset(tokens[1])


@contextmanager
def library_bars_off_terminal() -> Iterator[None]:
    """Off a terminal (a log file, a pipe, CI), transformers' and datasets' progress bars are off for the
    block: their carriage-return redraws ("Loading weights", "Writing model shards", "Tokenising") land in
    a log as one long line. On a terminal they stay. For the commands outside ``mixer train``
    (``tokenize``, ``dev tiny-model``, ``generate``), which have no run log of their own."""
    if getattr(sys.stderr, "isatty", lambda: False)():
        yield
        return
    restore = _progress_bars_off()
    try:
        yield
    finally:
        restore()  # type: ignore[operator]


def _progress_bars_off() -> object:
    """Turn transformers' and datasets' progress bars off; return what turns them back as they were."""
    import datasets
    import transformers.utils.logging as hf_logging

    had_hf, had_datasets = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()

    def restore() -> None:
        if had_hf:
            hf_logging.enable_progress_bar()
        if had_datasets:
            datasets.enable_progress_bars()

    return restore


def setup_cli_logging(quiet: bool = False) -> None:
    """The log ``mixer train`` writes to stderr: INFO and up (``quiet``: WARNING and up, so the decisions
    are hidden and problems still shown), in one plain format."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format=LOG_FORMAT)
    logging.getLogger("mixer").setLevel(logging.WARNING if quiet else logging.INFO)
