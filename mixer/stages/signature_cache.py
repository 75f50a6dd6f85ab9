"""The near-dedup signature cache: one source's MinHash signatures, kept in its read-cache entry
(``mixer.stages.read_cache``) so a rebuild signs only rows it has not signed before.

The file format: under ``<entry>/near-<settings digest>/`` (``signature_cache_folder``), one
uncompressed ``.npz`` per block of ``block_rows`` candidate rows (``block_path``, ``SignatureBlock``),
holding the rows' signatures, which rows were signed and every row's assistant-text length (for the
keeper rule). Blocks rather than one file per source, so that a signing unit on any node reads and
replaces only its own rows and no process ever holds a source's signatures to fill the cache.
``SourceSignatures`` is the whole source's view for the builds whose signatures come back to the
driver. The stage that uses it is ``mixer.stages.near_dedup``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from mixer.core.tables import SpillFiles, list_sums
from mixer.recipe.settings import NearDedupSettings

#: the block files' layout; part of the cache folder's name, so another layout is never read
SIGNATURE_CACHE_VERSION = 1


def signature_cache_folder(entry: Path | None, config: NearDedupSettings, block_rows: int) -> Path | None:
    """Where one source's signature blocks live inside its read-cache entry (None: the source did not
    come from the read cache). The entry's key already pins the candidates (the input files, the
    read settings) and mixer's code; the folder's name adds what shapes a signature (the near-dedup
    key, n-gram, permutations, seed) and the block size, so other settings never read these blocks.
    The threshold and the LSH bands are not in it: they do not change a signature."""
    if entry is None:
        return None
    settings = (SIGNATURE_CACHE_VERSION, config.key, config.ngram, config.num_perm, config.seed, block_rows)
    return entry / f"near-{hashlib.sha256(repr(settings).encode()).hexdigest()[:16]}"


def block_path(folder: Path, lo: int) -> Path:
    """The block file of candidate rows from ``lo`` (a multiple of the block size)."""
    return folder / f"rows-{lo:012d}.npz"


@dataclass
class SignatureBlock:
    """The cached signatures of one block of a source's candidate rows ``[lo, lo + len)``: ``sig``
    (rows, num_perm), ``has`` (which rows were signed; the others are zeros) and ``chars`` (every
    row's assistant-text length, for the keeper rule, so a rebuild need not read the messages).

    Stored as an uncompressed ``.npz``: a zip archive has a CRC per array, which ``np.load`` checks as
    it reads, so a truncated or altered block is detected, never trusted; it is written to a temporary
    name and renamed into place, so concurrent builds (or a retried unit) replace a block whole, and
    a block is always some build's complete, correct signatures of the rows it marks signed."""

    sig: np.ndarray
    has: np.ndarray
    chars: np.ndarray

    @classmethod
    def empty(cls, chars: np.ndarray, num_perm: int) -> SignatureBlock:
        """A block with no row signed yet."""
        n = len(chars)
        return cls(np.zeros((n, num_perm), dtype=np.uint32), np.zeros(n, dtype=bool), chars)

    @classmethod
    def load(cls, path: Path, rows: int, num_perm: int) -> tuple[SignatureBlock | None, str | None]:
        """The stored block, or None and why not: no problem when there is none yet, else what is
        wrong with the file (the caller reports it and signs the rows again)."""
        try:
            with np.load(path) as saved:
                block = cls(saved["sig"], saved["has"], saved["chars"])
        except FileNotFoundError:
            return None, None
        except Exception as e:  # noqa: BLE001 - a truncated or mangled archive raises many kinds
            return None, f"unreadable signature block ({type(e).__name__}: {e})"
        if block.sig.shape != (rows, num_perm) or block.sig.dtype != np.uint32 or block.has.shape != (rows,) \
                or block.has.dtype != bool or block.chars.shape != (rows,) or block.chars.dtype != np.int64:
            return None, f"signature block of another shape ({block.sig.shape} {block.sig.dtype}, expected " \
                         f"({rows}, {num_perm}) uint32)"
        return block, None

    def save(self, path: Path) -> None:
        """Write the block under a temporary name, then rename it into place. A full or read-only cache
        costs a re-sign next time, never the build. Only the signature folder is made, never the entry
        above it: an entry another build removed meanwhile (the cache's size limit) is not brought back
        as a folder without a manifest."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, sig=self.sig, has=self.has, chars=self.chars)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


class SourceSignatures:
    """One source's MinHash signatures and assistant-text lengths, per candidate row, for the build
    whose signatures come back to this process (below ``near_dedup.BAND_UNITS_MIN_ROWS``).

    When the source came from the read cache they are loaded from its signature blocks
    (``SignatureBlock``), and the blocks that gain rows are written back, so a rebuild signs only
    rows it has not signed before; ``damaged``: the block files found unreadable (signed again)."""

    def __init__(self, folder: Path | None, block_rows: int, sig: np.ndarray, has: np.ndarray,
                 chars: np.ndarray) -> None:
        self.folder, self.block_rows = folder, block_rows
        self.sig, self.has, self.chars = sig, has, chars
        self.changed: set[int] = set()  #: first rows of the blocks to write back
        self.damaged: list[tuple[Path, str]] = []

    @classmethod
    def load(cls, folder: Path | None, num_perm: int, table: SpillFiles, block_rows: int) -> SourceSignatures:
        n = table.num_rows
        stored = cls(folder, block_rows, np.zeros((n, num_perm), dtype=np.uint32), np.zeros(n, dtype=bool),
                     np.zeros(n, dtype=np.int64))
        missing = list(range(0, n, block_rows))
        if folder is not None:
            missing = []
            for lo in range(0, n, block_rows):
                hi = min(n, lo + block_rows)
                block, problem = SignatureBlock.load(block_path(folder, lo), hi - lo, num_perm)
                if problem is not None:
                    stored.damaged.append((block_path(folder, lo), problem))
                if block is None:
                    missing.append(lo)
                    continue
                stored.sig[lo:hi], stored.has[lo:hi], stored.chars[lo:hi] = block.sig, block.has, block.chars
        if missing:
            chars = assistant_chars_column(table)
            for lo in missing:
                stored.chars[lo:lo + block_rows] = chars[lo:lo + block_rows]
            stored.changed.update(missing)
        return stored

    def put(self, rows: np.ndarray, sig: np.ndarray) -> None:
        self.sig[rows] = sig
        self.has[rows] = True
        self.changed.update((np.unique(rows // self.block_rows) * self.block_rows).tolist())

    def save(self) -> None:
        if self.folder is None:
            return
        for lo in sorted(self.changed):
            hi = lo + self.block_rows
            SignatureBlock(self.sig[lo:hi], self.has[lo:hi], self.chars[lo:hi]).save(block_path(self.folder, lo))
        self.changed.clear()


def assistant_chars_of(messages: Any) -> np.ndarray:
    """Assistant-text characters (code points, as ``mixer.kernels.near.assistant_chars``) of each row
    of an Arrow ``messages`` array, on the Arrow columns."""
    flat = pc.list_flatten(messages)
    assistant = pc.equal(flat.field("role"), "assistant").to_numpy(zero_copy_only=False)
    chars = pc.utf8_length(flat.field("content")).to_numpy(zero_copy_only=False).astype(np.int64)
    return list_sums(messages, chars * assistant)


def assistant_chars_column(table: SpillFiles) -> np.ndarray:
    """``mixer.kernels.near.assistant_chars`` of every row, computed on the Arrow columns (characters
    are code points in both)."""
    parts = [np.zeros(0, dtype=np.int64)]
    for batch in table.iter_batches(["messages"]):
        parts.append(assistant_chars_of(batch.column(0)))
    return np.concatenate(parts)
