"""Near-duplicate dedup: signatures equal datasketch's, LSH matches MinHashLSH, the keeper rule, against."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.core.errors import RecipeError
from mixer.engine import LocalEngine
from mixer.kernels.near import (
    NearDedupSettings,
    NearItem,
    estimated_jaccard,
    find_near_duplicates,
    key_text,
    load_against,
    lsh_candidate_pairs,
    lsh_candidate_pairs_datasketch,
    optimal_bands_rows,
    signatures,
    summarise_near,
    to_minhash,
)
from mixer.kernels.shingles import shingle_hash32, shingles, token_hashes, tokenize, word_hash

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
         "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu river stone cloud light "
         "garden window paper silver orange purple simple quiet rapid gentle").split()


def prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(["", "", "", ",", "."]) for _ in range(n))


def typo(text: str, rng: random.Random, edits: int = 2) -> str:
    words = text.split(" ")
    for _ in range(edits):
        i = rng.randrange(len(words))
        words[i] = words[i][::-1]
    return " ".join(words).upper() if rng.random() < 0.5 else " ".join(words)


def conv(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def item(messages: list[dict], key: str, rank: int, rid: str, source: str) -> NearItem:
    return NearItem(key_text(messages, key), rank,
                    sum(len(m["content"]) for m in messages if m["role"] == "assistant"), rid, source)


# -- tokens and signatures ----------------------------------------------------------------------

def test_tokenize_is_lowercase_and_punctuation_insensitive() -> None:
    assert tokenize("Hello, World! It's “quoted”—done…") == ["hello", "world", "it", "s", "quoted", "done"]
    assert tokenize("中文句子。かな") == ["中", "文", "句", "子", "か", "な"]
    assert tokenize("snake_case x2") == ["snake", "case", "x2"]


_TEXT = st.text(alphabet=st.sampled_from(list("abAB09 _,.!-\n") + ["é", "中", "ひ", "—", "“", "😀", "\u00a0",
                                                                         "\u3000", "ａ", "！", "×"]),
                max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=8))
def test_vectorised_token_hashes_equal_reference(texts: list[str]) -> None:
    tok, off = token_hashes(texts)
    for i, t in enumerate(texts):
        assert tok[off[i]:off[i + 1]].tolist() == [word_hash(w) for w in tokenize(t)]


def test_signatures_equal_datasketch_minhash() -> None:
    rng = random.Random(1)
    texts = [prose(rng, rng.randint(0, 40)) for _ in range(30)] + ["", "one two", "... !!!"]
    sig = signatures(texts, ngram=5, num_perm=64, seed=7)
    for t, row in zip(texts, sig, strict=True):
        m = MinHash(num_perm=64, seed=7, scheme="affine32", hashfunc=shingle_hash32)
        sh = shingles(tokenize(t), 5)
        if sh:
            m.update_batch(sh)
        assert np.array_equal(m.hashvalues, row)
    # and the estimate is datasketch's
    a, b = to_minhash(sig[0], 7), to_minhash(sig[1], 7)
    assert estimated_jaccard(sig, np.array([[0, 1]]))[0] == pytest.approx(a.jaccard(b))


def test_numpy_lsh_candidates_equal_datasketch_lsh() -> None:
    rng = random.Random(2)
    base = [prose(rng, 60) for _ in range(40)]
    texts = base + [typo(t, rng, 1) for t in base[:15]] + [typo(t, rng, 6) for t in base[15:25]]
    sig = signatures(texts, 5, 128, 42)
    for bands, rows in ((16, 8), (9, 13), (32, 4)):
        ours = {tuple(p) for p in lsh_candidate_pairs(sig, bands, rows).tolist()}
        assert ours == lsh_candidate_pairs_datasketch(sig, bands, rows, 42)


def test_bands_rows_follow_datasketch_and_recipe() -> None:
    from datasketch.lsh import _optimal_param

    assert NearDedupSettings(threshold=0.8).lsh_params() == _optimal_param(0.8, 128, 0.05, 0.95)
    assert NearDedupSettings(lsh_weights=(0.5, 0.5)).lsh_params() == (9, 13)
    assert NearDedupSettings(bands=14, rows=8).lsh_params() == (14, 8)
    assert optimal_bands_rows(0.8, 128) == (16, 8)
    with pytest.raises(RecipeError, match="bands and rows"):
        NearDedupSettings(bands=4)
    with pytest.raises(RecipeError, match="key"):
        NearDedupSettings(key="title")  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match="unknown option"):
        NearDedupSettings.from_options({"treshold": 0.7})


def test_key_text() -> None:
    m = [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Q1"},
         {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
         {"role": "assistant", "content": "A2"}]
    assert key_text(m, "conversation") == "sys\nq1\na1\nq2\na2"
    assert key_text(m, "prompt") == "q1"
    assert key_text(m, "assistant") == "a1\na2"
    assert key_text(m, "user") == "q1\nq2"


# -- the dedup rule -------------------------------------------------------------------------------

def _two_sources(seed: int = 3, n: int = 60, dups: int = 12) -> tuple[list[NearItem], list[tuple[int, int]]]:
    """Source A (rank 0) and B (rank 1); B holds typo'd copies of ``dups`` A records."""
    rng = random.Random(seed)
    items: list[NearItem] = []
    for i in range(n):
        items.append(item(conv(prose(rng, 40), prose(rng, 160)), "conversation", 0, f"a{i}", "A"))
    planted = []
    for i in range(n):
        items.append(item(conv(prose(rng, 40), prose(rng, 160)), "conversation", 1, f"b{i}", "B"))
    for k, i in enumerate(rng.sample(range(n), dups)):
        orig = items[i].text.split("\n")
        # the copy in B has a longer answer: source order must still win
        msgs = conv(typo(orig[0], rng, 1), typo(orig[1], rng, 1) + " extra")
        items.append(item(msgs, "conversation", 1, f"dup{k}", "B"))
        planted.append((i, len(items) - 1))
    return items, planted


def test_planted_duplicates_across_sources_removed_and_first_source_kept() -> None:
    items, planted = _two_sources()
    dropped = find_near_duplicates(items, NearDedupSettings(workers=1))
    by_index = {d.index: d for d in dropped}
    assert set(by_index) == {copy for _, copy in planted}  # precision and recall 1 on this set
    for orig, copy in planted:
        d = by_index[copy]
        assert d.kept_index == orig and d.kept_id == items[orig].id and d.kept_source == "A"
        assert d.jaccard >= 0.8 and d.cluster_id.startswith("near-")


def test_keeper_tie_break_longest_assistant_then_id() -> None:
    rng = random.Random(4)
    text = prose(rng, 80)
    a = NearItem(text, 0, 10, "z", "S")
    b = NearItem(typo(text, rng, 1), 0, 50, "y", "S")
    c = NearItem(typo(text, rng, 1), 0, 50, "x", "S")
    dropped = find_near_duplicates([a, b, c], NearDedupSettings(workers=1))
    assert {d.index for d in dropped} == {0, 1}
    assert all(d.kept_index == 2 and d.cluster_size == 3 for d in dropped)


def test_distinct_records_sharing_a_prompt_template_are_kept() -> None:
    rng = random.Random(5)
    template = ("Below is an instruction that describes a task. Write a response that appropriately "
                "completes the request. ### Instruction:")
    items = []
    for i in range(80):
        prompt = f"{template} {prose(rng, 12)} ### Response:"
        items.append(item(conv(prompt, prose(rng, 40)), "prompt", 0, f"t{i}", "alpaca"))
    for key in ("prompt", "conversation"):
        its = [NearItem(key_text(conv(it.text, "x"), key), 0, 1, it.id, it.source) for it in items]
        assert find_near_duplicates(its, NearDedupSettings(key=key, workers=1)) == []


def test_short_and_empty_texts() -> None:
    items = [NearItem("", 0, 0, "e1", "S"), NearItem("", 0, 0, "e2", "S"), NearItem("!!!", 0, 0, "e3", "S"),
             NearItem("hello there", 0, 0, "h1", "S"), NearItem("Hello, there!", 1, 0, "h2", "T")]
    dropped = find_near_duplicates(items, NearDedupSettings(workers=1))
    # texts without words never match; two short texts with the same words do
    assert [(d.index, d.kept_index) for d in dropped] == [(4, 3)]


def test_against_never_drops_from_existing_corpus(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(6)
    existing = [conv(prose(rng, 30), prose(rng, 80)) for _ in range(20)]
    path = tmp_path / "previous.parquet"
    pq.write_table(pa.Table.from_pylist([{"dataset": "old", "id": f"old{i}", "messages": m}
                                         for i, m in enumerate(existing)]), path)
    against = load_against([path.name], "conversation", base_dir=tmp_path)
    assert len(against) == 20 and against[0][2] == "previous.parquet"
    new = [item(conv(typo(m[0]["content"], rng, 1), typo(m[1]["content"], rng, 1)), "conversation", 0,
                f"n{i}", "A") for i, m in enumerate(existing[:5])]
    new += [item(conv(prose(rng, 30), prose(rng, 80)), "conversation", 0, f"u{i}", "A") for i in range(10)]
    # the new copies are "better" by every rule (rank 0, longer) and still lose to the existing corpus
    dropped = find_near_duplicates(new, NearDedupSettings(workers=1), against)
    assert [d.index for d in dropped] == [0, 1, 2, 3, 4]
    for d in dropped:
        assert d.kept_index is None and d.kept_source == "against:previous.parquet"
        assert d.kept_id == f"old{d.index}"
    assert all(d.index < len(new) for d in dropped)  # never an index into the existing corpus


def test_determinism_same_seed_and_worker_count() -> None:
    items, _ = _two_sources(seed=7, n=150, dups=20)
    texts = [it.text for it in items]
    s1 = signatures(texts, 5, 128, 42)
    s2 = signatures(texts, 5, 128, 42, executor=LocalEngine(2), pool_min_chars=0)
    assert np.array_equal(s1, s2)
    a = find_near_duplicates(items, NearDedupSettings(workers=1))
    b = find_near_duplicates(items, NearDedupSettings(workers=1))
    c = find_near_duplicates(items, NearDedupSettings(workers=2), signatures_cache=s2)
    assert a == b == c and len(a) == 20
    other_seed = signatures(texts, 5, 128, 43)
    assert not np.array_equal(s1, other_seed)


def test_precision_and_recall_on_planted_set() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from dedup import SOURCES, generate, score  # type: ignore[import-not-found]

    records, clusters = generate(3000, seed=11)
    config = NearDedupSettings(workers=1)
    items = [item(r["messages"], "conversation", SOURCES.index(r["dataset"]), r["id"], r["dataset"])
             for r in records]
    dropped = find_near_duplicates(items, config)
    s = score(dropped, clusters, [it.text for it in items], 0.8, 5)
    assert s["precision"] >= 0.99 and s["recall"] >= 0.95, s


def test_summary_counts_equal_dropped_and_is_json() -> None:
    items, planted = _two_sources(seed=8)
    rng = random.Random(9)
    # one bigger cluster: three more copies of item 0 in B
    for k in range(3):
        items.append(NearItem(typo(items[0].text, rng, 1), 1, 1, f"extra{k}", "B"))
    dropped = find_near_duplicates(items, NearDedupSettings(workers=1))
    summary = summarise_near(dropped, items)
    json.dumps(summary)
    assert summary["removed_total"] == len(dropped)
    assert sum(p["removed"] for p in summary["removed_by_pair"]) == len(dropped)
    hist = summary["cluster_size_histogram"]
    assert sum(int(size) - 1 for size in hist for _ in range(hist[size])) == len(dropped)
    assert sum(hist.values()) == summary["clusters"] == len({d.cluster_id for d in dropped})
    assert len(summary["examples"]) == 3
    assert summary["examples"][0]["size"] >= 4 and summary["examples"][0]["kept"]["source"] == "A"
