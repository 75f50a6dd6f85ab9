"""Decontamination with and without ``normalise_numbers``: recall on planted changed-number copies of the
test questions, and how many more training prompts each setting flags (with a sample to judge).

    python bench/decont_numbers.py --test tests/data/gsm8k_style_test.jsonl:question \\
        --train samples/raw_train/cot/cot_zsopt.jsonl:inputs --train 'out/tulu-v2-sample/data/*.parquet'

``--test`` and ``--train`` take ``FILE:FIELD`` (JSONL or Parquet, ``a.b`` for a nested field) or a Parquet
glob of a mixer build (the prompt is the first user turn). On real GSM8K (``openai/gsm8k``, config ``main``):

    python bench/decont_numbers.py --test gsm8k_test.jsonl:question --train gsm8k_train.jsonl:question

Planted copies: each test question with every number changed (n -> 2n + 3) and "How many" reworded, the
kind of copy GSM8K's train set holds; they are added to the training prompts for the recall line only.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixer.kernels.decontaminate import Decontaminator  # noqa: E402
from mixer.readers.base import ParseFailure  # noqa: E402
from mixer.readers.raw import read_raw  # noqa: E402
from mixer.recipe.settings import BenchmarkSpec, DecontaminationSettings  # noqa: E402


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def read_texts(spec: str) -> list[str]:
    """``FILE:FIELD`` rows' field, or a mixer build's Parquet files' first user turns."""
    if ":" in spec and not spec.endswith(".parquet"):
        path, field = spec.rsplit(":", 1)
        paths, first_user = sorted(glob.glob(path)), False
    else:
        paths, field, first_user = sorted(glob.glob(spec)), "", True
    if not paths:
        raise SystemExit(f"no file matches {spec}")
    out: list[str] = []
    for p in paths:
        for item in read_raw(Path(p)):
            if isinstance(item.value, ParseFailure):
                continue
            if first_user:
                text = next((m["content"] for m in item.value.get("messages") or [] if m["role"] == "user"), None)
            else:
                text = _field(item.value, field)
            if isinstance(text, str) and text.strip():
                out.append(text)
    return out


def changed_numbers(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(2 * int(m.group()) + 3), text).replace("How many", "How many in total")


def checker(tests: list[str], normalise: bool) -> Decontaminator:
    spec = BenchmarkSpec("test", ("-",), "question", normalise_numbers=normalise)
    return Decontaminator(DecontaminationSettings(benchmarks=(spec,)), {"test": tests})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", required=True, help="FILE:FIELD of the benchmark's questions")
    parser.add_argument("--train", action="append", required=True, help="FILE:FIELD or a build's Parquet glob")
    parser.add_argument("--plant", type=int, default=20, help="changed-number copies planted for recall")
    parser.add_argument("--show", type=int, default=8, help="newly flagged prompts shown for judgement")
    args = parser.parse_args()
    tests = read_texts(args.test)
    train = [t for spec in args.train for t in read_texts(spec)]
    planted = [changed_numbers(q) for q in tests[:args.plant]]
    print(f"{len(tests):,} test questions, {len(train):,} training prompts, {len(planted)} planted copies")
    flagged: dict[bool, list[Any]] = {}
    for normalise in (False, True):
        c = checker(tests, normalise)
        t0 = time.perf_counter()
        results = c.check_many(train)
        wall = time.perf_counter() - t0
        caught = sum(1 for r in c.check_many(planted) if r is not None and r.contaminated)
        flagged[normalise] = [r if r is not None and r.contaminated else None for r in results]
        n = sum(r is not None for r in flagged[normalise])
        print(f"normalise_numbers={str(normalise).lower():5}  planted caught {caught}/{len(planted)}  "
              f"training prompts flagged {n:,}  ({wall:.2f} s)")
    extra = [i for i, (a, b) in enumerate(zip(flagged[False], flagged[True], strict=True)) if a is None and b]
    print(f"flagged only with normalise_numbers: {len(extra):,}")
    for i in extra[:args.show]:
        r = flagged[True][i]
        print(f"- rule {r.rule}, coverage {r.coverage:.2f}\n  train: {train[i][:300]!r}\n"
              f"  test item {r.item_index}: {tests[r.item_index][:300]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
