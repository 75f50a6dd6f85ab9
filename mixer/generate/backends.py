"""Sampling backends for ``mixer generate``: transformers ``generate`` and vLLM, one output format.

Both take a list of prompts with one seed each and return, per prompt, ``n`` :class:`Completion` s. The
seed is per prompt (derived from the run seed and the prompt's key), so a prompt's samples do not depend
on which other prompts share its batch, on the batch size, or on where an interrupted run resumed.

- ``transformers``: ``--batching`` picks how:

  - ``continuous``: transformers' own continuous batching with paged attention (``init_continuous_batching``,
    the engine behind ``model.generate_batch``; transformers >= 5): every prompt of a ``--batch-size`` call
    is queued before the scheduler starts, ``n`` samples forked per prompt, one sampling RNG per call seeded
    with the first prompt's seed. Runs with SDPA and eager attention on CPU (transformers switches them to
    their paged variants) and FlashAttention on a GPU. With sampling, a prompt's samples depend on the other
    prompts of its call (one RNG stream), so they are reproducible for the same settings (the call's prompts
    are fixed by the shard), not independent of ``--batch-size``;
  - ``padded``: ``model.generate`` over one prompt at a time with ``num_return_sequences=n`` (its n rows
    have the same length, so there is no padding to change the numerics), the global torch RNG seeded with
    the prompt's seed: a prompt's samples do not depend on its batch;
  - ``auto`` (default): ``continuous`` where the installed transformers has it, else ``padded``.

  Greedy decoding gives the same tokens either way (a test checks it). Exact on CPU: two runs give the same
  bytes. Works on one GPU too.
- ``vllm``: ``LLM.chat`` over ``batch_size`` prompts per call, one ``SamplingParams(n=..., seed=...)``
  per prompt (``n=1`` and the reply repeated when greedy: vLLM refuses ``n > 1`` at temperature 0). vLLM is
  an optional extra (``pip install 'mixer[vllm]'``), GPU only; reproducible with per-request seeds on the
  same hardware and version, not across them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mixer.core.errors import MixerError

logger = logging.getLogger("mixer.generate")

BACKENDS = ("transformers", "vllm")
BATCHINGS = ("auto", "continuous", "padded")
#: vLLM's SamplingParams accepts temperatures in [0, 2] (it raises above)
VLLM_MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Completion:
    """One sampled reply: its text (special tokens removed), its length in tokens, why it stopped."""

    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class SamplingSettings:
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int


class Backend(Protocol):
    name: str

    def versions(self) -> dict[str, str]: ...

    def generate(self, prompts: list[list[dict[str, str]]], seeds: list[int]) -> list[list[Completion]]: ...


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_generation_template(tokenizer: Any, choice: str | None, model_dir: str | Path) -> str:
    """The chat template to prompt the policy with: ``choice`` (``tulu`` or a .jinja file) when given, else
    the model folder's own. None of either is an error: guessing a format would sample from a prompt the
    model was never trained on, and the card would not say so."""
    from mixer.core.chat import TULU_CHAT_TEMPLATE

    if choice:
        if choice == "tulu":
            return TULU_CHAT_TEMPLATE
        path = Path(choice)
        if not path.is_file():
            raise MixerError(f"--chat-template must be `tulu` or a .jinja file; {choice!r} is neither")
        return path.read_text(encoding="utf-8")
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if not own:
        raise MixerError(f"{model_dir}: the model folder has no chat template (tokenizer_config.json / "
                         "chat_template.jinja) and none is configured: pass --chat-template tulu or a .jinja file")
    return own


def has_continuous_batching() -> bool:
    """Whether the installed transformers has continuous batching (``GenerationMixin.init_continuous_batching``)."""
    try:
        from transformers.generation.utils import GenerationMixin
    except ImportError:
        return False
    return hasattr(GenerationMixin, "init_continuous_batching")


def resolve_batching(choice: str) -> str:
    """``auto`` -> ``continuous`` where transformers has it, else ``padded``; an explicit choice is checked."""
    if choice not in BATCHINGS:
        raise MixerError(f"batching must be one of {', '.join(BATCHINGS)}; got {choice!r}")
    available = has_continuous_batching()
    if choice == "auto":
        return "continuous" if available else "padded"
    if choice == "continuous" and not available:
        raise MixerError("--batching continuous needs transformers with continuous batching (init_continuous_batching, "
                         "transformers >= 5); use --batching padded")
    return choice


class TransformersBackend:
    """Sampling with transformers (see the module docstring for the batching modes and their determinism)."""

    name = "transformers"

    def __init__(self, policy: str | Path, sampling: SamplingSettings, *, chat_template: str | None = None,
                 dtype: str = "auto", device: str | None = None, batching: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mixer.train.accel.modeling import check_model_source

        check_model_source(policy, option=None)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(policy)
        except (OSError, ValueError, TypeError) as e:
            raise MixerError(f"cannot load a tokenizer from {policy}: {e}") from e
        self.template = resolve_generation_template(self.tokenizer, chat_template, policy)
        if self.tokenizer.eos_token_id is None:
            raise MixerError(f"{policy}: the tokenizer has no eos token, so a reply could never end")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        try:
            self.model = AutoModelForCausalLM.from_pretrained(policy, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as e:
            raise MixerError(f"cannot load a policy model from {policy}: {e}") from e
        self.model.to(self.device).eval()
        self.sampling = sampling
        # a reply ends at the tokenizer's eos and at every end token the model's generation config lists: chat
        # models whose turn ends with its own token (Gemma's <end_of_turn>, Llama 3's <|eot_id|>) list it there,
        # and model.generate would stop at it by default; passing the tokenizer's eos alone overrode that list
        listed = getattr(self.model.generation_config, "eos_token_id", None)
        listed = listed if isinstance(listed, list) else [listed] if listed is not None else []
        self.stop_ids = {self.tokenizer.eos_token_id, *(int(t) for t in listed)}
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self._torch = torch
        self.batching = resolve_batching(batching)

    def versions(self) -> dict[str, str]:
        return {k: v for k in ("torch", "transformers") if (v := package_version(k))}

    def generate(self, prompts: list[list[dict[str, str]]], seeds: list[int]) -> list[list[Completion]]:
        if self.batching == "continuous":
            return self._continuous(prompts, seeds)
        return [self._one(p, s) for p, s in zip(prompts, seeds, strict=True)]

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, chat_template=self.template,
                                                       add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"])

    def _completion(self, row: list[int]) -> Completion:
        """One generated row (no prompt) in the shared format: cut at the first stop token, decoded."""
        stop = next((i for i, t in enumerate(row) if t in self.stop_ids), None)
        tokens = row if stop is None else row[:stop]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Completion(text, len(tokens) + (stop is not None), "length" if stop is None else "stop")

    def _continuous(self, prompts: list[list[dict[str, str]]], seeds: list[int]) -> list[list[Completion]]:
        """All prompts through one continuous-batching manager: queued first, then the scheduler starts, so the
        batches it forms (and, sampling, the RNG draws) are the same in every run."""
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        s = self.sampling
        sample = s.temperature > 0
        k = s.n if sample else 1
        inputs = [self._encode(p) for p in prompts]
        config = GenerationConfig(max_new_tokens=s.max_new_tokens, do_sample=sample, num_return_sequences=k,
                                  eos_token_id=sorted(self.stop_ids), pad_token_id=self.pad_id,
                                  **({"temperature": s.temperature, "top_p": s.top_p, "top_k": 0} if sample else {}))
        sizing: dict[str, Any] = {}
        if not self.device.startswith("cuda"):
            # off a GPU transformers cannot size the paged cache from free device memory: give it room for every
            # request of the call at full length (pages of 256 tokens), and a modest batch token budget
            pages = -(-(max(map(len, inputs)) + s.max_new_tokens) // 256)
            sizing = {"num_blocks": len(inputs) * k * pages + 1, "max_batch_tokens": 512}
        cb_config = ContinuousBatchingConfig(seed=seeds[0], **sizing)
        manager = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=cb_config)
        results: dict[str, Any] = {}
        try:
            ids = manager.add_requests(inputs=inputs, max_new_tokens=s.max_new_tokens)
            if self.device.startswith("cuda"):
                manager.warmup()
            manager.start()
            while len(results) < len(ids) * k:
                result = manager.get_result(timeout=1)
                if result is not None and result.is_finished():
                    results[result.request_id] = result
                elif result is None and not manager.is_running():
                    break
        finally:
            manager.stop(block=True)
            manager.destroy()
        out: list[list[Completion]] = []
        for rid in ids:
            rows = []
            for child in [f"{rid}__child#{i}" for i in range(k - 1)] + [rid]:
                result = results.get(child)
                if result is None or result.error is not None:
                    raise MixerError(f"continuous batching did not finish request {child}: "
                                     f"{getattr(result, 'error', None) or 'no result'} (rerun to resume)")
                rows.append(self._completion(list(result.generated_tokens)))
            out.append(rows if sample else rows * s.n)
        return out

    def _one(self, messages: list[dict[str, str]], seed: int) -> list[Completion]:
        torch = self._torch
        s = self.sampling
        ids = self._encode(messages)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        sample = s.temperature > 0
        # greedy decoding gives one answer: decode it once and repeat it (transformers refuses n > 1 greedy)
        kwargs: dict[str, Any] = {"do_sample": sample, "max_new_tokens": s.max_new_tokens,
                                  "num_return_sequences": s.n if sample else 1, "eos_token_id": sorted(self.stop_ids),
                                  "pad_token_id": self.pad_id}
        if sample:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        rows = out[:, input_ids.shape[1]:].tolist()
        return [self._completion(row) for row in (rows if sample else rows * s.n)]


class VLLMBackend:
    """Sampling with vLLM's offline ``LLM.chat`` (optional extra; not exercised on GPU by mixer's tests yet)."""

    name = "vllm"

    def __init__(self, policy: str | Path, sampling: SamplingSettings, *, chat_template: str | None = None,
                 dtype: str = "auto", seed: int = 0, gpu_memory_utilization: float = 0.9) -> None:
        require_vllm()
        from transformers import AutoTokenizer
        from vllm import LLM

        tokenizer = AutoTokenizer.from_pretrained(policy)
        self.template = resolve_generation_template(tokenizer, chat_template, policy)
        self.sampling = sampling
        self.llm = LLM(model=str(policy), dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization)

    def versions(self) -> dict[str, str]:
        return {k: v for k in ("vllm", "torch", "transformers") if (v := package_version(k))}

    def generate(self, prompts: list[list[dict[str, str]]], seeds: list[int]) -> list[list[Completion]]:
        from vllm import SamplingParams

        s = self.sampling
        greedy = s.temperature == 0
        # vLLM refuses n > 1 with greedy decoding ("n must be 1 when using greedy sampling"): ask for the one
        # answer and repeat it, as the transformers backend does
        params = [SamplingParams(n=1 if greedy else s.n, temperature=s.temperature, top_p=1.0 if greedy else s.top_p,
                                 max_tokens=s.max_new_tokens, seed=seed) for seed in seeds]
        outputs = self.llm.chat(prompts, sampling_params=params, chat_template=self.template,
                                add_generation_prompt=True, use_tqdm=False)
        return [[_completion(o) for o in out.outputs] * (s.n if greedy else 1) for out in outputs]


def _completion(output: Any) -> Completion:
    """One vLLM ``CompletionOutput`` in the shared format. vLLM ends a finished request with ``stop`` (an
    end-of-turn token) or ``length``; anything else (``abort``) is not a reply to score."""
    if output.finish_reason not in ("stop", "length"):
        raise MixerError(f"vLLM ended a sample with finish_reason {output.finish_reason!r}, not 'stop' or 'length'; "
                         "the run cannot score an unfinished reply (rerun the same command to resume)")
    return Completion(output.text, len(output.token_ids), output.finish_reason)


def require_vllm() -> None:
    """vLLM is optional; asking for it without it installed says how to get it."""
    if importlib.util.find_spec("vllm") is None:
        raise MixerError("backend vllm needs the vllm package (CUDA GPU): pip install 'mixer[vllm]'; "
                         "or use --backend transformers")


def make_backend(name: str, policy: str | Path, sampling: SamplingSettings, *, chat_template: str | None,
                 dtype: str, seed: int, batching: str = "auto") -> Backend:
    """The backend by name; vLLM is checked before anything is loaded."""
    if name == "transformers":
        return TransformersBackend(policy, sampling, chat_template=chat_template, dtype=dtype, batching=batching)
    if name == "vllm":
        return VLLMBackend(policy, sampling, chat_template=chat_template, dtype=dtype, seed=seed)
    raise MixerError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
