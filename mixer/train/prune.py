"""``mixer train prune``: drop the n consecutive decoder blocks that change the hidden state least.

The block pruning of Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers"), which
Thangarasa et al. 2024 fine-tune on self-distilled data: for every window of ``n`` consecutive blocks
starting at block ``l``, the angular distance between the window's input ``x(l)`` and its output
``x(l+n)`` is ``arccos(cos(x(l), x(l+n))) / pi``; the window with the smallest distance is removed. Gromov
et al. take the last token of each sequence; here the distance is averaged over every (non-padding) token
of a few hundred calibration conversations from a ``mixer build`` rendered with the chat template, which
uses all of the calibration text rather than one position per record.

Hidden states are read with forward hooks on the embedding and on each decoder block (not through
``output_hidden_states``, whose last entry is after the final norm in Llama-style models), so the input of
block ``l`` is exactly the output of block ``l-1``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.core.outdir import staged_dir
from mixer.train.deps import require_train_deps

REPORT_NAME = "prune_report.json"


@dataclass(frozen=True)
class PruneChoice:
    """Every window's distance (index = first block of the window) and the chosen window."""

    blocks: int
    num_layers: int
    distances: list[float]
    start: int

    @property
    def removed(self) -> list[int]:
        return list(range(self.start, self.start + self.blocks))


def angular_distance(a: Any, b: Any, mask: Any | None = None) -> Any:
    """Per-token ``arccos(cos(a, b)) / pi`` over the last dimension, summed over tokens where ``mask`` is set.

    Returns ``(sum, count)`` as float64 tensors so batches of different lengths can be averaged exactly.
    The cosine is clamped to [-1, 1]: rounding can push it just past 1, where arccos is NaN.
    """
    import torch

    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    cos = torch.nn.functional.cosine_similarity(a64, b64, dim=-1).clamp(-1.0, 1.0)
    dist = torch.arccos(cos) / math.pi
    if mask is None:
        return dist.sum(), torch.tensor(float(dist.numel()), dtype=torch.float64)
    m = mask.to(torch.float64)
    return (dist * m).sum(), m.sum()


def window_distances(states: list[Any], blocks: int, mask: Any | None = None) -> list[tuple[Any, Any]]:
    """``(sum, count)`` of the distance between ``states[l]`` and ``states[l + blocks]`` for every ``l``.

    ``states[0]`` is the input of the first block and ``states[i]`` the output of block ``i - 1``.
    """
    return [angular_distance(states[start], states[start + blocks], mask)
            for start in range(len(states) - blocks)]


def decoder_layers(model: Any) -> Any:
    """The model's ``nn.ModuleList`` of decoder blocks (``model.model.layers`` in Llama/Mistral/Qwen)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise MixerError(f"{type(model).__name__}: no decoder blocks at model.model.layers; pruning supports "
                         "Llama-style causal LMs")
    return layers


def load_model(path: str | Path) -> Any:
    """Load a causal LM in fp32, or raise a MixerError naming the folder."""
    from transformers import AutoModelForCausalLM

    p = Path(path)
    if not (p / "config.json").is_file():
        raise MixerError(f"--model {p}: not a model folder (no config.json)")
    try:
        return AutoModelForCausalLM.from_pretrained(p, dtype="float32")
    except (OSError, ValueError, KeyError) as e:
        raise MixerError(f"--model {p}: cannot load it as a causal LM: {e}") from e


def calibration_texts(data: str | Path, tokenizer: Any, samples: int) -> list[str]:
    """The first ``samples`` conversations of a build, rendered with the tokenizer's chat template."""
    from mixer.train.data import SFT_COLUMNS, DataError, load_parquet

    if getattr(tokenizer, "chat_template", None) is None:
        raise MixerError("the tokenizer has no chat template; calibration data is rendered with it")
    ds = load_parquet(data, SFT_COLUMNS, max_rows=samples)
    texts = []
    for i, messages in enumerate(ds["messages"]):
        try:
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
        except Exception as e:  # noqa: BLE001 - jinja raises its own types for a template that refuses a turn
            raise DataError(f"{data}: record {i}: the chat template cannot render it: {e}") from e
    return texts


def measure(model: Any, tokenizer: Any, texts: list[str], blocks: int, *, max_length: int = 512,
            batch_size: int = 8) -> PruneChoice:
    """Run the calibration texts through the model and pick the window of ``blocks`` blocks to drop."""
    import torch

    layers = decoder_layers(model)
    num_layers = len(layers)
    if not 1 <= blocks < num_layers:
        raise MixerError(f"--blocks {blocks}: the model has {num_layers} decoder blocks; remove between 1 and "
                         f"{num_layers - 1}")
    if not texts:
        raise MixerError("no calibration records: the build is empty")
    captured: list[Any] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handles = [model.get_input_embeddings().register_forward_hook(keep)]
    handles += [layer.register_forward_hook(keep) for layer in layers]
    sums = [torch.zeros((), dtype=torch.float64) for _ in range(num_layers - blocks + 1)]
    count = torch.zeros((), dtype=torch.float64)
    model.eval()
    try:
        for first in range(0, len(texts), batch_size):
            enc = tokenizer(texts[first:first + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length, add_special_tokens=False)
            captured.clear()
            with torch.no_grad():
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            for i, (s, c) in enumerate(window_distances(captured, blocks, enc["attention_mask"])):
                sums[i] += s
                if i == 0:
                    count += c
    finally:
        for h in handles:
            h.remove()
    distances = [float(s / count) for s in sums]
    start = min(range(len(distances)), key=lambda i: (distances[i], i))
    return PruneChoice(blocks=blocks, num_layers=num_layers, distances=distances, start=start)


def remove_blocks(model: Any, removed: list[int]) -> None:
    """Delete the blocks in place; renumber the rest's ``layer_idx`` and update the config to match."""
    import torch

    layers = decoder_layers(model)
    keep = [i for i in range(len(layers)) if i not in set(removed)]
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = new_idx
    config = model.config
    config.num_hidden_layers = len(keep)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(layers):
        config.layer_types = [layer_types[i] for i in keep]


def run_prune(model_path: str | Path, data: str | Path, blocks: int, output_dir: str | Path, *,
              samples: int = 256, max_length: int = 512, batch_size: int = 8) -> PruneChoice:
    """Measure, prune and save model + tokenizer + ``prune_report.json``; nothing is left on failure.

    Everything is written into a temporary sibling folder that is renamed into place at the end.
    """
    require_train_deps(("torch", "transformers", "datasets"))
    from transformers import AutoTokenizer

    model = load_model(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        raise MixerError(f"--model {model_path}: no tokenizer in the model folder: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = calibration_texts(data, tokenizer, samples)
    choice = measure(model, tokenizer, texts, blocks, max_length=max_length, batch_size=batch_size)
    remove_blocks(model, choice.removed)
    with staged_dir(output_dir) as staging:  # the CLI has checked it is empty or an earlier mixer output
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        report = {"model": str(model_path), "data": str(data), "calibration_records": len(texts),
                  "max_length": max_length, "blocks": blocks, "num_layers_before": choice.num_layers,
                  "num_layers_after": choice.num_layers - blocks,
                  "distance": "arccos(cosine(x_l, x_l+n)) / pi, mean over non-padding tokens",
                  "windows": [{"start": i, "blocks": list(range(i, i + blocks)), "distance": d}
                              for i, d in enumerate(choice.distances)],
                  "removed": choice.removed}
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return choice
