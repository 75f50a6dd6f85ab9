"""What `mixer tokenize` costs on a build: wall, CPU, peak RSS, records/s, for unpacked and packed output.

No real model tokenizer can be downloaded where mixer is developed, so this trains a byte-level BPE with
Llama 2's vocabulary size (32,000) on the build's own text and gives it mixer's Tulu template; the cost of
encoding is of that order for any fast (Rust) tokenizer, and the rest (rendering, masks, packing, writing)
does not depend on it.

    python bench/tokenize_build.py BUILD_DIR [--max-length 8192] [--workdir /tmp/mixer-bench/tok]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def make_tokenizer(build: Path, out: Path, vocab_size: int = 32_000, sample: int = 20_000) -> Path:
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mixer.core.chat import TULU_CHAT_TEMPLATE

    if (out / "tokenizer.json").is_file():
        return out
    texts: list[str] = []
    for f in sorted((build / "data").glob("*.parquet")):
        for messages in pq.read_table(f, columns=["messages"]).column("messages").to_pylist():
            texts += [m["content"] for m in messages]
            if len(texts) >= sample:
                break
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = TULU_CHAT_TEMPLATE
    fast.save_pretrained(out)
    return out


def run(cmd: list[str], cache: Path) -> dict[str, float]:
    """Run ``cmd`` with a fresh datasets cache (the packed run must not reuse the unpacked run's tokens)."""
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env={**os.environ, "HF_DATASETS_CACHE": str(cache)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "peak_rss_mib": round(after.ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("build", type=Path)
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mixer-bench/tok"))
    a = ap.parse_args()
    tok = make_tokenizer(a.build, a.workdir / "tokenizer")
    results = {}
    print("| output | records | rows | tokens | trainable | wall s | CPU s | records/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for label, extra in (("unpacked", []), ("packed bfd", ["--pack", "bfd"])):
        out = a.workdir / label.replace(" ", "-")
        cmd = [sys.executable, "-m", "mixer.cli", "tokenize", str(a.build), "--tokenizer", str(tok),
               "--max-length", str(a.max_length), "-o", str(out), *extra]
        r = run(cmd, a.workdir / "hf-datasets-cache")
        manifest = json.loads((out / "tokenized.json").read_text(encoding="utf-8"))
        r["records"] = manifest["totals"]["records"]
        r["records_per_s"] = round(r["records"] / r["wall_s"])
        r["tokens"] = manifest["totals"]["total_tokens"]
        r["trainable"] = manifest["totals"]["trainable_tokens"]
        r["rows"] = manifest["rows"]
        results[label] = r
        print(f"| {label} | {r['records']:,} | {r['rows']:,} | {r['tokens']:,} | {r['trainable']:,} | {r['wall_s']} | "
              f"{r['cpu_s']} | {r['records_per_s']:,} | {r['peak_rss_mib']} |", flush=True)


if __name__ == "__main__":
    main()
