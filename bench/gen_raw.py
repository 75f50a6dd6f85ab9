"""Synthetic raw Tulu V2 sources at any scale, in the exact published formats and file names.

    python bench/gen_raw.py --out /tmp/mixer-bench/raw-1.0-0 --scale 1.0 --seed 0

Why this exists: the real raw files are about 2-3 GB, partly gated, and no machine of this project
can download them, yet issue 5 asks for full-scale build timings. This writes the same layout
(``<out>/<source>/<file>``, as recipes/v2.yaml expects) with the real record counts times
``--scale``, realistic length distributions (log-normal word counts; long few-shot FLAN/CoT prompts,
long multi-turn ShareGPT chunks, ~1 KB Open-Orca rows, long science papers) and the quirks the
adapters must survive (SOURCES.md section 2): OASST trees with omitted null fields, missing
``labels.quality``, deleted nodes and prompter leaves; "< noinput >" in Code Alpaca; empty Open-Orca
system prompts; odd LIMA turn counts; WizardLM rows starting with a ``gpt`` turn; NFD and non-ASCII
text; markdownify escapes in ShareGPT.

It also plants what the later stages must find, and records the planted counts in
``<out>/MANIFEST.json``: exact copies of one shared pool of conversations across sources (~0.5% of
records), near-duplicates of the same pool (~0.5%, about 1% of words substituted) and LLM mentions
(~1.5% of records, "As an AI language model developed by OpenAI", "ChatGPT", ...; plus a few of the
words the Tulu substring filter over-matches, e.g. "napalm"). The pseudo-word vocabulary is screened
so that no planted-free text can hit the filter by accident.

Speed: text is drawn as token ids from lookup tables with numpy and assembled with one vectorised
gather per batch of ~2M words, so scale 1.0 takes minutes. Memory stays bounded: every source is
generated and written in chunks (Parquet in row groups through ``ParquetWriter``).

Determinism: every source draws from its own ``numpy`` generator keyed by (seed, source name), so the
same seed gives the same bytes whatever is generated before it (the xlsx zip timestamps are fixed).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import numpy as np
import orjson

GENERATOR_VERSION = 1

#: Published record counts at scale 1.0 (SOURCES.md sections 1-2 and issue 5).
COUNTS: dict[str, int] = {
    "flan_v2": 50_000,
    "cot_zsopt": 75_000,
    "cot_fsopt": 75_000,
    "oasst1_trees": 9_800,
    "sharegpt_split": 114_046,
    "sharegpt_raw": 90_000,
    "gpt4_alpaca": 52_002,
    "code_alpaca": 20_022,
    "lima": 1_030,
    "wizardlm": 143_000,
    "open_orca": 1_000_000,
    "open_orca_gpt35": 3_500_000,
    "science": 7_544,
}

#: Science subsets and their share (Tulu 2 paper, App. C; SciERC's 700 split between the two tasks).
SCIENCE_SUBSETS: dict[str, int] = {
    "evidence_inference": 1_678,
    "qasper_truncated_4000": 2_255,
    "scifact_json": 919,
    "scitldr_aic": 1_992,
    "scierc_ner": 350,
    "scierc_relation": 350,
}

#: The Tulu V2 filter's keywords (SOURCES.md section 0); the vocabulary must never hit them by chance.
LLM_KEYWORDS = ("openai", "open ai", "chatgpt", "chat gpt", "gpt-3", "gpt3", "gpt 3", "gpt-4", "gpt4",
                "gpt 4", "gpt-3.5", "gpt3.5", "gpt 3.5", "bingchat", "bing chat", "bard", "palm",
                "anthropic", "claude", "laion", "open assistant", "openassistant")
#: Phrases planted into assistant turns (the first ones are by far the most common in real data).
MENTIONS = (
    "As an AI language model developed by OpenAI, I do not have personal opinions, but",
    "As an AI language model developed by OpenAI, I cannot browse the internet. However,",
    "I am ChatGPT, a large language model trained by OpenAI.",
    "Note: this answer was written with the help of ChatGPT.",
    "Compared with GPT-4, smaller models",
    "According to GPT-3.5,",
    "Assistants such as Claude by Anthropic and Bard by Google",
    "Hi! I am Open Assistant, an open-source chat model.",
    "The LAION community collected these conversations.",
)
#: Ordinary words the substring filter over-matches (kept rare).
OVERMATCH = ("napalm", "palm trees", "bombarded", "Lombardy", "Claude Monet")

COMMON = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were their one all we can her has there been if more when will would who so no "
    "she other its may these about into than them only time some could new two any then do first "
    "what also made after most over such like our where your between how many years well each those "
    "way used state because both people very even must through during under same make while work "
    "part world number system data model example value use result function case question answer "
    "point water form line information program question set number order group small large high "
    "find give list write explain describe following step text sentence word code file output input "
    "user table string class method return true false error test name type key list item page"
).split()
NON_ASCII = ("café", "naïve", "Zürich", "São", "Ångström", "über", "façade", "résumé", "Straße",
             "niño", "año", "español", "Kraków", "Dvořák", "€", "°C", "—", "“quoted”", "…", "→", "😀",
             "日本語", "中文", "数据", "模型", "привет", "мир", "данные", "κόσμος", "नमस्ते", "한국어",
             "cafe\u0301", "re\u0301sume\u0301")  # the last two are NFD: the normaliser's NFC rule
ONSETS = ("", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch", "sp", "qu", "sl")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee", "y")
CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "x", "ph")
#: (separator after a word, weight): spaces, punctuation and line breaks
SEPARATORS = ((" ", 0.82), (", ", 0.06), (". ", 0.07), ("? ", 0.006), (": ", 0.004), ("; ", 0.004),
              ("\n", 0.012), ("\n\n", 0.024))
PERIOD_SEP = 2
WORD_LUT_BITS = 20
SEP_LUT_BITS = 12
BATCH_WORDS = 2_000_000


def source_rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one source, keyed by name so sources do not depend on each other's draws."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _hits_filter(word: str) -> bool:
    w = word.lower()
    if any(k in w for k in LLM_KEYWORDS):
        return True
    # two adjacent words could form "open ai", "chat gpt", "bing chat", "gpt 4", "open assistant"
    return w.endswith(("open", "chat", "gpt", "bing")) or w.startswith(("ai", "gpt", "chat", "assistant"))


def _lut(weights: np.ndarray, bits: int) -> np.ndarray:
    """A lookup table of ``2**bits`` entries in which index i occurs about weights[i] share of the time."""
    size = 1 << bits
    p = weights / weights.sum()
    counts = np.maximum(np.floor(p * size).astype(np.int64), 1)
    # fix the rounding on the most frequent entry so the table has exactly `size` entries
    counts[int(np.argmax(counts))] += size - int(counts.sum())
    return np.repeat(np.arange(len(weights), dtype=np.int32), counts)


class TextGen:
    """Seeded pseudo-English text: Zipf-distributed words, punctuation, line breaks, some non-ASCII.

    A token is a word plus its separator; all tokens' bytes live in one flat array so a batch of
    texts is one numpy gather. About 4,000 syllable-built pseudo-words behind ~250 common English
    words give text that BPE tokenizers split at a realistic rate.
    """

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 1])
        pseudo: list[str] = []
        seen = set(COMMON)
        while len(pseudo) < 4000:
            n_syl = int(rng.choice(4, p=(0.3, 0.4, 0.2, 0.1))) + 1
            w = "".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] +
                        CODAS[rng.integers(len(CODAS))] for _ in range(n_syl))
            if w in seen or _hits_filter(w):
                continue
            seen.add(w)
            pseudo.append(w)
        numbers = [str(n) for n in (1, 2, 3, 5, 10, 12, 20, 42, 100, 256, 1000, 2019, 2023)] + ["3.14", "0.5"]
        capitalised = [w.capitalize() for w in pseudo[:300]]
        words = list(COMMON) + pseudo + capitalised + numbers + list(NON_ASCII)
        ranks = np.arange(len(words), dtype=np.float64)
        wweights = 1.0 / (ranks + 2.7)
        wweights[-len(NON_ASCII):] = wweights[-1] * 0.5  # rare, but every text corpus has some
        self.words = words
        self.word_lut = _lut(wweights, WORD_LUT_BITS)
        self.sep_lut = _lut(np.array([w for _, w in SEPARATORS]), SEP_LUT_BITS)
        self.n_sep = len(SEPARATORS)
        tokens = [(w + s).encode() for w in words for s, _ in SEPARATORS]
        self.tok_len = np.array([len(t) for t in tokens], dtype=np.int64)
        self.tok_start = np.concatenate([[0], np.cumsum(self.tok_len)[:-1]]).astype(np.int64)
        self.flat = np.frombuffer(b"".join(tokens), dtype=np.uint8)

    def texts(self, rng: np.random.Generator, n_words: np.ndarray | Sequence[int]) -> list[str]:
        """One text per entry of ``n_words`` (at least one word each), ending with a period."""
        n = np.maximum(np.asarray(n_words, dtype=np.int64), 1)
        out: list[str] = []
        cum = np.cumsum(n)
        start = 0
        while start < len(n):
            base = int(cum[start - 1]) if start else 0
            stop = max(int(np.searchsorted(cum, base + BATCH_WORDS, side="right")), start + 1)
            out.extend(self._batch(rng, n[start:stop]))
            start = stop
        return out

    def _batch(self, rng: np.random.Generator, n: np.ndarray) -> list[str]:
        total_words = int(n.sum())
        words = self.word_lut[rng.integers(0, 1 << WORD_LUT_BITS, total_words)].astype(np.int64)
        seps = self.sep_lut[rng.integers(0, 1 << SEP_LUT_BITS, total_words)].astype(np.int64)
        last = np.cumsum(n) - 1
        seps[last] = PERIOD_SEP
        tok = words * self.n_sep + seps
        lengths = self.tok_len[tok]
        ends = np.cumsum(lengths)
        idx = np.arange(int(ends[-1]), dtype=np.int64)
        idx += np.repeat(self.tok_start[tok] - (ends - lengths), lengths)
        blob = self.flat[idx].tobytes()
        rec_end = ends[last].tolist()
        rec_start = [0, *rec_end[:-1]]
        out = []
        for a, b in zip(rec_start, rec_end, strict=True):
            t = blob[a:b - 1].decode("utf-8")  # drop the final ". "'s space
            out.append(t[:1].upper() + t[1:])
        return out

    def random_words(self, rng: np.random.Generator, k: int) -> list[str]:
        return [self.words[i] for i in self.word_lut[rng.integers(0, 1 << WORD_LUT_BITS, k)]]


def lognormal_words(rng: np.random.Generator, n: int, median: float, sigma: float,
                    lo: int = 1, hi: int = 4000) -> np.ndarray:
    """Word counts with a log-normal distribution (median, shape sigma), clipped to [lo, hi]."""
    return np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi).astype(np.int64)


def code_snippet(rng: np.random.Generator, gen: TextGen) -> str:
    """A short fenced code block with random identifiers (code answers, ShareGPT, WizardLM)."""
    name, arg, other = (w.lower().replace(".", "") or "x" for w in gen.random_words(rng, 3))
    ident = "".join(c for c in name if c.isalnum()) or "f"
    arg = "".join(c for c in arg if c.isalnum()) or "x"
    other = "".join(c for c in other if c.isalnum()) or "y"
    k = int(rng.integers(2, 60))
    kind = int(rng.integers(4))
    if kind == 0:
        body = (f"def {ident}({arg}, {other}={k}):\n    \"\"\"Return the {other} of {arg}.\"\"\"\n"
                f"    result = []\n    for i in range({other}):\n        result.append({arg}[i] * {k})\n"
                f"    return result\n\nprint({ident}([1, 2, 3]))")
        return f"```python\n{body}\n```"
    if kind == 1:
        body = (f"function {ident}({arg}) {{\n\tconst {other} = {arg}.map(x => x * {k});\n"
                f"\treturn {other}.filter(Boolean);\n}}")
        return f"```javascript\n{body}\n```"
    if kind == 2:
        body = f"SELECT {arg}, COUNT(*) AS n\nFROM {ident}\nWHERE {other} > {k}\nGROUP BY {arg};"
        return f"```sql\n{body}\n```"
    body = (f"#include <vector>\ntemplate <typename T>\nT {ident}(const std::vector<T>& {arg}) {{\n"
            f"    T {other}{{}};\n    for (auto& v : {arg}) {other} += v * {k};\n    return {other};\n}}")
    return f"```cpp\n{body}\n```"


# -- planted duplicates and mentions -------------------------------------------------------------

@dataclass
class Planted:
    exact: int = 0
    near: int = 0
    mentions: int = 0
    overmatch: int = 0


class Donors:
    """A shared pool of (user, assistant) pairs that several sources copy: the cross-source duplicates.

    Every copy yields the same canonical messages after each adapter's conversion and the
    normaliser's strip (FLAN/CoT's appended newline is stripped again; Open-Orca rows get an empty
    system prompt, which the adapter leaves out), so exact dedup must catch them across sources.
    """

    def __init__(self, gen: TextGen, seed: int, scale: float) -> None:
        rng = source_rng(seed, "donors")
        n = max(20, round(2_500 * scale))
        users = gen.texts(rng, lognormal_words(rng, n, 40, 0.8, 3, 600))
        answers = gen.texts(rng, lognormal_words(rng, n, 120, 0.7, 5, 1200))
        self.pairs = list(zip(users, answers, strict=True))
        self.gen = gen

    def pick(self, rng: np.random.Generator) -> tuple[str, str]:
        return self.pairs[int(rng.integers(len(self.pairs)))]

    def near(self, rng: np.random.Generator) -> tuple[str, str]:
        """A donor pair with about 1% of its words substituted (at least one per turn)."""
        return tuple(self._edit(rng, t) for t in self.pick(rng))  # type: ignore[return-value]

    def _edit(self, rng: np.random.Generator, text: str) -> str:
        words = text.split(" ")
        k = max(1, len(words) // 100)
        for pos, w in zip(rng.integers(0, len(words), k).tolist(), self.gen.random_words(rng, k),
                          strict=True):
            words[pos] = w
        return " ".join(words)


@dataclass
class Plan:
    """Per-record decisions for one chunk of a source: 0 fresh, 1 exact donor copy, 2 near copy."""

    kind: np.ndarray
    mention: np.ndarray
    overmatch: np.ndarray


@dataclass
class Ctx:
    out: Path
    scale: float
    seed: int
    gen: TextGen
    donors: Donors
    planted: dict[str, Planted] = field(default_factory=dict)

    def count(self, name: str) -> int:
        return max(1, round(COUNTS[name] * self.scale))

    def plan(self, rng: np.random.Generator, source: str, n: int, *, dup: float = 0.005,
             near: float = 0.005, mention: float = 0.015, overmatch: float = 0.001) -> Plan:
        kind = rng.choice(3, size=n, p=(1 - dup - near, dup, near))
        p = Plan(kind, rng.random(n) < mention, rng.random(n) < overmatch)
        st = self.planted.setdefault(source, Planted())
        st.exact += int((kind == 1).sum())
        st.near += int((kind == 2).sum())
        fresh = kind == 0  # donor copies are written verbatim, without planted mentions
        st.mentions += int((p.mention & fresh).sum())
        st.overmatch += int((p.overmatch & fresh).sum())
        return p

    def donor(self, rng: np.random.Generator, kind: int) -> tuple[str, str]:
        return self.donors.pick(rng) if kind == 1 else self.donors.near(rng)


def add_mention(rng: np.random.Generator, text: str) -> str:
    phrase = MENTIONS[min(int(rng.geometric(0.35)) - 1, len(MENTIONS) - 1)]
    return f"{phrase} {text}" if rng.random() < 0.7 else f"{text}\n\n{phrase}"


def add_overmatch(rng: np.random.Generator, text: str) -> str:
    return f"{text} The {OVERMATCH[int(rng.integers(len(OVERMATCH)))]} example is a classic one."


def decorate(rng: np.random.Generator, plan: Plan, i: int, answer: str) -> str:
    """Apply the planted mention / over-match of record i to its assistant text."""
    if plan.mention[i]:
        answer = add_mention(rng, answer)
    if plan.overmatch[i]:
        answer = add_overmatch(rng, answer)
    return answer


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)


# -- writers --------------------------------------------------------------------------------

def _indented(obj: Any, indent: int, level: int, parts: list[str]) -> None:
    """``json.dumps(obj, indent=indent)`` (ASCII-escaped) for dicts/lists/str/int/None, but fast:
    strings go through the C escaper instead of the pure-Python encoder json uses with indent."""
    if isinstance(obj, str):
        parts.append(encode_basestring_ascii(obj))
    elif isinstance(obj, dict):
        if not obj:
            parts.append("{}")
            return
        pad = "\n" + " " * (indent * (level + 1))
        parts.append("{")
        first = True
        for k, v in obj.items():
            parts.append(pad if first else "," + pad)
            first = False
            parts.append(encode_basestring_ascii(k) + ": ")
            _indented(v, indent, level + 1, parts)
        parts.append("\n" + " " * (indent * level) + "}")
    elif isinstance(obj, list):
        if not obj:
            parts.append("[]")
            return
        pad = "\n" + " " * (indent * (level + 1))
        parts.append("[")
        for j, v in enumerate(obj):
            parts.append(pad if j == 0 else "," + pad)
            _indented(v, indent, level + 1, parts)
        parts.append("\n" + " " * (indent * level) + "]")
    else:
        parts.append(json.dumps(obj))


class JsonArrayWriter:
    """Streams a JSON array byte-identical to ``json.dump(records, f, indent=indent)``."""

    def __init__(self, path: Path, indent: int) -> None:
        self.f = open(path, "w", encoding="ascii", newline="")
        self.indent = indent
        self.n = 0

    def write(self, records: list[Any]) -> None:
        parts: list[str] = []
        pad = "\n" + " " * self.indent
        for r in records:
            parts.append(("[" if self.n == 0 else ",") + pad)
            self.n += 1
            _indented(r, self.indent, 1, parts)
        self.f.write("".join(parts))

    def close(self) -> None:
        self.f.write("\n]" if self.n else "[]")
        self.f.close()


class JsonlWriter:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")

    def write(self, records: list[Any]) -> None:
        self.f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def close(self) -> None:
        self.f.close()


# -- sources ----------------------------------------------------------------------------------

def gen_flan_like(ctx: Ctx, name: str, path: Path, shots: tuple[int, int], q_median: float,
                  a_median: float, final_median: float, target_median: float, cot: bool) -> int:
    """FLAN / CoT JSONL ``{"inputs", "targets", "task"}``: few-shot prompts built of Q/A exemplars.

    A share of prompts end with ":" or a newline (the adapter then adds no newline); targets range
    from one token ("yes", "(A)") to rationales ending "So the answer is X."
    """
    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    n = ctx.count(name)
    tasks = (("flan_fsopt", 0.2), ("flan_fsnoopt", 0.2), ("t0_fsopt", 0.16), ("t0_fsnoopt", 0.16),
             ("niv2_fsopt", 0.23), ("cot_fsopt", 0.05)) if not cot else (
             ("cot_gsm8k", 0.3), ("cot_creak", 0.15), ("cot_esnli", 0.25), ("cot_strategyqa", 0.15),
             ("cot_qasc", 0.15))
    task_names = [t for t, _ in tasks]
    task_p = np.array([p for _, p in tasks]) / sum(p for _, p in tasks)
    short_targets = ("yes", "no", "(A)", "(B)", "(C)", "it is not possible to tell", "True", "False")
    w = JsonlWriter(path)
    for a, b in chunks(n, 5_000):
        m = b - a
        plan = ctx.plan(rng, name, m, mention=0.004, overmatch=0.002)
        k = rng.integers(shots[0], shots[1] + 1, m)
        ex_q = gen.texts(rng, lognormal_words(rng, int(k.sum()), q_median, 0.6, 3, 1500))
        ex_a = gen.texts(rng, lognormal_words(rng, int(k.sum()), a_median, 0.8, 1, 600))
        finals = gen.texts(rng, lognormal_words(rng, m, final_median, 0.7, 3, 2500))
        targets = gen.texts(rng, lognormal_words(rng, m, target_median, 0.9, 1, 1000))
        task = rng.choice(len(task_names), size=m, p=task_p)
        ending = rng.random(m)
        short = rng.random(m) < (0.0 if cot else 0.25)
        final_answers = gen.random_words(rng, m)
        out = []
        pos = 0
        for i in range(m):
            kind = int(plan.kind[i])
            if kind:
                inputs, target = ctx.donor(rng, kind)
            else:
                shots_txt = "".join(f"Q: {ex_q[pos + j]}\nA: {ex_a[pos + j]}\n\n" for j in range(int(k[i])))
                inputs = shots_txt + "Q: " + finals[i]
                if ending[i] < 0.3:
                    inputs += "\nA:"
                elif ending[i] < 0.4:
                    inputs += "\n"
                if cot:
                    target = f"{targets[i]} So the answer is {final_answers[i]}."
                elif short[i]:
                    target = short_targets[int(rng.integers(len(short_targets)))]
                else:
                    target = targets[i]
                target = decorate(rng, plan, i, target)
            pos += int(k[i])
            out.append({"inputs": inputs, "targets": target, "task": task_names[int(task[i])]})
        w.write(out)
    w.close()
    return n


def gen_oasst1(ctx: Ctx, path: Path) -> int:
    """OASST1 ready-for-export trees: nested replies, omitted null fields, labels, deleted nodes."""
    name = "oasst1_trees"
    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    n = ctx.count(name)
    langs = ("en", "es", "ru", "de", "zh", "fr", "pt-BR", "ca", "uk", "it", "ja", "pl")
    lang_p = np.array((45, 25, 8, 5, 4, 4, 3, 2, 1, 1, 1, 1), dtype=float)
    lang_p /= lang_p.sum()
    t0 = datetime(2023, 2, 5, tzinfo=UTC)

    def uid() -> str:
        return str(uuid.UUID(bytes=rng.bytes(16), version=4))

    def shape(role: str, depth: int) -> dict[str, Any]:
        """The tree skeleton: roles and children, texts filled in afterwards in one batch."""
        if role == "prompter":
            k = int(rng.choice(5, p=(0.12, 0.3, 0.3, 0.2, 0.08))) + (1 if depth == 0 else 0)
            kids = [shape("assistant", depth + 1) for _ in range(k)]
        else:
            p_stop = min(0.95, 0.45 + 0.12 * depth)
            k = 0 if rng.random() < p_stop else int(rng.choice(3, p=(0.6, 0.3, 0.1))) + 1
            kids = [shape("prompter", depth + 1) for _ in range(k)]
        return {"role": role, "replies": kids}

    def nodes_of(root: dict[str, Any]) -> list[dict[str, Any]]:
        todo, seen = [root], []
        while todo:
            nd = todo.pop()
            seen.append(nd)
            todo.extend(nd["replies"])
        return seen

    def fill(nd: dict[str, Any], parent: str | None, created: datetime, lang: str, text: str,
             rank: int | None) -> dict[str, Any]:
        mid = uid()
        node: dict[str, Any] = {"message_id": mid}
        if parent is not None:
            node["parent_id"] = parent
        node.update({"user_id": uid(), "created_date": created.isoformat(), "text": text,
                     "role": nd["role"], "lang": lang, "review_count": int(rng.integers(3, 6)),
                     "review_result": bool(rng.random() < 0.97),
                     "deleted": bool(parent is not None and rng.random() < 0.015)})
        if rank is not None:
            node["rank"] = rank
        node["synthetic"] = False
        if rng.random() < 0.5:
            node["emojis"] = {"+1": int(rng.integers(1, 9)), "_skip_reply": int(rng.integers(0, 3))}
        node["replies"] = nd["replies"]  # filled by the caller
        labels: dict[str, Any] = {"spam": {"value": 0.0, "count": 3},
                                  "lang_mismatch": {"value": 0.0, "count": 3}}
        r = rng.random()
        if r < 0.03:
            labels = {}
        elif r < 0.12:
            pass  # labels without quality: Tulu counts it as 0.0
        else:
            labels["quality"] = {"value": round(float(rng.random()), 4), "count": 3}
            labels["helpfulness"] = {"value": round(float(rng.random()), 4), "count": 2}
        if labels:
            node["labels"] = labels
        if rng.random() < 0.6:
            node["detoxify"] = {"toxicity": round(float(rng.random()) * 0.01, 6),
                                "severe_toxicity": round(float(rng.random()) * 1e-4, 6),
                                "obscene": round(float(rng.random()) * 1e-3, 6)}
        return node

    w = JsonlWriter(path)
    n_msgs = 0
    for a, b in chunks(n, 1_000):
        skeletons = [shape("prompter", 0) for _ in range(b - a)]
        flat = [nodes_of(s) for s in skeletons]
        roles = [nd["role"] for nodes in flat for nd in nodes]
        is_user = np.array([r == "prompter" for r in roles])
        lengths = np.where(is_user, lognormal_words(rng, len(roles), 25, 1.0, 1, 1500),
                           lognormal_words(rng, len(roles), 120, 0.9, 1, 2000))
        texts = gen.texts(rng, lengths)
        assistant_rows = np.flatnonzero(~is_user).tolist()
        plan = ctx.plan(rng, name, len(assistant_rows), dup=0.0, near=0.0, mention=0.01)
        for j, i in enumerate(assistant_rows):
            texts[i] = decorate(rng, plan, j, texts[i])
        lang_idx = rng.choice(len(langs), size=b - a, p=lang_p)
        out = []
        pos = 0
        for t, skel in enumerate(skeletons):
            lang = langs[int(lang_idx[t])]
            when = t0 + timedelta(seconds=int(rng.integers(0, 90 * 86400)))
            text_of = {id(nd): texts[pos + j] for j, nd in enumerate(flat[t])}
            pos += len(flat[t])

            def build(nd: dict[str, Any], parent: str | None, created: datetime, rank: int | None,
                      lang: str = lang, text_of: dict[int, str] = text_of) -> dict[str, Any]:
                node = fill(nd, parent, created, lang, text_of[id(nd)], rank)
                kids = nd["replies"]
                ranks = rng.permutation(len(kids)).tolist() if len(kids) > 1 else [None] * len(kids)
                node["replies"] = [build(c, node["message_id"], created + timedelta(minutes=int(
                    rng.integers(5, 900))), ranks[j]) for j, c in enumerate(kids)]
                return node

            root = build(skel, None, when, None)
            n_msgs += len(flat[t])
            out.append({"message_tree_id": root["message_id"], "tree_state": "ready_for_export",
                        "prompt": root})
        w.write(out)
    w.close()
    return n


def _sharegpt_id(rng: np.random.Generator) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 7).tolist())


def _quirky(rng: np.random.Generator, text: str) -> str:
    """Markdownify artefacts seen in the cleaned ShareGPT files."""
    r = rng.random()
    if r < 0.3:
        return text + " The \\_\\_init\\_\\_ method and \\*args are escaped."
    if r < 0.5:
        return text + "\n\n" + "template \n" + "int main() {}"
    return text + "\n\n| col | value |\n| --- | --- |\n| a | 1 |"


def _conversation_turns(ctx: Ctx, rng: np.random.Generator, m: int, pair_p: float, max_pairs: int,
                        user_median: float, gpt_median: float, code_p: float, budget: int,
                        source: str) -> tuple[list[list[str]], Plan]:
    """Alternating user/assistant texts for m conversations; total words per conversation <= budget."""
    gen = ctx.gen
    pairs = np.minimum(rng.geometric(pair_p, m), max_pairs)
    total = int(pairs.sum())
    u_len = lognormal_words(rng, total, user_median, 1.2, 1, 1500)
    g_len = lognormal_words(rng, total, gpt_median, 0.7, 1, 1500)
    users = gen.texts(rng, u_len)
    gpts = gen.texts(rng, g_len)
    plan = ctx.plan(rng, source, m, mention=0.03 if source.startswith("sharegpt") else 0.02)
    convs = []
    pos = 0
    for i in range(m):
        kind = int(plan.kind[i])
        if kind:
            convs.append(list(ctx.donor(rng, kind)))
            pos += int(pairs[i])
            continue
        turns: list[str] = []
        used = 0
        for j in range(int(pairs[i])):
            cost = int(u_len[pos + j] + g_len[pos + j])
            if turns and used + cost > budget:
                break
            used += cost
            answer = gpts[pos + j]
            if rng.random() < code_p:
                answer = f"{answer}\n\n{code_snippet(rng, gen)}\n\nThis runs in O(n) time."
            question = users[pos + j]
            if rng.random() < 0.02:
                question = _quirky(rng, question)
            turns += [question, answer]
        turns[-1] = decorate(rng, plan, i, turns[-1])
        pos += int(pairs[i])
        convs.append(turns)
    return convs, plan


def gen_sharegpt_split(ctx: Ctx, path: Path) -> int:
    """``sharegpt_html_cleaned_and_split_4096.json``: json.dump(indent=2), ids ``<orig>_<start>``,
    only human/gpt strictly alternating, each chunk within ~4096 llama tokens."""
    name = "sharegpt_split"
    rng = source_rng(ctx.seed, name)
    n = ctx.count(name)
    w = JsonArrayWriter(path, indent=2)
    orig, start = _sharegpt_id(rng), 0
    for a, b in chunks(n, 5_000):
        convs, _ = _conversation_turns(ctx, rng, b - a, 0.42, 14, 30, 230, 0.12, 2_400, name)
        out = []
        for turns in convs:
            # 15% of chunks continue the previous conversation (its later pairs)
            if rng.random() < 0.15:
                start += 2 * int(rng.integers(1, 8))
            else:
                orig, start = _sharegpt_id(rng), 0
            if rng.random() < 0.001:
                turns[0] = ""  # empty values survive in the split file
            out.append({"id": f"{orig}_{start}", "conversations": [
                {"from": "human" if j % 2 == 0 else "gpt", "value": t} for j, t in enumerate(turns)]})
        w.write(out)
    w.close()
    return n


def gen_sharegpt_raw(ctx: Ctx, paths: list[Path]) -> int:
    """The raw ``sg_90k_part{1,2}_html_cleaned.json`` parts: every role and quirk of SOURCES.md 2.4."""
    name = "sharegpt_raw"
    rng = source_rng(ctx.seed, name)
    n = ctx.count(name)
    total = 0
    banner = "*This chat conversation is shared from [**TypingMind.com**](https://typingmind.com)*"
    last_id = _sharegpt_id(rng)
    for part, path in enumerate(paths):
        m_part = n // 2 + (n % 2 if part == 0 else 0)
        w = JsonArrayWriter(path, indent=2)
        for a, b in chunks(m_part, 5_000):
            convs, _ = _conversation_turns(ctx, rng, b - a, 0.25, 40, 30, 230, 0.12, 20_000, name)
            out = []
            for turns in convs:
                roles = ["human" if j % 2 == 0 else "gpt" for j in range(len(turns))]
                r = rng.random()
                if r < 0.03:
                    roles.insert(0, "system")
                    turns.insert(0, banner)
                elif r < 0.04:
                    roles, turns = roles[1:] or roles, turns[1:] or turns  # starts with gpt
                elif r < 0.06:
                    roles, turns = roles[:-1] or roles, turns[:-1] or turns  # odd count
                elif r < 0.065:
                    roles = [("bing", "chatgpt", "user", "bard")[int(rng.integers(4))] if j == 1 else x
                             for j, x in enumerate(roles)]
                if rng.random() < 0.005:
                    turns[-1] = ""
                cid = last_id if rng.random() < 0.005 else _sharegpt_id(rng)
                last_id = cid
                out.append({"id": cid, "conversations": [{"from": ro, "value": t}
                                                         for ro, t in zip(roles, turns, strict=True)]})
            w.write(out)
        w.close()
        total += m_part
    return total


def gen_alpaca(ctx: Ctx, name: str, path: Path, indent: int, code: bool) -> int:
    """GPT-4 Alpaca / Code Alpaca JSON arrays ``{"instruction", "input", "output"}``."""
    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    n = ctx.count(name)
    w = JsonArrayWriter(path, indent=indent)
    for a, b in chunks(n, 10_000):
        m = b - a
        plan = ctx.plan(rng, name, m, dup=0.0, near=0.003, mention=0.006 if not code else 0.001)
        instr = gen.texts(rng, lognormal_words(rng, m, 12, 0.5, 3, 80))
        inputs = gen.texts(rng, lognormal_words(rng, m, 20, 0.8, 1, 400))
        outputs = gen.texts(rng, lognormal_words(rng, m, 25 if code else 80, 0.6, 1, 900))
        has_input = rng.random(m) < 0.4
        out = []
        for i in range(m):
            kind = int(plan.kind[i])
            if kind:
                instruction, output = ctx.donor(rng, kind)
                inp = ""
            else:
                instruction = instr[i]
                if code:
                    inp = (inputs[i][:80] if has_input[i] else "") if rng.random() > 0.03 else "< noinput >"
                    output = code_snippet(rng, gen) if rng.random() < 0.8 else outputs[i]
                else:
                    inp = inputs[i] if has_input[i] else ""
                    output = outputs[i]
                    if rng.random() < 0.1:
                        output = "1. " + output.replace(". ", ".\n2. ", 1)
                output = decorate(rng, plan, i, output)
            out.append({"instruction": instruction, "input": inp, "output": output})
        w.write(out)
    w.close()
    return n


def gen_lima(ctx: Ctx, path: Path) -> int:
    """LIMA ``train.jsonl``: ``{"conversations": [str, ...], "source"}``; a few odd-length dialogues."""
    name = "lima"
    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    n = ctx.count(name)
    plan = ctx.plan(rng, name, n, dup=0.01, near=0.005, mention=0.005)
    users = gen.texts(rng, lognormal_words(rng, n, 40, 1.0, 2, 1200))
    answers = gen.texts(rng, lognormal_words(rng, n, 350, 0.6, 20, 2500))
    extra = gen.texts(rng, lognormal_words(rng, 8 * n, 60, 0.8, 2, 800))
    sources = ("stackexchange", "stackexchange", "wikihow", "nlp", "reddit")
    out = []
    for i in range(n):
        kind = int(plan.kind[i])
        if kind:
            out.append({"conversations": list(ctx.donor(rng, kind)), "source": "stackexchange"})
            continue
        conv = [users[i], decorate(rng, plan, i, answers[i])]
        src = sources[int(rng.integers(len(sources)))]
        r = rng.random()
        if r < 0.05:
            k = int(rng.integers(1, 5))
            conv += extra[8 * i:8 * i + 2 * k]
            src = "multi_turn"
            if rng.random() < 0.3:
                conv = conv[:-1]  # odd count: Tulu drops the trailing user turn
        out.append({"conversations": conv, "source": src})
    w = JsonlWriter(path)
    w.write(out)
    w.close()
    return n


def _parquet_writer(path: Path, schema: Any) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, schema, compression="snappy")


def gen_wizardlm(ctx: Ctx, path: Path) -> int:
    """WizardLM backup Parquet: ``idx`` string, ``conversations`` list<struct<from, value>>."""
    import pyarrow as pa

    name = "wizardlm"
    rng = source_rng(ctx.seed, name)
    n = ctx.count(name)
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    schema = pa.schema([("idx", pa.string()), ("conversations", pa.list_(turn))])
    writer = _parquet_writer(path, schema)
    serial = 0
    for a, b in chunks(n, 10_000):
        convs, _ = _conversation_turns(ctx, rng, b - a, 0.8, 8, 45, 170, 0.08, 3_000, name)
        idx, rows = [], []
        for turns in convs:
            serial += int(rng.integers(1, 4))
            idx.append(f"alpaca_{serial}" if rng.random() < 0.5 else _sharegpt_id(rng))
            roles = ["human" if j % 2 == 0 else "gpt" for j in range(len(turns))]
            if rng.random() < 0.001:
                roles = ["gpt"] + roles[:-1]  # a leading gpt turn: dropped by the normaliser
            rows.append([{"from": r, "value": t} for r, t in zip(roles, turns, strict=True)])
        writer.write_table(pa.table({"idx": pa.array(idx, pa.string()),
                                     "conversations": pa.array(rows, pa.list_(turn))}, schema=schema))
    writer.close()
    return n


ORCA_SYSTEM = (
    "",
    "You are an AI assistant. User will you give you a task. Your goal is to complete the task as "
    "faithfully as you can. While performing the task think step-by-step and justify your steps.",
    "You are a helpful assistant, who always provide explanation. Think like you are answering to a "
    "five year old.",
    "You are an AI assistant that helps people find information.",
    "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    "Explain how you used the definition to come up with the answer.",
    "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
    "User will you give you a task with some instruction. Your job is follow the instructions as "
    "faithfully as you can. While answering think step-by-step and justify your answer.",
    "You should describe the task and explain your answer. While answering a multiple choice question, "
    "first output the correct answer(s). Then explain why other answers are wrong.",
    "Given a definition of a task and a sample input, break the definition into small parts.",
    "You are a teacher. Given a task, you explain in simple steps what the task is asking.",
    "You are an AI assistant, who knows every language and how to translate one language to another.",
    "Given a definition of a task first, then some input of the task.",
    "You are a helpful assistant, who always provide explanation.",
    "You are an AI assistant. Provide a detailed answer so user don't need to search outside.",
    "You are an AI assistant that helps people find information. Provide a detailed answer.",
)


def gen_open_orca(ctx: Ctx, name: str, path: Path) -> int:
    """OpenOrca Parquet ``id, system_prompt, question, response``, written in 50k-row row groups."""
    import pyarrow as pa

    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    n = ctx.count(name)
    schema = pa.schema([("id", pa.string()), ("system_prompt", pa.string()),
                        ("question", pa.string()), ("response", pa.string())])
    writer = _parquet_writer(path, schema)
    prefixes = ("niv", "flan", "t0", "cot")
    counters = [0, 0, 0, 0]
    sys_p = np.array([0.08] + [0.92 / (len(ORCA_SYSTEM) - 1)] * (len(ORCA_SYSTEM) - 1))
    for a, b in chunks(n, 50_000):
        m = b - a
        plan = ctx.plan(rng, name, m, mention=0.004)
        questions = gen.texts(rng, lognormal_words(rng, m, 70, 0.8, 3, 3000))
        responses = gen.texts(rng, lognormal_words(rng, m, 45, 0.9, 1, 2000))
        pref = rng.choice(4, size=m, p=(0.2, 0.5, 0.2, 0.1))
        step = rng.integers(1, 5, m)
        sysi = rng.choice(len(ORCA_SYSTEM), size=m, p=sys_p)
        ids, systems = [], []
        for i in range(m):
            p = int(pref[i])
            counters[p] += int(step[i])
            ids.append(f"{prefixes[p]}.{counters[p]}")
            kind = int(plan.kind[i])
            if kind:
                questions[i], responses[i] = ctx.donor(rng, kind)
                systems.append("")
            else:
                systems.append(ORCA_SYSTEM[int(sysi[i])])
                responses[i] = decorate(rng, plan, i, responses[i])
        if a == 0:
            systems[0] = ""  # row 0 of the real file has an empty system prompt
        writer.write_table(pa.table({"id": ids, "system_prompt": systems, "question": questions,
                                     "response": responses}, schema=schema))
    writer.close()
    return n


SCIENCE_PROMPTS = {
    "evidence_inference": "You will be shown the abstract of a medical clinical trial report. Your task is "
                          "to extract all the findings from this report into a JSON array. Each finding "
                          "should contain the following five elements: Intervention, Comparator, Outcome, "
                          "Effect, Evidence.\n\nAbstract:\n",
    "qasper_truncated_4000": "You will be shown sections from a scientific research paper, together with a "
                             "question about the paper. Please print out a collection of quotations from "
                             "the research paper which answer the question.\n\nPaper text:\n",
    "scifact_json": "You will be shown a claim about public health, and the abstract of a biomedical research "
                    "paper. Return a JSON object with the keys \"verdict\" and \"evidence\".\n\nAbstract:\n",
    "scitldr_aic": "Below are the abstract, introduction, and conclusion of a computer science research "
                   "paper. Please summarize the main contribution of the work in a single sentence.\n\n",
    "scierc_ner": "You are a scientific research assistant. Extract all unique entities of these types: "
                  "[\"Generic\", \"Material\", \"Method\", \"Metric\", \"OtherScientificTerm\", \"Task\"].\n\n"
                  "Abstract:\n",
    "scierc_relation": "You are a scientific research assistant. Identify all relationships between the "
                       "entities of this abstract as [entity_1, relation, entity_2] triples.\n\nAbstract:\n",
}


def gen_science(ctx: Ctx, path: Path) -> int:
    """``science_train.jsonl``: ``{"input", "output", "dataset"}``; outputs are JSON *strings*."""
    name = "science"
    rng = source_rng(ctx.seed, name)
    gen = ctx.gen
    subsets = []
    for sub, k in SCIENCE_SUBSETS.items():
        subsets += [sub] * max(1, round(k * ctx.scale))
    n = len(subsets)
    plan = ctx.plan(rng, name, n, dup=0.002, near=0.002, mention=0.002)
    medians = np.array([2_000 if s.startswith("qasper") else 700 for s in subsets], dtype=float)
    body_len = np.clip(rng.lognormal(np.log(medians), 0.5), 50, 4000).astype(np.int64)
    bodies = gen.texts(rng, body_len)
    phrases = gen.texts(rng, lognormal_words(rng, 6 * n, 6, 0.5, 1, 30))
    out = []
    for i, sub in enumerate(subsets):
        kind = int(plan.kind[i])
        if kind:
            inp, output = ctx.donor(rng, kind)
            out.append({"input": inp, "output": output, "dataset": sub})
            continue
        ph = phrases[6 * i:6 * i + 6]
        if sub == "evidence_inference":
            output = json.dumps([[ph[0], ph[1] if rng.random() < 0.8 else None, ph[2],
                                  "significantly increased", ph[3]]])
        elif sub == "qasper_truncated_4000":
            output = json.dumps({"answer": ph[0], "evidence": [ph[1], ph[2]]}) if rng.random() < 0.6 \
                else ("unanswerable" if rng.random() < 0.3 else f"{ph[0]}\n\nEvidence:\n{ph[1]}")
        elif sub == "scifact_json":
            output = json.dumps({"verdict": ("SUPPORT", "CONTRADICT", "NEI")[int(rng.integers(3))],
                                 "evidence": [ph[0]]})
        elif sub == "scitldr_aic":
            output = " ".join(ph[:3])
        elif sub == "scierc_ner":
            output = json.dumps({"Generic": [], "Material": [ph[0]], "Method": [ph[1], ph[2]],
                                 "Metric": [], "OtherScientificTerm": [ph[3]], "Task": [ph[4]]})
        else:
            output = json.dumps([[ph[0], "USED-FOR", ph[1]], [ph[2], "PART-OF", ph[3]]])
        out.append({"input": SCIENCE_PROMPTS[sub] + bodies[i], "output": decorate(rng, plan, i, output),
                    "dataset": sub})
    w = JsonlWriter(path)
    w.write(out)
    w.close()
    return n


HARD_CODED = (
    ("Tell me about yourself.", "I am Tülu, an AI assistant built by researchers at AI2, the Allen "
     "Institute for AI. I was trained to follow instructions and help with many tasks."),
    ("What is your name?", "My name is Tülu. I am a language model assistant developed by AI2."),
    ("Who created you?", "I was created by researchers at AI2, the Allen Institute for AI."),
    ("Who trained you?", "The AI2 team trained me on a mixture of instruction-following data."),
    ("Are you ChatGPT?", "No. I am Tülu, an assistant built by AI2, not ChatGPT or another OpenAI model."),
    ("What model are you?", "I am Tülu, a fine-tuned Llama 2 model released by AI2."),
    ("Who are you?", "I am Tülu, a helpful assistant built by the Allen Institute for AI."),
    ("Which company made you?", "AI2, the Allen Institute for AI, a non-profit research institute."),
    ("What can you do?", "I can answer questions, write and edit text, explain ideas and help with code."),
    ("Are you human?", "No, I am an AI assistant called Tülu, trained by AI2."),
    ("What is Tülu?", "Tülu is a family of instruction-tuned language models from AI2."),
    ("Are you Claude?", "No, I am Tülu from AI2; I am not Claude, which is made by Anthropic."),
    ("Where do you come from?", "I was built at AI2 in Seattle, by researchers of the Allen Institute for AI."),
    ("What should I call you?", "You can call me Tülu."),
)


def gen_hard_coded(path: Path) -> int:
    """``hard_coded_examples.xlsx``: header Prompt, Output; 14 rows; zip entries with fixed timestamps
    so the file's bytes depend on nothing but this code."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["Prompt", "Output"])
    for p, o in HARD_CODED:
        ws.append([p, o])
    fixed = datetime(2023, 11, 1, 0, 0, 0)
    wb.properties.created = fixed
    buf = io.BytesIO()
    wb.save(buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed_info = zipfile.ZipInfo(info.filename, date_time=(2023, 11, 1, 0, 0, 0))
            fixed_info.compress_type = zipfile.ZIP_DEFLATED
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps "modified" with the save time
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2023-11-01T00:00:00Z", data)
            dst.writestr(fixed_info, data)
    return len(HARD_CODED)


# -- driver ------------------------------------------------------------------------------------

def plan_files(out: Path, sharegpt_raw: bool, with_gpt35: bool) -> list[tuple[str, Path, Callable[[Ctx], int]]]:
    """(label, path, writer) for every file to generate, in recipes/v2.yaml's layout."""
    files: list[tuple[str, Path, Callable[[Ctx], int]]] = []

    def add(label: str, rel: str, fn: Callable[[Ctx, Path], int]) -> None:
        p = out / rel
        files.append((label, p, lambda c, p=p, fn=fn: fn(c, p)))

    add("flan_v2", "flan_v2/tulu_v2_resampled_flan_50k.jsonl",
        lambda c, p: gen_flan_like(c, "flan_v2", p, (1, 5), 45, 10, 100, 8, cot=False))
    add("cot_zsopt", "cot/cot_zsopt.jsonl",
        lambda c, p: gen_flan_like(c, "cot_zsopt", p, (0, 0), 1, 1, 60, 50, cot=True))
    add("cot_fsopt", "cot/cot_fsopt.jsonl",
        lambda c, p: gen_flan_like(c, "cot_fsopt", p, (4, 8), 60, 70, 60, 50, cot=True))
    add("oasst1", "oasst1/2023-04-12_oasst_ready.trees.jsonl", gen_oasst1)
    add("sharegpt", "sharegpt/sharegpt_html_cleaned_and_split_4096.json", gen_sharegpt_split)
    if sharegpt_raw:
        parts = [out / f"sharegpt/sg_90k_part{k}_html_cleaned.json" for k in (1, 2)]
        files.append(("sharegpt_raw", parts[0], lambda c: gen_sharegpt_raw(c, parts)))
    add("gpt4_alpaca", "gpt4_alpaca/alpaca_gpt4_data.json",
        lambda c, p: gen_alpaca(c, "gpt4_alpaca", p, indent=4, code=False))
    add("code_alpaca", "code_alpaca/code_alpaca_20k.json",
        lambda c, p: gen_alpaca(c, "code_alpaca", p, indent=6, code=True))
    add("lima", "lima/train.jsonl", gen_lima)
    add("wizardlm", "wizardlm/train-00000-of-00001.parquet", gen_wizardlm)
    add("open_orca", "open_orca/1M-GPT4-Augmented.parquet", lambda c, p: gen_open_orca(c, "open_orca", p))
    if with_gpt35:
        add("open_orca_gpt35", "open_orca/3_5M-GPT3_5-Augmented.parquet",
            lambda c, p: gen_open_orca(c, "open_orca_gpt35", p))
    add("science", "science/science_train.jsonl", gen_science)
    add("hard_coded", "hard_coded/hard_coded_examples.xlsx", lambda c, p: gen_hard_coded(p))
    return files


def generate(out: Path, scale: float, seed: int, *, sharegpt_raw: bool = False, with_gpt35: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Write every file and ``MANIFEST.json`` (written last: its presence means the set is complete)."""
    if scale <= 0:
        raise ValueError("--scale must be positive")
    out.mkdir(parents=True, exist_ok=True)
    (out / "MANIFEST.json").unlink(missing_ok=True)
    t_all = time.perf_counter()
    gen = TextGen(seed)
    ctx = Ctx(out=out, scale=scale, seed=seed, gen=gen, donors=Donors(gen, seed, scale))
    files: dict[str, Any] = {}
    for label, path, fn in plan_files(out, sharegpt_raw, with_gpt35):
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        records = fn(ctx)
        paths = sorted(path.parent.glob("sg_90k_part*_html_cleaned.json")) if label == "sharegpt_raw" else [path]
        size = sum(p.stat().st_size for p in paths)
        files[label] = {"paths": [str(p.relative_to(out)) for p in paths], "records": records,
                        "bytes": size, "seconds": round(time.perf_counter() - t0, 2)}
        if not quiet:
            print(f"  {label:<16} {records:>10,} records {size / 1e6:>9.1f} MB "
                  f"{files[label]['seconds']:>7.1f} s", file=sys.stderr, flush=True)
    manifest = {
        "generator_version": GENERATOR_VERSION, "scale": scale, "seed": seed,
        "sharegpt_raw": sharegpt_raw, "with_gpt35": with_gpt35,
        "records": sum(f["records"] for f in files.values()),
        "bytes": sum(f["bytes"] for f in files.values()),
        "seconds": round(time.perf_counter() - t_all, 1),
        "files": files,
        "planted": {k: vars(v) for k, v in ctx.planted.items()},
        "donor_pool": len(ctx.donors.pairs),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder to write <source>/<file> into")
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = the published record counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sharegpt-raw", action="store_true",
                    help="also write the raw sg_90k_part{1,2}_html_cleaned.json parts (not read by v2.yaml)")
    ap.add_argument("--with-gpt35", action="store_true",
                    help="also write open_orca/3_5M-GPT3_5-Augmented.parquet (3.5M rows x scale; unused by V2)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    m = generate(args.out, args.scale, args.seed, sharegpt_raw=args.sharegpt_raw,
                 with_gpt35=args.with_gpt35, quiet=args.quiet)
    if not args.quiet:
        print(f"wrote {m['records']:,} records, {m['bytes'] / 1e9:.2f} GB to {args.out} in {m['seconds']} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
