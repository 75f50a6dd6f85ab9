"""A persistent cache of the read stage: per source, the candidate records (read, converted,
normalised, filtered, hashed, and token-counted where the source is ``take: all``) and what reading
them decided (counts, drops).

Rebuilding a mixture while a recipe is tuned (takes, seeds, max_tokens, adding or removing sources,
dedup and decontamination settings) repeats the read stage exactly; at full Tulu V2 size it is most
of a rebuild. An entry is reused only when everything the read depends on is the same:

* the path and bytes of every input file (sha256, the same digests the card records),
* the source's name, adapter, adapter options and ``on_error``,
* the normalise rules and filters as they apply to this source, and whether they ran at all
  (``order: sample_then_filter`` reads without them),
* the tokenizer, when tokens were counted while reading,
* for a preference recipe, exact dedup's key of a pair (``dedup.exact.preference_key``), which the
  candidates' hash column is made from,
* the mixer code itself (a digest of the package's source files, so an upgrade or a local edit
  never reuses a read made by other code),
* the source's seed and the tokenizer, but only for adapters that used them (an entry remembers
  whether the adapter drew from ``SourceContext.rng_for`` or counted tokens), so changing the
  recipe seed re-reads only the Alpaca-style sources whose prompt templates depend on it.

Entries live under ``$MIXER_CACHE_DIR/reads/<key>/`` (default ``~/.cache/mixer``), are written to a
staging folder and renamed into place, and the least recently used are removed once the cache holds
more than ``$MIXER_READ_CACHE_GB`` (default 20) GiB. ``MIXER_READ_CACHE=0`` (``mixer build
--no-read-cache``) turns it off. Outputs are byte-identical with and without it.

Entries are verified, never trusted: ``MANIFEST.json``, written last, holds the size and sha256 of
every file of the entry, the entry's key and a digest of itself. Before an entry is used (and before
its pickle is loaded) every file is checked against it; a truncated, bit-flipped or foreign entry (a
folder copied under another key) is removed, reported (``token_cache.report_damage``, counted in
``timings.json``) and the source read again. Near-dedup keeps its MinHash signatures inside the
entry too, in blocks of rows (``near-<settings>/rows-*.npz``, ``mixer.stages.signature_cache.SignatureBlock``),
which the process that signs a block reads and writes while the build runs, so they are not in the
manifest: each is a zip archive with a CRC per array, checked as it is read; one that fails is
reported the same way and its rows signed again. Removing an entry removes its signatures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixer.core.digest import file_sha256
from mixer.tokens.cache import cache_root, report_damage

if TYPE_CHECKING:
    from mixer.core.stats import FileInfo, SourceRead
    from mixer.recipe.load import Recipe, Source

ENTRY_VERSION = 5  # 4: candidate messages carry the nullable per-message `train` flag; 5: drops in Arrow files
MANIFEST = "MANIFEST.json"
#: staging folders older than this are leftovers (a build writes its own within minutes)
STALE_STAGING_S = 24 * 3600


def read_cache_root() -> Path | None:
    """Where read-stage entries live, or None when the cache is turned off."""
    if os.environ.get("MIXER_READ_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    root = cache_root()
    return root / "reads" if root is not None else None


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of mixer's own source files (the trainer excluded): reads made by other code are
    never reused, even between two commits that share a version number."""
    package = Path(__file__).resolve().parents[1]  # mixer/, this file is mixer/stages/read_cache.py
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("train/"):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """A dataclass (options, rules) as a dict for the JSON key; anything else as it is."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def read_key(recipe: Recipe, source: Source, files: list[FileInfo], *, gate: bool, count_tokens: bool) -> str:
    """The cache key of one source's read (the seed and tokenizer are checked per entry, see module)."""
    lm = recipe.filters.llm_mentions
    parts = {
        "entry_version": ENTRY_VERSION,
        "code": code_fingerprint(),
        "source": source.name,
        "adapter": source.adapter,
        "options": _plain(source.options),
        "on_error": source.on_error,
        # paths too: the card and the drops' details name the files a read came from
        "files": [(f.path, f.sha256) for f in files],
        "gate": {
            "normalise": _plain(recipe.normalise),
            "llm_mentions": _plain(lm) if lm.enabled and source.name not in lm.exempt else None,
            "min_turns": recipe.filters.min_turns,
            "max_turns": recipe.filters.max_turns,
        } if gate else None,
        "count_tokens": recipe.tokenizer if count_tokens else None,
        # the candidates' exact-dedup hash of a preference pair depends on it
        "preference_key": recipe.dedup.exact.preference_key if recipe.kind == "preference" else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:32]


class ReadCache:
    """Entries of the read stage: ``<root>/<key>/`` holding the candidate files and ``read.pkl``.

    ``read.pkl`` is a pickle of the ``SourceRead`` (counts; its drops are Arrow files beside the candidates);
    like any cache under the user's own home folder it is trusted as much as that folder.
    """

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("MIXER_READ_CACHE_GB", "20")) * 2**30)
        self.max_bytes = max_bytes
        self.hits: list[str] = []
        self.misses: list[str] = []

    def get(self, key: str, source: str, *, seed: int, tokenizer: str) -> SourceRead | None:
        entry = self.root / key
        if entry.is_dir():
            problem = verify_entry(entry)
            if problem is not None:
                self._remove_damaged(entry, problem)
        try:
            with open(entry / "read.pkl", "rb") as f:
                saved = pickle.load(f)
            if saved["version"] != ENTRY_VERSION:
                raise ValueError("old entry")
            if "seed" in saved["used"] and saved["seed"] != seed:
                raise KeyError("seeded adapter, other seed")
            if "tokenizer" in saved["used"] and saved["tokenizer"] != tokenizer:
                raise KeyError("adapter counted tokens with another tokenizer")
            result: SourceRead = saved["result"]
            result.candidates = [entry / name for name in saved["candidates"]]
            result.drops = [entry / name for name in saved["drops"]]
            missing = [p for p in [*result.candidates, *result.drops] if not p.exists()]
            if missing:
                raise FileNotFoundError(missing[0])
        except (OSError, EOFError, KeyError, ValueError, TypeError, AttributeError, pickle.UnpicklingError):
            self.misses.append(source)
            return None
        now = time.time()
        os.utime(entry, (now, now))  # least recently used goes first
        self.hits.append(source)
        return result

    def staging(self, key: str) -> Path:
        """A fresh folder the read tasks write their candidate files into."""
        path = self.root / f".staging-{key}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def put(self, key: str, staging: Path, result: SourceRead, *, seed: int, tokenizer: str,
            used: set[str]) -> SourceRead:
        """Move a finished read into the cache; returns it pointing at the cached candidates."""
        final = self.root / key
        candidates, drops = result.candidates, result.drops
        names = [p.relative_to(staging).as_posix() for p in candidates]
        drop_names = [p.relative_to(staging).as_posix() for p in drops]
        result.candidates, result.drops = [], []
        with open(staging / "read.pkl", "wb") as f:
            pickle.dump({"version": ENTRY_VERSION, "used": sorted(used), "seed": seed, "tokenizer": tokenizer,
                         "candidates": names, "drops": drop_names, "result": result}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        write_manifest(staging, key, ["read.pkl", *names, *drop_names])
        try:
            os.replace(staging, final)
        except OSError:  # another build stored the same entry first: use ours from staging
            result.candidates, result.drops = candidates, drops
            self._prune(keep=final)
            return result
        result.candidates = [final / name for name in names]
        result.drops = [final / name for name in drop_names]
        self._prune(keep=final)
        return result

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def _remove_damaged(self, entry: Path, problem: str) -> None:
        """Take a damaged entry out of sight at once (a rename), then delete it."""
        report_damage("read_cache", entry, problem)
        trash = self.root / f".trash-{entry.name}-{os.getpid()}"
        try:
            os.replace(entry, trash)
        except OSError:
            return  # another build removed it first
        shutil.rmtree(trash, ignore_errors=True)

    def _prune(self, keep: Path) -> None:
        """Remove stale leftovers, then least recently used entries beyond ``max_bytes``. Other builds
        sharing the cache rename and remove folders meanwhile: a folder that vanishes is skipped."""
        entries = []
        stale = time.time() - STALE_STAGING_S
        for entry in self.root.iterdir():
            try:
                if entry.name.startswith((".staging-", ".trash-")) and entry.stat().st_mtime < stale:
                    shutil.rmtree(entry, ignore_errors=True)  # left by a build that crashed or lost a race
                    continue
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                # the near-dedup signature blocks in the entry's sub-folders count too
                size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
                entries.append((entry.stat().st_mtime, size, entry))
            except FileNotFoundError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= self.max_bytes:
                break
            if entry == keep:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            total -= size



def _manifest_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(entry: Path, key: str, names: list[str]) -> None:
    """Write ``MANIFEST.json``: the size and sha256 of each named file, the key, and its own digest.
    Written last, so an entry without a valid manifest is incomplete."""
    digests = [file_sha256(entry / n) for n in names]
    body = {"version": ENTRY_VERSION, "key": key,
            "files": {n: {"bytes": (entry / n).stat().st_size, "sha256": d} for n, d in zip(names, digests,
                                                                                            strict=True)}}
    tmp = entry / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({**body, "digest": _manifest_digest(body)}, sort_keys=True), encoding="utf-8")
    os.replace(tmp, entry / MANIFEST)


def verify_entry(entry: Path) -> str | None:
    """Why the read-cache entry folder cannot be trusted, or None when every file matches its manifest."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        body = {"version": manifest["version"], "key": manifest["key"], "files": files}
        if manifest["digest"] != _manifest_digest(body):
            return "manifest digest mismatch (altered)"
    except FileNotFoundError:
        return "no manifest (incomplete or written by an older mixer)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest: {e}"
    if body["version"] != ENTRY_VERSION:
        return f"entry version {body['version']}, expected {ENTRY_VERSION}"
    if body["key"] != entry.name:
        return f"foreign entry (made for key {body['key']})"
    if not isinstance(files, dict) or "read.pkl" not in files:
        return "manifest lists no read.pkl"

    def check(item: tuple[str, Any]) -> str | None:
        name, want = item
        path = entry / name
        try:
            if path.stat().st_size != want["bytes"]:
                return f"{name}: {path.stat().st_size} bytes, expected {want['bytes']} (truncated?)"
            if file_sha256(path) != want["sha256"]:
                return f"{name}: checksum mismatch (altered)"
        except OSError as e:
            return f"{name}: {e.strerror or e}"
        except (KeyError, TypeError):
            return f"{name}: malformed manifest record"
        return None

    problems = [p for p in map(check, sorted(files.items())) if p is not None]
    return problems[0] if problems else None
