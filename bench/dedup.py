"""Near-duplicate dedup benchmark: synthetic conversations with a planted set of near-duplicates.

    python bench/dedup.py --n 330000 --seed 0 --threshold 0.8 --workers 2

Generates ``--n`` conversations (user prompt + assistant answer, 150-1,500 words, Zipf-distributed
vocabulary, a share of prompts built on a few shared templates) spread over four sources, then plants
near-duplicates: about 2% of the records get one to three copies in other sources with
edit-distance-level changes (about 1% of words substituted, deleted or inserted; some case and
punctuation changes, which normalisation removes). It times ``find_near_duplicates`` (signatures,
then LSH + confirmation + clustering) and scores the result against the planted set:

* precision: share of predicted same-cluster pairs that are planted pairs;
* recall: share of planted pairs whose true shingle Jaccard reaches the threshold that end up in one
  cluster (``recall_all`` counts every planted pair, whatever its true Jaccard).

Peak RSS is reported for this process and for the pool's worker processes (RUSAGE_CHILDREN, the
largest child).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixer.engine import LocalEngine  # noqa: E402
from mixer.kernels.near import (  # noqa: E402
    NearDedupSettings,
    NearItem,
    assistant_chars,
    find_near_duplicates,
    key_text,
    signatures,
)
from mixer.kernels.shingles import shingle_hashes, token_hashes  # noqa: E402

SOURCES = ("flan_v2", "sharegpt", "oasst1", "cot")
TEMPLATES = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "You are a helpful assistant. Answer the following question as accurately and concisely as you can.",
    "Read the passage below and answer the question that follows it. Explain your reasoning step by step.",
    "Translate the following text into French, keeping the meaning and the tone of the original text.",
    "Given the context below, write a short summary in three sentences that a child could understand.",
)


def make_vocab(rng: random.Random, size: int = 50_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        length = rng.choices(range(1, 13), weights=(3, 8, 10, 9, 8, 6, 5, 4, 3, 2, 1, 1))[0]
        words.add("".join(rng.choice(letters) for _ in range(length)))
    vocab = sorted(words)
    rng.shuffle(vocab)
    # some words carry punctuation or capitals, as prose does (normalisation removes both)
    for i in range(0, size, 9):
        vocab[i] += rng.choice([",", ".", "?", "!", ";", ":"])
    for i in range(0, size, 13):
        vocab[i] = vocab[i].capitalize()
    return vocab


def generate(n: int, seed: int) -> tuple[list[dict], list[list[int]]]:
    """``n`` canonical records, including planted near-duplicates, and the planted clusters (indices)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    vocab = make_vocab(rng)
    ranks = np.arange(1, len(vocab) + 1, dtype=np.float64)
    probs = 1.0 / ranks**1.05
    probs /= probs.sum()

    n_dup_groups = int(n * 0.02)
    copies = nrng.integers(1, 4, size=n_dup_groups)
    n_base = n - int(copies.sum())
    prompt_len = nrng.integers(20, 120, size=n_base)
    answer_len = np.clip(nrng.lognormal(5.7, 0.6, size=n_base).astype(np.int64), 100, 1400)
    total = int(prompt_len.sum() + answer_len.sum())
    ids = nrng.choice(len(vocab), size=total, p=probs)
    words = [vocab[i] for i in ids.tolist()]

    records: list[dict] = []
    pos = 0
    for i in range(n_base):
        p = words[pos:pos + prompt_len[i]]
        pos += prompt_len[i]
        a = words[pos:pos + answer_len[i]]
        pos += answer_len[i]
        prompt = " ".join(p)
        if rng.random() < 0.3:
            prompt = rng.choice(TEMPLATES) + "\n\n" + prompt
        records.append({
            "dataset": SOURCES[i % len(SOURCES)], "id": f"r{i}",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": " ".join(a)}],
        })

    bases = rng.sample(range(n_base), n_dup_groups)
    clusters: list[list[int]] = []
    for g, (b, c) in enumerate(zip(bases, copies.tolist(), strict=True)):
        members = [b]
        for k in range(c):
            src = SOURCES[(b + k + 1) % len(SOURCES)]
            records.append({"dataset": src, "id": f"d{g}_{k}",
                            "messages": [{"role": m["role"], "content": perturb(m["content"], rng, vocab)}
                                         for m in records[b]["messages"]]})
            members.append(len(records) - 1)
        clusters.append(members)
    # shuffle so copies are not adjacent to their originals
    order = list(range(len(records)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    records = [records[i] for i in order]
    clusters = [[where[i] for i in c] for c in clusters]
    return records, clusters


def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """Edit-distance-level changes: ~1% of words substituted/deleted/inserted, plus case/punctuation."""
    words = text.split(" ")
    edits = max(1, round(len(words) * 0.01))
    for _ in range(edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.4:
            w = words[i]
            if len(w) > 2:  # a typo: swap two letters
                j = rng.randrange(len(w) - 1)
                words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            else:
                words[i] = rng.choice(vocab)
        elif op < 0.7 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    for _ in range(3):  # no-ops after normalisation
        i = rng.randrange(len(words))
        words[i] = words[i].upper() if rng.random() < 0.5 else words[i] + ","
    return " ".join(words)


def true_jaccards(pairs: list[tuple[int, int]], texts: list[str], ngram: int) -> list[float]:
    """Exact shingle-set Jaccard per pair (64-bit shingle hashes: same sets as ``shingles(tokenize())``)."""
    needed = sorted({i for p in pairs for i in p})
    tok, off = token_hashes([texts[i] for i in needed])
    sh, sh_off = shingle_hashes(tok, off, ngram)
    sets = {i: set(sh[sh_off[k]:sh_off[k + 1]].tolist()) for k, i in enumerate(needed)}
    out = []
    for a, b in pairs:
        sa, sb = sets[a], sets[b]
        out.append(len(sa & sb) / len(sa | sb) if sa or sb else 0.0)
    return out


class PeakRSS:
    """Peak resident memory of this process and of its worker processes, sampled from /proc.

    ``ru_maxrss`` of children is useless here: a spawned worker is forked before it execs, and the
    fork briefly maps the parent's pages, so RUSAGE_CHILDREN reports the parent's size. Each worker's
    own high-water mark (VmHWM) is read while it runs instead. The parent's VmHWM is reset after the
    synthetic data is generated (``/proc/self/clear_refs``), so it covers the dedup only.
    """

    def __init__(self) -> None:
        self.children_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _hwm_mb(pid: int | str) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _children(self) -> list[str]:
        me = str(os.getpid())
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if (d / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                        out.append(d.name)
                except (OSError, IndexError):
                    continue
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for pid in self._children():
                self.children_mb = max(self.children_mb, self._hwm_mb(pid))

    def __enter__(self) -> PeakRSS:
        self.start_mb = float(next((int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines()
                                    if x.startswith("VmRSS:")), 0)) / 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.main_mb = self._hwm_mb("self") if self.reset else \
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score(dropped: list, clusters: list[list[int]], texts: list[str], threshold: float, ngram: int) -> dict:
    pred_clusters: dict[str, set[int]] = defaultdict(set)
    for d in dropped:
        pred_clusters[d.cluster_id].add(d.index)
        if d.kept_index is not None:
            pred_clusters[d.cluster_id].add(d.kept_index)
    pred_pairs = {tuple(sorted(p)) for c in pred_clusters.values() for p in itertools.combinations(c, 2)}
    planted = {tuple(sorted(p)) for c in clusters for p in itertools.combinations(c, 2)}
    planted_list = sorted(planted)
    eligible = {p for p, j in zip(planted_list, true_jaccards(planted_list, texts, ngram), strict=True)
                if j >= threshold}
    tp = len(pred_pairs & planted)
    return {
        "predicted_pairs": len(pred_pairs), "planted_pairs": len(planted), "eligible_pairs": len(eligible),
        "precision": tp / len(pred_pairs) if pred_pairs else 1.0,
        "recall": len(pred_pairs & eligible) / len(eligible) if eligible else 1.0,
        "recall_all": tp / len(planted) if planted else 1.0,
        "expected_drops": sum(len(c) - 1 for c in clusters),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=330_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--key", default="conversation")
    args = ap.parse_args()

    t0 = time.perf_counter()
    records, clusters = generate(args.n, args.seed)
    config = NearDedupSettings(key=args.key, threshold=args.threshold, workers=args.workers, seed=42)
    names = {s: i for i, s in enumerate(SOURCES)}
    gen_s = time.perf_counter() - t0
    print(f"generated {len(records):,} records, {len(clusters):,} planted clusters in {gen_s:.1f}s", flush=True)

    monitor = PeakRSS().__enter__()
    t1 = time.perf_counter()
    items = [NearItem(key_text(r["messages"], config.key), names[r["dataset"]], assistant_chars(r["messages"]),
                      r["id"], r["dataset"]) for r in records]
    t2 = time.perf_counter()
    with LocalEngine(config.n_workers()) as engine:
        sig = signatures([it.text for it in items], config.ngram, config.num_perm, config.seed, engine)
    t3 = time.perf_counter()
    dropped = find_near_duplicates(items, config, signatures_cache=sig)
    t4 = time.perf_counter()
    monitor.__exit__()
    total = t4 - t1
    mb = sum(len(it.text) for it in items) / 1e6

    child_fork = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    bands, rows = config.lsh_params()
    print(f"text: {mb:,.0f} MB; bands x rows = {bands} x {rows}; workers = {config.n_workers()}")
    print(f"key_text {t2 - t1:.1f}s, signatures {t3 - t2:.1f}s, lsh+confirm+cluster {t4 - t3:.1f}s")
    print(f"seconds: {total:.1f}  records/s: {len(items) / total:,.0f}  "
          f"peak RSS: main {monitor.main_mb:,.0f} MB (of which {monitor.start_mb:,.0f} MB were the synthetic "
          f"records before dedup; reset: {monitor.reset}), "
          f"largest worker {monitor.children_mb:,.0f} MB (RUSAGE_CHILDREN says {child_fork:,.0f} MB, "
          "the parent's size at fork)")
    print(f"dropped: {len(dropped):,}")
    s = score(dropped, clusters, [it.text for it in items], args.threshold, config.ngram)
    print(f"precision: {s['precision']:.4f}  recall: {s['recall']:.4f} (of {s['eligible_pairs']:,} planted pairs "
          f"with true Jaccard >= {args.threshold})  recall_all: {s['recall_all']:.4f} "
          f"(of {s['planted_pairs']:,} planted pairs)  expected drops: {s['expected_drops']:,}")


if __name__ == "__main__":
    main()
