"""A persistent cache of token counts, so rebuilding a mixture while a recipe is tuned does not
re-tokenize the same texts: counting is most of a build's CPU (cl100k: 7-10 MB of text per second
per process).

Counts are keyed by the tokenizer's identity and a 128-bit digest of the exact text, so a hit is the
count the tokenizer would return. The cache lives in ``$MIXER_CACHE_DIR`` (default
``~/.cache/mixer``) under ``tokens/<identity hash>/``, as Parquet files that are only ever added
(one per process that counted something new). ``MIXER_TOKEN_CACHE=0`` turns it off.

A cache is verified, never trusted: each file is named after the sha256 of its bytes and carries
the tokenizer identity in its schema metadata, so a truncated, bit-flipped or foreign file (copied
from another tokenizer's folder) is detected before it is used, removed, reported
(``report_damage``: the build counts it in ``timings.json``) and its counts recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.digest import file_sha256
from mixer.core.outdir import unwritable

SCHEMA = pa.schema([("key", pa.binary(16)), ("n_tokens", pa.int32())])
#: ``counts-<first 32 hex digits of the file's sha256>.parquet``
COUNTS_PREFIX = "counts-"
CHECKSUM_HEX = 32

#: damaged cache entries this process found and removed, by cache kind
damaged: Counter[str] = Counter()
#: a build sets this to a file every process appends its damage reports to (workers inherit it)
DAMAGE_LOG_ENV = "MIXER_CACHE_DAMAGE_LOG"


def report_damage(kind: str, path: Path, problem: str) -> None:
    """Count a damaged cache entry that was removed (``kind``: ``token_cache``, ``read_cache``, ...).

    Worker processes find damage too, so besides this process's ``damaged`` counter the report is
    appended, one JSON line, to the file named by ``$MIXER_CACHE_DAMAGE_LOG`` when a build set it.
    """
    damaged[kind] += 1
    log = os.environ.get(DAMAGE_LOG_ENV)
    if not log:
        return
    line = json.dumps({"kind": kind, "path": str(path), "problem": problem}) + "\n"
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one short O_APPEND write: lines of processes never interleave
        finally:
            os.close(fd)
    except OSError:
        pass


@contextmanager
def damage_log(folder: Path | None = None) -> Iterator[str]:
    """For one build: a file that this process and its workers report damaged entries to (read it
    with ``damage_counts``); removed when the block ends. ``folder``: the build's work folder, so that
    a build killed with SIGKILL leaves it there with the rest of its work, not loose in /tmp."""
    fd, path = tempfile.mkstemp(prefix="cache-damage-", suffix=".jsonl", dir=folder)
    os.close(fd)
    previous = os.environ.get(DAMAGE_LOG_ENV)
    os.environ[DAMAGE_LOG_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(DAMAGE_LOG_ENV, None)
        else:
            os.environ[DAMAGE_LOG_ENV] = previous
        os.unlink(path)


def damage_counts(log: str | None = None) -> dict[str, int]:
    """The damage reported so far to the current build's log (``damage_log``), per kind."""
    log = log or os.environ.get(DAMAGE_LOG_ENV)
    counts: dict[str, int] = {}
    if not log or not os.path.exists(log):
        return counts
    with open(log, encoding="utf-8") as f:
        for line in f:
            kind = json.loads(line)["kind"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def cache_root() -> Path | None:
    """Where caches live, or None when turned off."""
    if os.environ.get("MIXER_TOKEN_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("MIXER_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixer"


def unwritable_cache() -> str | None:
    """Why the cache folder cannot be written (read-only, a file in its path, no permission), or None
    when it can or the caches are off. A build then runs without its caches instead of failing."""
    root = cache_root()
    if root is None:
        return None
    problem = unwritable(root, create=True)
    return None if problem is None else f"the cache folder {root} cannot be written ({problem})"


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
            for path in sorted(self.dir.glob(f"{COUNTS_PREFIX}*.parquet")):
                table, problem = load_counts_file(path, self.identity)
                if table is None:
                    if problem is not None:  # a damaged file costs a recount, never a wrong count
                        report_damage("token_cache", path, problem)
                    path.unlink(missing_ok=True)
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
        tmp = self.dir / f".counts-{os.getpid()}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            identity_file = self.dir / "IDENTITY"
            if not identity_file.exists():  # for people looking into the folder; never read back
                identity_file.write_text(self.identity + "\n", encoding="utf-8")
            schema = SCHEMA.with_metadata({"identity": self.identity})
            pq.write_table(pa.table({"key": pa.array(keys, pa.binary(16)),
                                     "n_tokens": pa.array([self._new[k] for k in keys], pa.int32())},
                                    schema=schema), tmp, compression="zstd")
            digest = file_sha256(tmp)[:CHECKSUM_HEX]
            os.replace(tmp, self.dir / f"{COUNTS_PREFIX}{digest}.parquet")
        except OSError:
            tmp.unlink(missing_ok=True)
            return  # a read-only or full disk must not fail a build that already has its counts
        if self._known is not None:
            self._known.update(self._new)
        self._new = {}



def load_counts_file(path: Path, identity: str) -> tuple[pa.Table | None, str | None]:
    """One counts file, verified: ``(table, None)``, or ``(None, problem)`` when it is damaged or
    foreign, or ``(None, None)`` for a file of an older mixer (unchecked names: quietly dropped)."""
    checksum = path.name[len(COUNTS_PREFIX):-len(".parquet")]
    if len(checksum) != CHECKSUM_HEX:
        return None, None
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"unreadable: {e.strerror}"
    if hashlib.sha256(data).hexdigest()[:CHECKSUM_HEX] != checksum:
        return None, "checksum mismatch (truncated or altered)"
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # noqa: BLE001 - any parse failure of a checksummed file: not our file
        return None, f"not a counts file: {e}"
    meta = table.schema.metadata or {}
    if meta.get(b"identity", b"").decode(errors="replace") != identity:
        return None, "foreign entry (counts of another tokenizer)"
    if not table.schema.remove_metadata().equals(SCHEMA):
        return None, f"foreign entry (schema {table.schema.remove_metadata()})"
    return table, None


def verify_counts_dir(folder: Path) -> list[tuple[Path, str]]:
    """Problems of every counts file in one tokenizer's folder (for tests and audits)."""
    identity_file = folder / "IDENTITY"
    identity = identity_file.read_text(encoding="utf-8").strip() if identity_file.exists() else ""
    problems = []
    for path in sorted(folder.glob(f"{COUNTS_PREFIX}*.parquet")):
        _, problem = load_counts_file(path, identity)
        if problem is not None:
            problems.append((path, problem))
    return problems
