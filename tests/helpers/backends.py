"""A stand-in generation backend for the resume tests of `mixer gatt` and `mixer spin`: it answers each prompt
with its last turn and its seed (so a reply depends on both, as a real one does), counts what it was asked,
and can die after some calls, as a run does when its machine goes away."""

from __future__ import annotations

from typing import Any

from mixer.generate.backends import Completion


class StandInPolicy:
    """``fail_after``: the number of ``generate`` calls it answers before raising ``RuntimeError``."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.prompts, self.fail_after = 0, 0, fail_after

    def generate(self, prompts: list[list[dict[str, Any]]], seeds: list[int]) -> list[list[Completion]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("the machine went away")
        self.calls += 1
        self.prompts += len(prompts)
        return [[Completion(f"On {p[-1]['content'][-12:]} ({s % 1000})", 4, "stop")] for p, s in
                zip(prompts, seeds, strict=True)]
