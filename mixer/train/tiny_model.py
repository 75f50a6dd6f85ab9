"""A tiny random Llama and a byte-level BPE tokenizer with the Tulu chat template, made offline.

The trainer tests train it (``tests/train/train_fixtures.py`` imports these functions), and ``mixer dev
tiny-model DIR`` writes it for the README's CPU loop: a checkpoint folder (weights, config, tokenizer
with its chat template) that ``mixer train sft --model DIR`` takes like any Hugging Face model, small
enough (about 0.1 M parameters) that a real TRL step takes well under a second on a CPU. It learns
nothing useful; it shows the loop works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mixer.core.chat import TULU_CHAT_TEMPLATE
from mixer.core.errors import MixerError

#: written last into a tiny model's folder: what made it, so that a rerun of the same command keeps it
MARKER = "mixer-tiny-model.json"

#: the tokenizer's special tokens: padding, sequence ends, and the Tulu template's role markers
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]

#: what ``mixer dev tiny-model`` trains its tokenizer on when no texts are given: plain English chat
#: turns and numbered filler, so that the byte-level merges cover ordinary words and digits
DEFAULT_TEXTS: tuple[str, ...] = (
    "What is two plus two?", "Four.", "Name a colour.", "Blue.", "Say hello.", "Hello there!",
    "What is the capital of France?", "Paris is the capital of France.", "Write a haiku about rain.",
    "Soft rain on the roof, quiet drums for sleeping towns, morning smells of earth.",
    "You are a helpful assistant.", "Explain the answer step by step.", "Sure, here is a short answer.",
    *(f"The quick brown fox {i} jumps over the lazy dog; answer {i * 7} is fine." for i in range(300)),
)


def make_tokenizer(out: Path, texts: Sequence[str] = DEFAULT_TEXTS, vocab_size: int = 512) -> Path:
    """Train a byte-level BPE on ``texts`` with ``tokenizers`` and save it to ``out`` as a fast tokenizer
    with the Tulu chat template (whose ``{% generation %}`` markers give the trainer its loss mask)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    fast.chat_template = TULU_CHAT_TEMPLATE
    fast.save_pretrained(out)
    return out


def make_model(out: Path, vocab_size: int, seed: int = 0) -> Path:
    """A random 2-layer Llama with hidden size 64 (about 0.1 M parameters), saved to ``out`` in fp32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out)
    return out


def make_tiny_model(out: Path, texts: Sequence[str] = DEFAULT_TEXTS, seed: int = 0) -> Path:
    """A checkpoint folder ``out``: the tokenizer trained on ``texts`` and a random model of its vocabulary,
    saved together as a real checkpoint is. ``out`` must be new or empty, or hold the tiny model this call
    would make (then it is kept, so the README's commands can be run again): nothing of a user's is replaced."""
    out = Path(out)
    made = {"seed": seed, "texts": "default" if tuple(texts) == DEFAULT_TEXTS else "custom"}
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if _marker(out) == made and made["texts"] == "default":
            return out
        raise MixerError(f"{out}: exists and is not an empty folder (nor a tiny model made with seed {seed}); "
                         "give a new folder for the tiny model")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MixerError("the tiny model needs the train extra: pip install 'mixer[train]'") from None
    out.mkdir(parents=True, exist_ok=True)
    make_tokenizer(out, texts)
    tokenizer = AutoTokenizer.from_pretrained(out)
    make_model(out, vocab_size=len(tokenizer), seed=seed)
    (out / MARKER).write_text(json.dumps(made) + "\n", encoding="utf-8")  # last: a folder cut short has none
    return out


def is_tiny_model(out: Path, seed: int = 0) -> bool:
    """Whether ``out`` holds the tiny model :func:`make_tiny_model` makes with ``seed`` and its default texts."""
    return _marker(Path(out)) == {"seed": seed, "texts": "default"}


def _marker(out: Path) -> object:
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
