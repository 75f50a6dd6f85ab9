"""Near-duplicate detection across sources: MinHash + LSH over word n-gram shingles (recipe ``dedup.near``).

The pipeline calls three pure functions:

* ``key_text(messages, key)`` -> the text a record is compared on (``conversation``, ``prompt`` = the
  first user turn, ``assistant`` = all assistant turns; ``user`` = all user turns is also accepted).
* ``find_near_duplicates(items, config, against_texts)`` -> one ``NearDuplicate`` per record to drop.
* ``summarise_near(dropped, items)`` -> the card's section (JSON-serialisable).

How it decides, step by step:

1. **Signatures.** Each text is split into words (``mixer.kernels.shingles.tokenize``: lowercase,
   punctuation-insensitive, CJK one token per character), the words into overlapping ``ngram``-word
   shingles (a text shorter than ``ngram`` words is one shingle), and the shingles into a
   ``num_perm``-value MinHash. The hashing is vectorised numpy over whole batches, sent in chunks
   through an executor (``mixer.engine``) for large inputs; the signatures equal datasketch's ``MinHash(num_perm, seed,
   scheme="affine32", hashfunc=shingle_hash32)`` bit for bit, whatever the worker count.
2. **Candidates (LSH).** ``bands`` x ``rows`` banding exactly as ``datasketch.MinHashLSH`` does it
   (band ``i`` is hash values ``[i*rows, (i+1)*rows)``; two records are candidates when any band is
   identical). When absent, bands/rows come from datasketch's own ``_optimal_param(threshold,
   num_perm, *lsh_weights)`` with recall-leaning weights (see ``optimal_bands_rows``). The banding itself is numpy
   (sort band keys, pair equal runs) because datasketch's per-record ``insert`` loop costs more than
   all the hashing; ``lsh_candidate_pairs_datasketch`` is the reference the tests compare against.
3. **Confirmation.** A candidate pair merges only when the MinHash Jaccard estimate (share of equal
   hash values, as ``MinHash.jaccard``) reaches ``threshold``.
4. **Clusters.** Connected components of confirmed pairs (union-find). One record per cluster is
   kept: the one from the source listed first in the recipe (lowest ``source_rank``), then the longest
   assistant text, then the smallest id (then source name and input position, so the rule is total).
   A record of the ``against`` corpus outranks every new record, so a cluster that touches it loses
   all its new records and the existing corpus is never changed.

Each dropped record reports its cluster id (``near-`` + a hash of the keeper's source and id, so it
is stable across runs), the keeper, and the estimated Jaccard *with the keeper*. Because clusters are
connected components, a record can join a cluster through a neighbour and have an estimate with the
keeper below the threshold; ``link_jaccard`` gives the confirmed estimate of the pair that brought it
in. Texts with no word tokens have no shingles and never match anything.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from mixer.core.errors import InputError, RecipeError
from mixer.core.records import Message
from mixer.kernels.lsh import (  # noqa: F401 - re-exported: the stages, tests and bench use them from here
    MAX_BUCKET_PAIRS,
    SignatureParts,
    band_pairs,
    estimated_jaccard,
    lsh_candidate_pairs,
    lsh_candidate_pairs_datasketch,
    pair_estimates,
    to_minhash,
    unique_pairs,
)
from mixer.kernels.shingles import EMPTY_HASH, permutations, sign_chunk, signatures_of
from mixer.recipe.settings import NEAR_KEYS as KEYS
from mixer.recipe.settings import NearDedupSettings
from mixer.recipe.settings import optimal_bands_rows as optimal_bands_rows  # re-exported: tests and bench use it here

if TYPE_CHECKING:
    from mixer.core.executor import Executor

#: Below this much text (characters) shipping the signing to workers costs more than it saves.
POOL_MIN_CHARS = 8_000_000
#: Records per pool task: big enough to amortise pickling, small enough to balance two cores.
POOL_CHUNK_RECORDS = 4000


class NearItem(NamedTuple):
    """One record of the new build, as near-dedup sees it."""

    text: str  #: ``key_text(messages, key)``
    source_rank: int  #: position of the record's source in the recipe (0 = listed first)
    assistant_chars: int  #: total characters of its assistant turns (longer wins a tie)
    id: str
    source: str


@dataclass(frozen=True)
class NearDuplicate:
    """A record to drop: ``index`` into the items, and who it lost to."""

    index: int
    cluster_id: str
    kept_index: int | None  #: None when the keeper is a record of the ``against`` corpus
    kept_id: str
    kept_source: str  #: the keeper's source, or ``against:<file name>``
    jaccard: float  #: MinHash estimate of the Jaccard similarity with the keeper
    cluster_size: int = 2  #: records in the cluster, keeper included (against records included)
    link_jaccard: float = 1.0  #: highest confirmed estimate among the pairs that put it in the cluster


def key_text(messages: Sequence[Message], key: str) -> str:
    """The text a record is compared on, Unicode-lowercased (tokenising removes punctuation).

    ``conversation`` joins every turn's content (roles are left out: they are the same in every
    record and would only inflate similarity); ``prompt`` is the first user turn (a record without one
    has empty text and never matches); ``assistant`` joins the assistant turns; ``user`` the user turns.
    """
    if key == "conversation":
        parts = [m["content"] for m in messages]
    elif key == "prompt":
        parts = next(([m["content"]] for m in messages if m["role"] == "user"), [])
    elif key == "assistant":
        parts = [m["content"] for m in messages if m["role"] == "assistant"]
    elif key == "user":
        parts = [m["content"] for m in messages if m["role"] == "user"]
    else:
        raise RecipeError(f"near-dedup key: expected one of {list(KEYS)}, got {key!r}")
    return "\n".join(parts).lower()


def assistant_chars(messages: Sequence[Message]) -> int:
    return sum(len(m["content"]) for m in messages if m["role"] == "assistant")


# -- signatures ----------------------------------------------------------------------------------

def signatures(
    texts: Sequence[str], ngram: int = 5, num_perm: int = 128, seed: int = 42,
    executor: Executor | None = None, pool_min_chars: int | None = None,
) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures, in input order (see ``signatures_async``)."""
    return signatures_async(texts, ngram, num_perm, seed, executor, pool_min_chars)()


def signatures_async(
    texts: Sequence[str], ngram: int, num_perm: int, seed: int, executor: Executor | None = None,
    pool_min_chars: int | None = None, width: int | None = None,
) -> Callable[[], np.ndarray]:
    """Start signing ``texts``; the returned function waits for the signatures.

    Identical with or without an executor: every text is hashed on its own, chunks only decide which
    worker does it. Large inputs go through ``executor.scatter`` (at most ``POOL_CHUNK_RECORDS``
    texts per chunk, about ``width`` x 4 chunks); the worker function lives in
    ``mixer.kernels.shingles``, which imports only numpy, so workers start light.
    """
    limit = POOL_MIN_CHARS if pool_min_chars is None else pool_min_chars
    if executor is None or len(texts) < 2 or sum(len(t) for t in texts) < limit:
        sig = signatures_of(texts, ngram, num_perm, seed)
        return lambda: sig
    task = partial(sign_chunk, ngram=ngram, num_perm=num_perm, seed=seed, perms=permutations(num_perm, seed))
    pending = executor.scatter(task, list(texts), width=width, max_chunk=POOL_CHUNK_RECORDS)
    return lambda: np.concatenate(pending(), axis=0)


# -- clustering ------------------------------------------------------------------------------------

class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                ra, rb = rb, ra
            self.parent[ra] = rb


def cluster_id_for(source: str, record_id: str) -> str:
    """Stable cluster id: a hash of the keeper's source and id."""
    return "near-" + hashlib.sha1(f"{source}\x1f{record_id}".encode()).hexdigest()[:16]


def _normalise_against(against_texts: Sequence[Sequence[str]]) -> list[tuple[str, str, str]]:
    out = []
    for entry in against_texts:
        if len(entry) == 2:
            rid, text = entry  # type: ignore[misc]
            origin = "against"
        else:
            rid, text, origin = entry[0], entry[1], entry[2]
        out.append((str(rid), text, str(origin)))
    return out


def find_near_duplicates(
    items: Sequence[NearItem], config: NearDedupSettings,
    against_texts: Sequence[tuple[str, str]] | Sequence[tuple[str, str, str]] = (),
    signatures_cache: np.ndarray | SignatureParts | None = None,
    confirmed: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[NearDuplicate]:
    """The records to drop, sorted by index (see the module docstring for the rule).

    ``against_texts``: records of an existing corpus as ``(id, text)`` or ``(id, text, origin)``
    (origin: its file name; see ``load_against``), ``text`` from ``key_text`` with the same key. They
    can only ever be keepers. ``signatures_cache``: precomputed signatures of items then against
    records (the benchmark passes them to time the stages separately), or the part files holding
    them (``SignatureParts``, only with ``confirmed``: the build in units never gathers them; only the
    rows of dropped records and their keepers are read). ``confirmed``: the confirmed pairs (sorted,
    unique) and their estimates when the caller ran steps 2 and 3 elsewhere (in units:
    ``mixer.stages.near_dedup._confirm_in_units``); only clustering is left to do here.
    """
    against = _normalise_against(against_texts)
    n_new = len(items)
    texts = [it.text for it in items] + [a[1] for a in against]
    if not texts:
        return []
    bands, rows = config.lsh_params()
    if signatures_cache is not None:
        sig = signatures_cache
    else:
        sig = signatures(texts, config.ngram, config.num_perm, config.seed)
    if confirmed is not None:
        pairs, jac = confirmed
    else:
        assert isinstance(sig, np.ndarray), "signature part files come with the confirmed pairs"
        active = ~np.all(sig == EMPTY_HASH, axis=1)
        pairs = lsh_candidate_pairs(sig, bands, rows, active)
        if len(pairs) and against:
            pairs = pairs[pairs[:, 0] < n_new]  # two against records never need comparing
        if len(pairs) == 0:
            return []
        jac = estimated_jaccard(sig, pairs)
        keep = jac >= config.threshold
        pairs, jac = pairs[keep], jac[keep]
    if len(pairs) == 0:
        return []

    uf = _UnionFind()
    link: dict[int, float] = defaultdict(float)
    for (a, b), j in zip(pairs.tolist(), jac.tolist(), strict=True):
        uf.union(a, b)
        if j > link[a]:
            link[a] = j
        if j > link[b]:
            link[b] = j
    clusters: dict[int, list[int]] = defaultdict(list)
    for node in link:
        clusters[uf.find(node)].append(node)

    def rank(i: int) -> tuple[int, int, str, str, int]:
        if i >= n_new:
            rid, _, origin = against[i - n_new]
            return (-1, 0, rid, origin, i)
        it = items[i]
        return (it.source_rank, -it.assistant_chars, it.id, it.source, i)

    # every dropped record's estimate with its keeper, in one pass over their rows (not a read per cluster)
    drops: list[tuple[int, int, int]] = []  # (dropped, keeper, cluster size)
    for members in clusters.values():
        keeper = min(members, key=rank)
        drops.extend((m, keeper, len(members)) for m in members if m != keeper and m < n_new)
    if not drops:
        return []
    with_keeper = pair_estimates(sig, np.array([(m, k) for m, k, _ in drops], dtype=np.int64))
    out: list[NearDuplicate] = []
    for (m, keeper, size), j in zip(drops, with_keeper.tolist(), strict=True):
        if keeper >= n_new:
            kept_index, kept_id = None, against[keeper - n_new][0]
            kept_source = f"against:{against[keeper - n_new][2]}"
        else:
            kept_index, kept_id, kept_source = keeper, items[keeper].id, items[keeper].source
        out.append(NearDuplicate(
            index=m, cluster_id=cluster_id_for(kept_source, kept_id), kept_index=kept_index, kept_id=kept_id,
            kept_source=kept_source, jaccard=round(float(j), 6), cluster_size=size,
            link_jaccard=round(link[m], 6)))
    out.sort(key=lambda d: d.index)
    return out


def load_against(
    paths: Iterable[str | Path], key: str, base_dir: str | Path | None = None
) -> list[tuple[str, str, str]]:
    """``(id, key_text, file name)`` for every record of existing corpora (Parquet/JSONL of canonical records).

    Only read, never written: the ``against`` corpus is a reference, not part of the build.
    """
    from mixer.readers.base import ParseFailure
    from mixer.readers.raw import read_raw

    out: list[tuple[str, str, str]] = []
    for p in paths:
        path = Path(p)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        columns = ["id", "messages"] if path.suffix == ".parquet" else None
        for item in read_raw(path, columns):
            value = item.value
            if isinstance(value, ParseFailure):
                raise InputError(item.location, value.problem)
            if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
                raise InputError(item.location, "dedup.near.against: expected a canonical record with 'messages'")
            messages = [m for m in value["messages"] if isinstance(m, dict) and isinstance(m.get("content"), str)]
            out.append((str(value.get("id", item.location.record)), key_text(messages, key), path.name))
    return out


# -- card --------------------------------------------------------------------------------------------

def _snippet(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarise_near(dropped: Sequence[NearDuplicate], items: Sequence[NearItem], examples: int = 3,
                   text_of: Callable[[int], str] | None = None) -> dict[str, Any]:
    """The card's near-dedup section; ``removed_total`` equals ``len(dropped)``.

    ``text_of(i)``: item ``i``'s key text, for items built without it (a build does not keep 1.5 M
    texts around for three examples); default ``items[i].text``.

    ``removed_by_pair``: records removed per (source of the dropped record, source of the keeper).
    ``cluster_size_histogram``: cluster size (keeper included) -> number of clusters.
    ``examples``: the ``examples`` largest clusters (ties by cluster id) with ids and text snippets.
    """
    text_of = text_of or (lambda i: items[i].text)
    by_pair: Counter[tuple[str, str]] = Counter()
    clusters: dict[str, list[NearDuplicate]] = defaultdict(list)
    for d in dropped:
        by_pair[(items[d.index].source, d.kept_source)] += 1
        clusters[d.cluster_id].append(d)
    sizes = Counter(ds[0].cluster_size for ds in clusters.values())
    ranked = sorted(clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:examples]
    example_list = []
    for cid, ds in ranked:
        first = ds[0]
        kept_text = text_of(first.kept_index) if first.kept_index is not None else None
        example_list.append({
            "cluster_id": cid,
            "size": first.cluster_size,
            "kept": {"id": first.kept_id, "source": first.kept_source,
                     "text": _snippet(kept_text) if kept_text is not None else None},
            "dropped": [{"id": items[d.index].id, "source": items[d.index].source, "jaccard": d.jaccard,
                         "text": _snippet(text_of(d.index))} for d in sorted(ds, key=lambda d: d.index)[:5]],
        })
    return {
        "removed_total": len(dropped),
        "clusters": len(clusters),
        "removed_by_pair": [
            {"dropped_source": a, "kept_source": b, "removed": n}
            for (a, b), n in sorted(by_pair.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "cluster_size_histogram": {str(k): sizes[k] for k in sorted(sizes)},
        "examples": example_list,
    }
