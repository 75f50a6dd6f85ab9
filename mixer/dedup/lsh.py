"""Locality-sensitive hashing over MinHash signatures: the candidate pairs of near-duplicate detection.

Pure numpy, no pools and no state: ``lsh_candidate_pairs`` does every band in one process,
``band_pairs`` / ``confirmed_band_pairs`` one band (a unit an engine can run anywhere), and
``unique_pairs`` puts bands together; ``estimated_jaccard`` confirms candidates. datasketch's
``MinHashLSH`` is the reference the tests compare against (``lsh_candidate_pairs_datasketch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: A band bucket with more members than this is not compared all-pairs: each member is compared with
#: its ``MAX_BUCKET_PAIRS`` neighbours in input order (enough to connect a cluster; a bucket this large
#: after exact dedup is a template family, not a set of unrelated texts).
MAX_BUCKET_PAIRS = 64


def to_minhash(signature: np.ndarray, seed: int = 42) -> Any:
    """A datasketch ``LeanMinHash`` holding a signature (for ``MinHashLSH`` or ``jaccard``)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=signature, scheme="affine32")


def _band_keys(band: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of a (n, rows) uint32 block; equal bands give equal keys."""
    key = np.zeros(len(band), dtype=np.uint64)
    for j in range(band.shape[1]):
        key = key * np.uint64(0x9E3779B97F4A7C15) + band[:, j].astype(np.uint64)
        key ^= key >> np.uint64(29)
    return key


def lsh_candidate_pairs(sig: np.ndarray, bands: int, rows: int, active: np.ndarray | None = None) -> np.ndarray:
    """Pairs (i, j), i < j, of rows of ``sig`` sharing at least one identical band; sorted, unique.

    Same candidates as querying ``datasketch.MinHashLSH(num_perm, params=(bands, rows))`` with every
    signature (a 64-bit key collision can only add a candidate, which confirmation then rejects),
    except that buckets over ``MAX_BUCKET_PAIRS + 1`` members pair each member with its
    ``MAX_BUCKET_PAIRS`` neighbours only.
    """
    idx = np.arange(len(sig)) if active is None else np.flatnonzero(active)
    if len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    chunks = [band_pairs(sig, idx, band, rows) for band in range(bands)]
    return unique_pairs(chunks, len(sig))


def band_pairs(sig: np.ndarray, idx: np.ndarray, band: int, rows: int) -> np.ndarray:
    """The candidate pairs of one band: the rows ``idx`` grouped by their band key (a sort), each
    member of a bucket paired with up to ``MAX_BUCKET_PAIRS`` following members (by row). Not unique
    across bands; ``unique_pairs`` puts bands together."""
    keys = _band_keys(np.asarray(sig[idx, band * rows:(band + 1) * rows]))
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    same_next = ks[1:] == ks[:-1]
    if not same_next.any():
        return np.zeros((0, 2), dtype=np.int64)
    # keep only members of multi-member runs, in sorted order (runs stay contiguous)
    member = np.zeros(len(ks), dtype=bool)
    member[1:] |= same_next
    member[:-1] |= same_next
    sel = np.flatnonzero(member)
    mks = ks[sel]
    mids = idx[order[sel]]
    run_start = np.ones(len(sel), dtype=bool)
    run_start[1:] = mks[1:] != mks[:-1]
    run_id = np.cumsum(run_start)
    chunks = [np.zeros((0, 2), dtype=np.int64)]
    for d in range(1, MAX_BUCKET_PAIRS + 1):
        if d >= len(sel):
            break
        ok = run_id[d:] == run_id[:-d]
        if not ok.any():
            break  # runs are contiguous: no run is longer than d
        a, b = mids[:-d][ok], mids[d:][ok]
        chunks.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64))
    return np.concatenate(chunks)


def unique_pairs(chunks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """The pairs of all chunks, sorted and unique."""
    pairs = np.concatenate([np.zeros((0, 2), dtype=np.int64), *chunks]).astype(np.int64)
    if not len(pairs):
        return pairs
    code = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1)


def confirmed_band_pairs(band: int, signatures: str, active: str, rows: int, threshold: float,
                         n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """One unit of the distributed LSH: band ``band``'s candidate pairs over the signatures saved in
    the work folder (``.npy`` files, read memory-mapped: only this band's columns and the candidates'
    rows are read), confirmed by their Jaccard estimate. Returns (pairs, estimates) with the pairs
    that reach ``threshold``; a pair of two ``against`` rows (index >= ``n_new``) is never one.
    The union of every band's result, made unique, is what ``find_near_duplicates`` confirms itself."""
    sig = np.load(signatures, mmap_mode="r")
    idx = np.load(active)
    pairs = band_pairs(sig, idx, band, rows)
    pairs = unique_pairs([pairs[pairs[:, 0] < n_new]], len(sig))
    if not len(pairs):
        return pairs, np.zeros(0, dtype=np.float64)
    jac = estimated_jaccard(sig, pairs)
    keep = jac >= threshold
    return pairs[keep], jac[keep]


def lsh_candidate_pairs_datasketch(sig: np.ndarray, bands: int, rows: int, seed: int = 42) -> set[tuple[int, int]]:
    """Reference: the candidates datasketch's ``MinHashLSH`` returns (slow; for tests and audits)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(num_perm=sig.shape[1], params=(bands, rows))
    hashes = [to_minhash(s, seed) for s in sig]
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    out: set[tuple[int, int]] = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                out.add((min(i, j), max(i, j)))
    return out


def estimated_jaccard(sig: np.ndarray, pairs: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """``MinHash.jaccard`` (share of equal hash values) for each pair, vectorised."""
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        out[s:s + chunk] = (sig[p[:, 0]] == sig[p[:, 1]]).sum(axis=1) / sig.shape[1]
    return out
