"""What ``mixer generate`` is asked to do (:class:`GenerateConfig`), and the per-prompt seed.

The command-line options map one to one onto the fields; :meth:`GenerateConfig.sampling_identity` is what a
resume must match, :meth:`GenerateConfig.assembly_settings` what only re-picks from finished shards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.generate.backends import BACKENDS, BATCHINGS, VLLM_MAX_TEMPERATURE
from mixer.generate.prompts import PROMPT_MODES

#: ``--method``: best-of-N with a reward model (the default), and the data-making methods of issue 20
METHODS = ("best-of-n", "context-distill", "self-distill", "evol-instruct", "orca", "judge")
#: the methods that drop a reply cut at ``--max-new-tokens`` unless ``--keep-truncated`` (self-distill keeps the
#: gold answer instead; the judge's judgement is not training data)
TRUNCATING_METHODS = ("context-distill", "evol-instruct", "orca")
#: the methods that need ``--reward-model`` (context-distill only with ``--targeted``)
REWARD_METHODS = ("best-of-n",)


@dataclass
class GenerateConfig:
    """What ``mixer generate`` does; the command-line options map one to one onto these fields."""

    policy: str = field(metadata={"help": "The model that samples (a local folder with a chat template)."})
    output: str = field(metadata={"help": "The output folder (a new one, or an earlier run's to resume)."})
    reward_model: str | None = field(default=None, metadata={"help": "A `mixer train rm` output that scores."})
    method: str = field(default="best-of-n", metadata={"help": f"One of {METHODS}."})
    data: str | None = field(default=None, metadata={"help": "A mixer build (SFT or preference) to take prompts from."})
    recipe: str | None = field(default=None, metadata={"help": "A build recipe whose sources give the prompts."})
    sources: list[str] | None = field(default=None, metadata={"help": "Recipe sources to read (default: all)."})
    raw_dir: str | None = field(default=None, metadata={"help": "Overrides the recipe's raw_dir."})
    prompt_mode: str = field(default="first_user", metadata={"help": f"One of {PROMPT_MODES}."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use the first N distinct prompts."})
    n: int = field(default=4, metadata={"help": "Samples per prompt."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest reply, in tokens."})
    seed: int = field(default=42, metadata={"help": "Run seed; each prompt's seed derives from it and its key."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per vLLM call; replies per reward-model pass."})
    min_reward_gap: float = field(default=0.0, metadata={"help": "A pair needs best - worst >= this (and > 0)."})
    dedup: bool = field(default=True, metadata={"help": "Identical replies (ignoring surrounding space) count once."})
    keep_truncated: bool | None = field(default=None, metadata={
        "help": "Keep replies cut at max_new_tokens? Default: yes for best-of-n (may be picked), no for the other "
                "methods (dropped, counted as truncated)."})
    backend: str = field(default="transformers", metadata={"help": f"One of {BACKENDS}."})
    chat_template: str | None = field(default=None, metadata={"help": "`tulu` or a .jinja file; default: the model's."})
    dtype: str = field(default="auto", metadata={
        "help": "Policy (and reward model) weights: auto (bf16 on GPU, fp32 on CPU), ..."})
    shard_prompts: int = field(default=64, metadata={"help": "Prompts per resumable shard."})
    name: str | None = field(default=None, metadata={"help": "`dataset` label of the outputs (default: folder name)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing folder that is not resumable."})
    batching: str = field(default="auto", metadata={"help": f"transformers backend: one of {BATCHINGS}."})
    score_tokens: int = field(default=16384, metadata={"help": "Tokens per reward-model pass (length-sorted)."})
    # method options (each used by the method named; see mixer.generate.methods)
    targeted: bool = field(default=False, metadata={"help": "context-distill: keep only answers the RM prefers."})
    preprompts: str | None = field(default=None, metadata={"help": "context-distill: YAML of pre-prompts/templates."})
    risk_category: str | None = field(default=None, metadata={"help": "context-distill: the prompts' risk category."})
    evolutions: list[str] | None = field(default=None, metadata={"help": "evol-instruct: the evolutions to draw from."})
    system_messages: str | None = field(default=None, metadata={"help": "orca: YAML list of system messages."})
    rubric: str | None = field(default=None, metadata={"help": "judge: YAML rubric (template, pattern, scale)."})

    def __post_init__(self) -> None:
        if self.keep_truncated is None:  # best-of-N may pick a cut reply; a method's single reply is its data
            self.keep_truncated = self.method == "best-of-n"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise MixerError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.reward_model is None and (self.method in REWARD_METHODS or self.targeted):
            raise MixerError(f"--method {self.method}{' --targeted' if self.targeted else ''} needs --reward-model "
                             "(a `mixer train rm` output)")
        owners = {"targeted": ("--targeted", "context-distill"), "preprompts": ("--preprompts", "context-distill"),
                  "risk_category": ("--risk-category", "context-distill"),
                  "evolutions": ("--evolution", "evol-instruct"), "system_messages": ("--system-messages", "orca"),
                  "rubric": ("--rubric", "judge")}
        for name, (option, owner) in owners.items():
            if getattr(self, name) not in (None, False) and self.method != owner:
                raise MixerError(f"{option} is an option of --method {owner}, not {self.method}")
        if self.batching not in BATCHINGS:
            raise MixerError(f"batching must be one of {', '.join(BATCHINGS)}; got {self.batching!r}")
        if self.score_tokens < 1:
            raise MixerError(f"score_tokens must be at least 1, got {self.score_tokens}")
        if (self.data is None) == (self.recipe is None):
            raise MixerError("give prompts with exactly one of --data (a mixer build) or --recipe (a build recipe)")
        if self.sources and self.recipe is None:
            raise MixerError("--source selects recipe sources; it needs --recipe")
        if self.prompt_mode not in PROMPT_MODES:
            raise MixerError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}; got {self.prompt_mode!r}")
        if self.backend not in BACKENDS:
            raise MixerError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        for name, low in (("n", 1), ("max_new_tokens", 1), ("batch_size", 1), ("shard_prompts", 1)):
            if getattr(self, name) < low:
                raise MixerError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise MixerError(f"max_prompts must be positive, got {self.max_prompts}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise MixerError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        if self.backend == "vllm" and self.temperature > VLLM_MAX_TEMPERATURE:
            # vLLM's SamplingParams refuses it (after the model has loaded); say so before anything loads
            raise MixerError(f"--backend vllm takes temperatures in [0, {VLLM_MAX_TEMPERATURE:g}], "
                             f"got {self.temperature}")
        if self.min_reward_gap < 0:
            raise MixerError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}")

    def sampling_identity(self) -> dict[str, Any]:
        """The settings that decide the samples and rewards in the shards: a resume must match them."""
        keys = ("data", "recipe", "sources", "raw_dir", "prompt_mode", "max_prompts", "policy", "reward_model",
                "n", "temperature", "top_p", "max_new_tokens", "seed", "backend", "chat_template", "dtype",
                "shard_prompts")
        identity = {k: getattr(self, k) for k in keys}
        if self.method != "best-of-n":  # one reply per prompt and call; the method's own settings join later
            del identity["n"]
            identity["method"] = self.method
            if not self.method_uses_reward_model():
                del identity["reward_model"]
        if self.backend == "transformers":
            from mixer.generate.backends import resolve_batching

            identity["batching"] = resolve_batching(self.batching)
            if identity["batching"] == "continuous":  # one RNG stream per call: the call's prompts decide samples
                identity["batch_size"] = self.batch_size
        return identity

    def assembly_settings(self) -> dict[str, Any]:
        """The settings that only decide what is picked from the shards (changing them re-picks, no resampling)."""
        if self.method in TRUNCATING_METHODS:
            return {"name": self.label, "keep_truncated": self.keep_truncated}
        if self.method != "best-of-n":
            return {"name": self.label}
        return {"min_reward_gap": self.min_reward_gap, "dedup": self.dedup, "keep_truncated": self.keep_truncated,
                "name": self.label}

    def method_uses_reward_model(self) -> bool:
        return self.method in REWARD_METHODS or self.targeted

    @property
    def label(self) -> str:
        return self.name or Path(self.output).resolve().name


def prompt_seed(run_seed: int, key: str) -> int:
    """A prompt's seed: from the run seed and the prompt's key only, so it is the same in any batch or resume."""
    digest = hashlib.blake2b(f"{run_seed}\x00{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF
