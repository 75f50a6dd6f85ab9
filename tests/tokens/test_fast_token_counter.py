"""The fast cl100k counter (bpe-openai) must count exactly what tiktoken counts, and the build must fall
back to tiktoken, saying so, whenever the package is missing or disagrees on the probe."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from mixer.tokens import count as tokens

bpe_openai = pytest.importorskip("bpe_openai")

_spec = importlib.util.spec_from_file_location("gen_raw", ROOT / "bench" / "gen_raw.py")
gen_raw = importlib.util.module_from_spec(_spec)
sys.modules["gen_raw"] = gen_raw
_spec.loader.exec_module(gen_raw)


def _tiktoken():
    return tokens._tiktoken_encoding("cl100k_base")


def _sample_texts() -> list[str]:
    """Every bundled raw sample file, cut into pieces of a few thousand characters (JSON, JSONL and
    CSV text: quotes, escapes, code, several scripts)."""
    out = []
    for path in sorted((ROOT / "samples" / "raw_train").rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        out += [text[i:i + 3000] for i in range(0, len(text), 3000)]
    return out


def _generated_texts() -> list[str]:
    """The benchmark generator's pseudo-English (Zipf words, punctuation, line breaks, non-ASCII)."""
    gen = gen_raw.TextGen(0)
    rng = np.random.default_rng(1)
    return gen.texts(rng, gen_raw.lognormal_words(rng, 400, 120, 1.0)) + \
        [gen_raw.code_snippet(rng, gen) for _ in range(50)]


_ALPHABET = (
    [chr(c) for c in range(32, 127)] * 3
    + list("中文字符日本語のテキスト한국어텍스트")
    + ["😀", "👩\u200d👩\u200d👧", "🇫🇷", "👍🏽", "\u200d", "\ufe0f"]
    + ["\u0301", "\u0308", "\u0303", "e\u0301", "é", "ß", "ﬁ"]
    + list("Привет мир Ελληνικά مرحبا שלום हिन्दी")
    + [" ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", " \n ", "\u00a0", "\u3000", "\u2028"]
    + list("0123456789") + ["'s", "'t", "'ll", "'ve", "'re", "'d", "'m", "'S"]
    + ["<|endoftext|>", "<|fim_prefix|>"]
)


def _adversarial_texts(n: int = 5000) -> list[str]:
    rng = random.Random(13)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 120))) for _ in range(n)]


def test_fast_counter_gives_tiktokens_ids_and_counts_on_samples_generated_text_and_adversarial_unicode() -> None:
    from bpe_openai import _bindings

    backend = _bindings.tokenizer_for_encoding("cl100k_base")
    reference = _tiktoken()
    corpus = _sample_texts() + _generated_texts() + _adversarial_texts()
    assert len(corpus) > 5500
    differ = [t for t in corpus if list(backend.encode(t)) != reference.encode_ordinary(t)
              or backend.count(t) != len(reference.encode_ordinary(t))]
    assert differ == []


def test_tiktoken_spec_counts_with_bpe_openai_when_the_probe_agrees() -> None:
    name, why = tokens.counter_note("tiktoken:cl100k_base")
    assert name.startswith("bpe-openai ") and why is None
    texts = _generated_texts()[:50] + ["", "a\ud800b"]  # a lone surrogate: tiktoken's rule decides
    assert tokens._encoder("tiktoken:cl100k_base")(texts) == [len(_tiktoken().encode_ordinary(t)) for t in texts]


@pytest.fixture
def fresh_counters():
    """Forget which counter each encoding got, before and after the test."""
    tokens._fast_counter.cache_clear()
    tokens._encoder.cache_clear()
    yield
    tokens._fast_counter.cache_clear()
    tokens._encoder.cache_clear()


def test_counts_fall_back_to_tiktoken_with_a_warning_when_bpe_openai_is_missing(monkeypatch, fresh_counters) -> None:
    monkeypatch.setitem(sys.modules, "bpe_openai", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "bpe_openai._bindings", None)
    name, why = tokens.counter_note("tiktoken:cl100k_base")
    assert name == "tiktoken"
    assert "bpe-openai is not usable" in why and "tiktoken" in why
    texts = _generated_texts()[:20]
    assert tokens._encoder("tiktoken:cl100k_base")(texts) == [len(_tiktoken().encode_ordinary(t)) for t in texts]


class _OffByOne:
    """A backend that disagrees with tiktoken by one token on texts with a digit."""

    def __init__(self, real) -> None:
        self.real = real

    def encode(self, text: str) -> list[int]:
        ids = list(self.real.encode(text))
        return ids + [0] if any(c.isdigit() for c in text) else ids

    def count(self, text: str) -> int:
        return len(self.encode(text))


def test_counts_fall_back_to_tiktoken_with_a_warning_when_the_probe_differs(monkeypatch, fresh_counters) -> None:
    from bpe_openai import _bindings

    real = _bindings.tokenizer_for_encoding
    monkeypatch.setattr(_bindings, "tokenizer_for_encoding", lambda name: _OffByOne(real(name)))
    name, why = tokens.counter_note("tiktoken:cl100k_base")
    assert name == "tiktoken"
    assert "disagrees with tiktoken on the probe text" in why
    text = "numbers 1 12 123"
    assert tokens._encoder("tiktoken:cl100k_base")([text]) == [len(_tiktoken().encode_ordinary(text))]


def test_encodings_bpe_openai_does_not_implement_count_with_tiktoken_without_a_warning(fresh_counters) -> None:
    assert tokens._fast_counter("p50k_base") == (None, None)


def test_build_warns_and_records_the_tiktoken_fallback_in_timings(monkeypatch, fresh_counters, make_recipe,
                                                                   tmp_path: Path) -> None:
    from conftest import write_jsonl

    from mixer.build import build
    from mixer.recipe.load import load_recipe
    from mixer.stages.base import Reporter

    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    monkeypatch.setitem(sys.modules, "bpe_openai._bindings", None)
    write_jsonl(tmp_path / "raw" / "a.jsonl", [{"messages": [{"role": "user", "content": f"question {i}"},
                                                             {"role": "assistant", "content": "answer"}]}
                                               for i in range(5)])
    recipe = make_recipe([{"name": "a", "adapter": "messages", "files": ["a.jsonl"], "license": "MIT"}])

    class Collect(Reporter):
        def __init__(self) -> None:
            self.warnings: list[str] = []

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    reporter = Collect()
    result = build(load_recipe(recipe), reporter=reporter, workers=1)
    assert any("bpe-openai is not usable" in w for w in reporter.warnings)
    assert result.timings["token_counter"] == "tiktoken"
