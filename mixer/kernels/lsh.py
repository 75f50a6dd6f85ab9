"""Locality-sensitive hashing over MinHash signatures: the candidate pairs of near-duplicate detection.

Pure numpy, no pools and no state: ``lsh_candidate_pairs`` does every band in one process
(``band_pairs`` one band, ``unique_pairs`` puts bands together); ``band_keys_unit``,
``band_partition_pairs`` and ``bucket_chunk_pairs`` are the same work cut into units of bounded
memory that an engine can run anywhere; ``estimated_jaccard`` confirms candidates. datasketch's
``MinHashLSH`` is the reference the tests compare against (``lsh_candidate_pairs_datasketch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixer.core.workstore import WorkPath, npy_rows, open_output
from mixer.kernels.shingles import EMPTY_HASH

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
    run_start = np.ones(len(sel), dtype=bool)
    run_start[1:] = mks[1:] != mks[:-1]
    return neighbour_pairs(idx[order[sel]], np.cumsum(run_start))


def neighbour_pairs(members: np.ndarray, run_id: np.ndarray, first: int | None = None) -> np.ndarray:
    """Pairs (smaller, larger id) of ``members`` (bucket after bucket, each in id order, ``run_id``
    the bucket of each) with each of its up to ``MAX_BUCKET_PAIRS`` following members in its bucket.
    ``first``: only pairs whose first member is among the first ``first`` (a chunk of a large
    bucket; its members run on ``MAX_BUCKET_PAIRS`` past the chunk so its last pairs are whole)."""
    chunks = [np.zeros((0, 2), dtype=np.int64)]
    starts = len(members) if first is None else first
    for d in range(1, MAX_BUCKET_PAIRS + 1):
        if d >= len(members):
            break
        ok = run_id[d:] == run_id[:-d]
        ok[starts:] = False
        if not ok.any():
            break  # runs are contiguous: no run is longer than d
        a, b = members[:-d][ok], members[d:][ok]
        chunks.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64))
    return np.concatenate(chunks)


def unique_pairs(chunks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """The pairs of all chunks, sorted and unique."""
    pairs = np.concatenate([np.zeros((0, 2), dtype=np.int64), *chunks]).astype(np.int64)
    if not len(pairs):
        return pairs
    code = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1)


# The distributed LSH: three kinds of unit, each of bounded memory, whose confirmed pairs, put together
# and made unique, are exactly those ``lsh_candidate_pairs`` + ``estimated_jaccard`` give in one process.
#
# 1. ``band_keys_unit``: a range of signature rows -> every band's (bucket key, global id) of its
#    non-empty rows, split by key into ``partitions`` (so one bucket is always in one partition).
# 2. ``band_partition_pairs``: one (band, partition): its entries sorted by (key, id), the buckets
#    paired and confirmed in blocks of at most ``max_members`` members; a bucket larger than that
#    is returned (its member ids) instead, to be cut into chunks.
# 3. ``bucket_chunk_pairs``: one member range of one large bucket, paired and confirmed.
#
# Signatures are read from ``.npy`` part files in the work folder (``SignatureParts``: one per signing
# unit, which wrote it; local: memory-mapped; remote: by byte ranges, ``mixer.core.workstore.npy_rows``),
# only the rows a unit needs.


@dataclass(frozen=True)
class SignatureParts:
    """The signature matrix as the ``.npy`` files that hold consecutive row ranges of it: part ``k``
    holds global rows ``[starts[k], starts[k + 1])``. Why parts: each signing unit writes its own
    rows where it runs, so the matrix (51 GB at 100 M records) is never gathered in one process; a
    unit reading a global row range or a set of rows gets them from whichever parts hold them."""

    paths: tuple[WorkPath, ...]
    starts: tuple[int, ...]  #: len(paths) + 1 boundaries, the last the number of rows
    num_perm: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.starts[-1], self.num_perm)

    def __len__(self) -> int:
        return self.starts[-1]

    def rows(self, rows: np.ndarray | slice) -> np.ndarray:
        """Global rows (a slice, or an index array in any order) as one (len, num_perm) array."""
        starts = np.asarray(self.starts, dtype=np.int64)
        if isinstance(rows, slice):
            lo, hi, _ = rows.indices(len(self))
            blocks = [np.zeros((0, self.num_perm), dtype=np.uint32)]
            for k in range(max(0, int(np.searchsorted(starts, lo, "right")) - 1), len(self.paths)):
                if starts[k] >= hi:
                    break
                a, b = max(lo, int(starts[k])), min(hi, int(starts[k + 1]))
                if b > a:
                    blocks.append(npy_rows(self.paths[k], slice(a - int(starts[k]), b - int(starts[k]))))
            return np.concatenate(blocks)
        index = np.asarray(rows, dtype=np.int64)
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        part = np.searchsorted(starts, ordered, "right") - 1
        out = np.empty((len(index), self.num_perm), dtype=np.uint32)
        bounds = np.flatnonzero(np.r_[True, part[1:] != part[:-1], True]) if len(part) else np.zeros(1, np.int64)
        for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            k = int(part[s])
            out[order[s:e]] = npy_rows(self.paths[k], ordered[s:e] - starts[k])
        return out


def pair_estimates(signatures: np.ndarray | SignatureParts, pairs: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
    """``estimated_jaccard`` of ``pairs`` reading only their rows (a chunk of pairs at a time), from
    an array or from part files."""
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        rows = np.unique(p)
        block = signatures.rows(rows) if isinstance(signatures, SignatureParts) else signatures[rows]
        out[s:s + chunk] = estimated_jaccard(block, np.searchsorted(rows, p))
    return out


def band_keys_unit(unit: tuple[int, int, WorkPath, WorkPath], signatures: SignatureParts, bands: int, rows: int,
                   partitions: int) -> None:
    """Unit 1: rows ``[lo, hi)`` of the signatures -> every band's (bucket key, row) entries of its
    rows with shingles (a row whose values are all ``EMPTY_HASH`` is never a candidate), as one
    (entries, 2) uint64 ``.npy`` grouped by band, then by partition (``key % partitions``), and
    ``offsets`` (bands, partitions + 1): where each band's partitions start. A (band, partition)
    unit then reads one contiguous slice of every range's file."""
    lo, hi, entries_path, offsets_path = unit
    block = signatures.rows(slice(lo, hi))
    live = ~np.all(block == EMPTY_HASH, axis=1)
    ids = (np.flatnonzero(live) + lo).astype(np.uint64)
    entries = []
    offsets = np.zeros((bands, partitions + 1), dtype=np.int64)
    for band in range(bands):
        keys = _band_keys(block[:, band * rows:(band + 1) * rows])[live]
        part = (keys % np.uint64(partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        offsets[band] = band * len(ids) + np.r_[0, np.cumsum(np.bincount(part, minlength=partitions))]
        entries.append(np.stack([keys[order], ids[order]], axis=1))
    for path, array in ((entries_path, np.concatenate(entries or [np.zeros((0, 2), np.uint64)])),
                        (offsets_path, offsets)):
        with open_output(path) as f:
            np.save(f, array)


def band_partition_pairs(unit: tuple[int, int], key_files: Sequence[tuple[WorkPath, WorkPath]],
                         signatures: SignatureParts, threshold: float, n_new: int, max_members: int
                         ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Unit 2: band ``unit[0]``, partition ``unit[1]``, from every key unit's (entries, offsets)
    files. Returns the confirmed pairs and estimates of its buckets of at most ``max_members``
    members, and the member ids (sorted) of each larger one."""
    band, part = unit
    keys, ids = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    for entries, offsets in key_files:
        start, end = npy_rows(offsets, slice(band, band + 1))[0, [part, part + 1]].tolist()
        mine = npy_rows(entries, slice(start, end))
        keys.append(mine[:, 0])
        ids.append(mine[:, 1].astype(np.int64))
    key, gid = np.concatenate(keys), np.concatenate(ids)
    order = np.lexsort((gid, key))  # by bucket, members by id: the order ``band_pairs`` pairs them in
    key, gid = key[order], gid[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[start, len(key)])
    large = [gid[s:s + n] for s, n in zip(start.tolist(), size.tolist(), strict=True) if n > max_members]
    # the other multi-member buckets in blocks: a bucket starting at member c of them goes to block
    # c // max_members, so a block holds fewer than 2 x max_members members
    small = (size >= 2) & (size <= max_members)
    bucket = np.repeat(np.arange(len(size)), size)
    keep = small[bucket]
    members, run_id = gid[keep], bucket[keep]
    sizes = size[small]
    block = np.repeat((np.cumsum(sizes) - sizes) // max_members, sizes)
    bounds = np.flatnonzero(np.r_[True, block[1:] != block[:-1], True]) if len(block) else np.zeros(1, np.int64)
    pairs, estimates = [np.zeros((0, 2), np.int64)], [np.zeros(0, np.float64)]
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        found, jac = _confirm(neighbour_pairs(members[lo:hi], run_id[lo:hi]), signatures, threshold, n_new)
        pairs.append(found)
        estimates.append(jac)
    return np.concatenate(pairs), np.concatenate(estimates), large


def bucket_chunks(members: np.ndarray, max_members: int) -> list[tuple[np.ndarray, int]]:
    """The units 3 of one large bucket: ``(members[s:s + n + MAX_BUCKET_PAIRS], n)`` for each range
    ``[s, s + n)`` of at most ``max_members`` first members."""
    return [(members[s:s + max_members + MAX_BUCKET_PAIRS], min(max_members, len(members) - s))
            for s in range(0, len(members), max_members)]


def bucket_chunk_pairs(unit: tuple[np.ndarray, int], signatures: SignatureParts, threshold: float,
                       n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit 3: the confirmed pairs of one chunk of a large bucket (``bucket_chunks``)."""
    members, first = unit
    return _confirm(neighbour_pairs(members, np.zeros(len(members), np.int64), first), signatures,
                    threshold, n_new)


def _confirm(pairs: np.ndarray, signatures: SignatureParts, threshold: float, n_new: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (not both ``against`` rows, index >= ``n_new``) whose estimate reaches ``threshold``,
    reading only their rows of the signatures."""
    pairs = pairs[pairs[:, 0] < n_new]
    if not len(pairs):
        return pairs, np.zeros(0, dtype=np.float64)
    jac = pair_estimates(signatures, pairs)
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
