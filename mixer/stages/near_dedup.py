"""Stage **near dedup** (corpus-level, recipe ``dedup.near``): MinHash LSH across all sources'
candidates, after exact dedup and before selection, so ``take`` counts hold in the output.

The algorithm is ``mixer.kernels.near`` (pure: signatures, LSH banding, confirmation, clusters) over
``mixer.kernels.shingles``; this stage sends the signing through the executor (one unit = a batch of
candidate row ids and the description of the Arrow files holding them, which the worker reads),
removes the dropped rows through the sink (each with its cluster, kept copy and Jaccard estimate)
and returns the card's section.

Two ways, chosen by the number of signatures (``BAND_UNITS_MIN_ROWS``):

* small builds: the signatures come back to this process, which bands them here;
* large builds, in units from end to end: each signing unit writes its signatures to its own
  ``.npy`` file in the work folder (``sign_rows_to_part``) and returns only its row count, its count
  of rows with shingles and its rows' assistant-text lengths; the LSH units read their rows from those
  parts (``SignatureParts``), and this process reads only the rows of dropped records and their
  keepers. The signature matrix is never in one process.

Both keep each source's signatures in its read-cache entry (``mixer.stages.read_cache``), so a rebuild signs
only rows it has not signed before: in blocks of ``unit_rows`` candidate rows
(``mixer.stages.signature_cache``), one ``.npz`` per block under ``<entry>/near-<settings digest>/``, which the
process that signs a block (this one for small builds, the signing unit for large ones) reads and
writes itself. Blocks rather than one file per source, so that a signing unit on any node reads and
replaces only its own rows and no process ever holds a source's signatures to fill the cache.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from mixer.core.records import Dropped
from mixer.core.tables import SpillFiles
from mixer.core.workstore import WorkPath, make_temp_dir, open_output, remove_tree
from mixer.kernels import near as near_kernel
from mixer.kernels.lsh import (
    SignatureParts,
    band_keys_unit,
    band_partition_pairs,
    bucket_chunk_pairs,
    bucket_chunks,
)
from mixer.kernels.near import (
    NearItem,
    find_near_duplicates,
    key_text,
    load_against,
    signatures_async,
    summarise_near,
)
from mixer.kernels.shingles import EMPTY_HASH, permutations, sign_chunk
from mixer.stages.base import StageContext
from mixer.stages.signature_cache import (
    SignatureBlock,
    SourceSignatures,
    assistant_chars_of,
    block_path,
    signature_cache_folder,
)
from mixer.tokens.cache import report_damage

#: candidate rows per signing unit at most (also bounded by ``mixer.kernels.near.POOL_CHUNK_RECORDS``)
CHUNK_ROWS = 20_000
#: from this many signatures on, LSH banding and confirmation run as units of the executor
#: (``_confirm_in_units``); below it, in this process
BAND_UNITS_MIN_ROWS = 1_000_000
#: signature rows a key unit reads (x num_perm x 4 bytes: 128 MB at 128 permutations)
KEY_RANGE_ROWS = 250_000
#: (bucket key, id) entries of one band per partition, about: each band is cut into
#: ceil(non-empty signatures / PARTITION_KEYS) partitions by bucket key (16 bytes an entry, sorted)
PARTITION_KEYS = 4_000_000
#: a bucket of more members than this is paired and confirmed in chunks of this many members, each a
#: unit of its own; smaller buckets are confirmed together in blocks of fewer than twice this many
MAX_BUCKET_MEMBERS = 100_000


def _confirm_in_units(ctx: StageContext, sig: np.ndarray | SignatureParts, n_new: int,
                      live: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2 and 3 of ``mixer.kernels.near`` as units of the executor, each of bounded memory
    (``mixer.kernels.lsh``), over the signatures' part files in the work folder (an array is first saved
    as one part; ``live``: how many rows have shingles, needed with parts); key units turn ranges of
    ``KEY_RANGE_ROWS`` rows into every band's (bucket key, id) entries split into partitions by key;
    one unit per (band, partition) groups and confirms its buckets; a bucket over
    ``MAX_BUCKET_MEMBERS`` members comes back as its member ids and is confirmed in chunks, one unit
    each. Only confirmed pairs with their estimates come back; their union, made unique, equals the
    pairs ``find_near_duplicates`` would confirm itself, whatever the limits and the order units end
    in. Clustering and the keeper rule stay here, over those edges (16 bytes each)."""
    config = ctx.recipe.dedup.near
    assert config is not None
    bands, rows = config.lsh_params()
    n = len(sig)
    folder = make_temp_dir(ctx.work_dir, "near-lsh-")
    try:
        if isinstance(sig, np.ndarray):
            live = rows_with_shingles(sig)
            path = folder / "signatures.npy"
            with open_output(path) as f:
                np.save(f, sig)
            signatures = SignatureParts((path,), (0, n), config.num_perm)
        else:
            assert live is not None, "signature parts come with their count of rows with shingles"
            signatures = sig
        partitions = max(1, -(-live // PARTITION_KEYS))
        ranges = [(lo, min(n, lo + KEY_RANGE_ROWS), folder / f"keys-{lo:012d}.npy",
                   folder / f"offsets-{lo:012d}.npy") for lo in range(0, n, KEY_RANGE_ROWS)]
        list(ctx.executor.map(partial(band_keys_unit, signatures=signatures, bands=bands, rows=rows,
                                      partitions=partitions), ranges))
        group = partial(band_partition_pairs, key_files=[r[2:] for r in ranges], signatures=signatures,
                        threshold=config.threshold, n_new=n_new, max_members=MAX_BUCKET_MEMBERS)
        found = list(ctx.executor.map(group, [(b, p) for b in range(bands) for p in range(partitions)]))
        chunks = [c for _, _, large in found for members in large for c in bucket_chunks(members, MAX_BUCKET_MEMBERS)]
        chunked = partial(bucket_chunk_pairs, signatures=signatures, threshold=config.threshold, n_new=n_new)
        confirmed = [(pairs, jac) for pairs, jac, _ in found] + list(ctx.executor.map(chunked, chunks))
    finally:
        remove_tree(folder)
    codes = np.concatenate([np.zeros(0, dtype=np.int64)] + [pairs[:, 0] * n + pairs[:, 1] for pairs, _ in confirmed])
    estimates = np.concatenate([np.zeros(0, dtype=np.float64)] + [jac for _, jac in confirmed])
    codes, first = np.unique(codes, return_index=True)
    return np.stack([codes // n, codes % n], axis=1), estimates[first]


def rows_with_shingles(sig: np.ndarray) -> int:
    """Signature rows of texts that had shingles (an empty text signs as all ``EMPTY_HASH`` and is in
    no bucket): what sizes the LSH partitions."""
    return int((~np.all(sig == EMPTY_HASH, axis=1)).sum())


def sign_rows(unit: tuple[SpillFiles, np.ndarray], key: str, ngram: int, num_perm: int, seed: int,
              perms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One unit of signing: the signatures of a batch of candidate rows, which whichever worker runs
    it reads from the candidates' Arrow files in the work folder (the unit is the files' description
    and the row ids, not the texts)."""
    table, rows = unit
    messages = table.take(rows, ["messages"]).column(0).to_pylist()
    return sign_chunk([key_text(m, key) for m in messages], ngram, num_perm, seed, perms)


class PartUnit(NamedTuple):
    """One signing unit of a build in units: candidate ``rows`` of ``table``, all inside the block
    ``[lo, hi)``; ``part``: the work-folder file its signatures go to; ``cached``: the block's file
    in the source's read-cache entry (None without one)."""

    table: SpillFiles
    rows: np.ndarray
    lo: int
    hi: int
    part: WorkPath
    cached: Path | None


class SignedPart(NamedTuple):
    """What a signing unit of a build in units returns: never the signatures. ``count`` rows,
    ``live`` of them with shingles (to size the LSH partitions), ``chars`` each row's assistant-text
    length (for the keeper rule), ``signed`` how many rows it had to sign (the others came from the
    cache), ``damaged`` what was wrong with the cached block it found (None: nothing)."""

    count: int
    live: int
    chars: np.ndarray
    signed: int
    damaged: str | None


def sign_rows_to_part(unit: PartUnit, key: str, ngram: int, num_perm: int, seed: int,
                      perms: tuple[np.ndarray, np.ndarray]) -> SignedPart:
    """One signing unit of a build in units: signs its rows (as ``sign_rows``) and writes the
    signatures to its own ``.npy`` file in the work folder (the unit names it, so a retried unit
    overwrites what a killed attempt left); returns a ``SignedPart``.

    With a cached block, only the rows the block has not signed are read and signed, and the block is
    written back when it gained rows; a new block stores every row's assistant-text length, so its
    unit reads the messages of its whole block once (rows exact dedup took out included)."""
    table, rows, lo, hi, path, cached = unit
    block, damaged = SignatureBlock.load(cached, hi - lo, num_perm) if cached is not None else (None, None)
    if cached is None:  # no cache: sign every row, as a cold build
        column = table.take(rows, ["messages"]).column(0)
        sig = sign_chunk([key_text(m, key) for m in column.to_pylist()], ngram, num_perm, seed, perms)
        chars = np.concatenate([np.zeros(0, dtype=np.int64)] + [assistant_chars_of(c) for c in column.chunks])
        signed = len(rows)
    else:
        if block is None:
            column = table.take(np.arange(lo, hi), ["messages"]).column(0)
            block = SignatureBlock.empty(
                np.concatenate([np.zeros(0, dtype=np.int64)] + [assistant_chars_of(c) for c in column.chunks]),
                num_perm)
            need = rows
            messages = column.take(pa.array(need - lo, pa.int64())).to_pylist()
        else:
            need = rows[~block.has[rows - lo]]
            messages = table.take(need, ["messages"]).column(0).to_pylist() if len(need) else []
        if len(need):
            block.sig[need - lo] = sign_chunk([key_text(m, key) for m in messages], ngram, num_perm, seed, perms)
            block.has[need - lo] = True
            block.save(cached)  # a new or damaged block always has rows to sign
        sig, chars, signed = block.sig[rows - lo], block.chars[rows - lo], len(need)
    with open_output(path) as f:
        np.save(f, sig)
    return SignedPart(len(sig), rows_with_shingles(sig), chars, signed, damaged)


def _add_items(items: list[NearItem], where: list[tuple[str, int]], name: str, rank: int, table: SpillFiles,
               alive: np.ndarray, chars: np.ndarray) -> None:
    """Append the keeper rule's view of a source's candidate rows ``alive`` (``chars``: their
    assistant-text lengths) and where each came from."""
    ids = table.column("id").to_pylist()
    items.extend(NearItem("", rank, int(c), ids[r], name) for r, c in zip(alive.tolist(), chars.tolist(), strict=True))
    where.extend((name, r) for r in alive.tolist())


def near_dedup(ctx: StageContext) -> dict[str, Any]:
    """MinHash LSH near-duplicates across sources; the copy from the source listed first is kept.
    Returns the card's ``near_dedup`` section."""
    config = ctx.recipe.dedup.near
    assert config is not None
    names = [s.name for s in ctx.recipe.sources]
    candidates = ctx.candidates
    total = candidates.count(names)
    against = load_against(config.against, config.key) if config.against else []
    items: list[NearItem] = []  # without their texts: signatures are made batch by batch
    where: list[tuple[str, int]] = []
    task = partial(sign_rows, key=config.key, ngram=config.ngram, num_perm=config.num_perm, seed=config.seed,
                   perms=permutations(config.num_perm, config.seed))
    unit_rows = max(1, min(CHUNK_ROWS, near_kernel.POOL_CHUNK_RECORDS))

    def against_sig() -> np.ndarray:
        return signatures_async([text for _, text, _ in against], config.ngram, config.num_perm, config.seed,
                                ctx.executor, width=config.workers)()

    signed_rows = 0

    def report(path: Path, problem: str) -> None:
        """A damaged signature block: counted as read-cache damage (``timings.json``) and said on the
        console, not in the card (the card of a build is the same with or without the cache)."""
        report_damage("read_cache", path, problem)
        ctx.reporter.warn(f"near dedup: signature cache {path}: {problem}; its rows are signed again")

    if total + len(against) >= BAND_UNITS_MIN_ROWS:
        folder = make_temp_dir(ctx.work_dir, "near-sig-")
        try:
            to_part = partial(sign_rows_to_part, **task.keywords)
            parts: list[WorkPath] = []
            starts, live = [0], 0
            for rank, name, table, alive in candidates.live(names, skip_empty=True):
                cache = signature_cache_folder(ctx.read_entries.get(name), config, unit_rows)
                units = []
                # one unit per block of candidate rows with live rows (a run of ``alive`` in one block)
                block_of = alive // unit_rows
                bounds = np.flatnonzero(np.r_[True, block_of[1:] != block_of[:-1], True])
                for first, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                    lo = int(block_of[first]) * unit_rows
                    units.append(PartUnit(table, alive[first:end], lo, min(table.num_rows, lo + unit_rows),
                                          folder / f"signatures-{len(parts) + len(units):08d}.npy",
                                          block_path(cache, lo) if cache is not None else None))
                chars: list[np.ndarray] = []
                for unit, done in zip(units, ctx.executor.map(to_part, units, local=config.workers == 1),
                                      strict=True):
                    parts.append(unit.part)
                    starts.append(starts[-1] + done.count)
                    live += done.live
                    chars.append(done.chars)
                    signed_rows += done.signed
                    if done.damaged is not None:
                        assert unit.cached is not None
                        report(unit.cached, done.damaged)
                _add_items(items, where, name, rank, table, alive, np.concatenate(chars))
            if against:
                sig = against_sig()  # the against corpus's: its texts are in this process already
                parts.append(folder / "signatures-against.npy")
                with open_output(parts[-1]) as f:
                    np.save(f, sig)
                starts.append(starts[-1] + len(sig))
                live += rows_with_shingles(sig)
                del sig
            signatures = SignatureParts(tuple(parts), tuple(starts), config.num_perm)
            confirmed = _confirm_in_units(ctx, signatures, len(items), live)
            found = find_near_duplicates(items, config, against, signatures_cache=signatures, confirmed=confirmed)
        finally:
            remove_tree(folder)
    else:
        sig = np.empty((total, config.num_perm), dtype=np.uint32)  # items' signatures, in item order
        for rank, name, table, alive in candidates.live(names, skip_empty=True):
            stored = SourceSignatures.load(signature_cache_folder(ctx.read_entries.get(name), config, unit_rows),
                                           config.num_perm, table, unit_rows)
            for path, problem in stored.damaged:
                report(path, problem)
            need = alive[~stored.has[alive]]
            signed_rows += len(need)
            units = [(table, need[i:i + unit_rows]) for i in range(0, len(need), unit_rows)]
            # the assistant text (known without reading the records) is a lower bound of what is signed
            local = config.workers == 1 or int(stored.chars[need].sum()) < near_kernel.POOL_MIN_CHARS
            for (_, rows), signed in zip(units, ctx.executor.map(task, units, local=local), strict=True):
                stored.put(rows, signed)
            stored.save()
            sig[len(items):len(items) + len(alive)] = stored.sig[alive]
            _add_items(items, where, name, rank, table, alive, stored.chars[alive])
            del stored
        if against:
            sig = np.concatenate([sig, against_sig()], axis=0)
        found = find_near_duplicates(items, config, against, signatures_cache=sig)
        del sig
    # how many candidate rows were signed (the rest came from the signature cache): timings.json
    ctx.notes["near_dedup_signed_rows"] = signed_rows
    per_source: dict[str, dict[int, Dropped]] = {}
    for d in found:
        source, row = where[d.index]
        per_source.setdefault(source, {})[row] = Dropped(
            reason="near_duplicate", stage="dedup", kept_id=d.kept_id,
            detail=f"estimated Jaccard {d.jaccard:.3f} with {d.kept_source}/{d.kept_id}",
            extra={"cluster_id": d.cluster_id, "jaccard": d.jaccard, "kept_source": d.kept_source,
                   "cluster_size": d.cluster_size, "link_jaccard": d.link_jaccard})
    for source, rows in per_source.items():
        candidates.remove(source, rows, ctx.sink)

    def text_of(i: int) -> str:
        source, row = where[i]
        return key_text(candidates.tables[source].take([row], ["messages"]).column(0)[0].as_py(), config.key)

    summary = summarise_near(found, items, text_of=text_of)
    summary["config"] = {"key": config.key, "ngram": config.ngram, "num_perm": config.num_perm,
                         "threshold": config.threshold, "bands_rows": list(config.lsh_params()),
                         "against": list(config.against), "against_records": len(against)}
    return summary


class NearDedup:
    """Stage **near_dedup** (recipe ``dedup.near``): its card section is ``near_dedup``."""

    name = "near_dedup"
    label = "near dedup"

    def run(self, ctx: StageContext) -> None:
        ctx.card_sections["near_dedup"] = near_dedup(ctx)
