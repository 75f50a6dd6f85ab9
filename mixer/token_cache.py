"""A persistent cache of token counts, so rebuilding a mixture while a recipe is tuned does not
re-tokenize the same texts: counting is most of a build's CPU (cl100k: 7-10 MB of text per second
per process).

Counts are keyed by the tokenizer's identity and a 128-bit digest of the exact text, so a hit is the
count the tokenizer would return. The cache lives in ``$MIXER_CACHE_DIR`` (default
``~/.cache/mixer``) under ``tokens/<identity hash>/``, as Parquet files that are only ever added
(one per process that counted something new). ``MIXER_TOKEN_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("key", pa.binary(16)), ("n_tokens", pa.int32())])


def cache_root() -> Path | None:
    """Where caches live, or None when turned off."""
    if os.environ.get("MIXER_TOKEN_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("MIXER_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixer"


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TokenCountCache:
    """Counts known for one tokenizer identity; new counts are written on ``flush``."""

    def __init__(self, root: Path, identity: str) -> None:
        self.dir = root / "tokens" / hashlib.sha256(identity.encode()).hexdigest()[:20]
        self.identity = identity
        self._known: dict[bytes, int] | None = None
        self._new: dict[bytes, int] = {}
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[bytes, int]:
        if self._known is None:
            known: dict[bytes, int] = {}
            for path in sorted(self.dir.glob("counts-*.parquet")):
                try:
                    table = pq.read_table(path, schema=SCHEMA)
                except Exception:  # a damaged cache file costs a recount, never a wrong count
                    continue
                known.update(zip(table.column("key").to_pylist(), table.column("n_tokens").to_pylist(),
                                 strict=True))
            self._known = known
        return self._known

    def lookup(self, keys: Sequence[bytes]) -> list[int | None]:
        known = self._load()
        found = [known.get(k, self._new.get(k)) for k in keys]
        hits = sum(n is not None for n in found)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def add(self, keys: Sequence[bytes], counts: Sequence[int]) -> None:
        self._new.update(zip(keys, counts, strict=True))

    def flush(self) -> None:
        """Write this process's new counts as one more file (atomically: write, then rename)."""
        if not self._new:
            return
        keys = sorted(self._new)
        digest = hashlib.sha256(b"".join(keys)).hexdigest()[:20]
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "IDENTITY").write_text(self.identity + "\n", encoding="utf-8")
            tmp = self.dir / f".counts-{digest}-{os.getpid()}.tmp"
            pq.write_table(pa.table({"key": pa.array(keys, pa.binary(16)),
                                     "n_tokens": pa.array([self._new[k] for k in keys], pa.int32())},
                                    schema=SCHEMA), tmp, compression="zstd")
            os.replace(tmp, self.dir / f"counts-{digest}.parquet")
        except OSError:
            return  # a read-only or full disk must not fail a build that already has its counts
        if self._known is not None:
            self._known.update(self._new)
        self._new = {}
