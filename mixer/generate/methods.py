"""``--method``: the data-making methods by name (best-of-N is :mod:`mixer.generate.run` itself)."""

from __future__ import annotations

from mixer.core.errors import MixerError
from mixer.generate.config import GenerateConfig
from mixer.generate.distill import ContextDistill, SelfDistill
from mixer.generate.job import Method
from mixer.generate.judge import Judge
from mixer.generate.synth import EvolInstruct, Orca

METHOD_CLASSES: dict[str, type[Method]] = {m.name: m for m in (ContextDistill, SelfDistill, EvolInstruct, Orca,
                                                                  Judge)}


def make_method(cfg: GenerateConfig) -> Method:
    """The configured method, its files (pre-prompts, system messages, rubric) read and checked."""
    try:
        cls = METHOD_CLASSES[cfg.method]
    except KeyError:
        raise MixerError(f"method must be one of best-of-n, {', '.join(METHOD_CLASSES)}; got {cfg.method!r}") from None
    return cls(cfg)
