"""Sources on the Hugging Face Hub, pinned to a revision: ``{hf: org/name, revision: <commit>, path: data/*.parquet}``
or ``{hf: org/name, revision: ..., config: default, split: train}`` in a source's ``files``.

Files are fetched with ``huggingface_hub`` (the field's client) into its own cache (``HF_HUB_CACHE``, or
``HF_HOME``/hub), and ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` mean what they mean to every Hub
tool; they are read when a recipe is resolved, not when this module is imported. ``materialise`` turns
every Hub entry of a recipe into the cached files' local paths before a build starts, so the stages read
them like any raw file, and returns what the card's provenance records: the revision as written, the
commit it resolved to, and the path, size and sha256 of every file.

What a revision guarantees: a 40-hex commit names fixed bytes on the Hub; a branch or tag can move, so
an unpinned revision is a warning naming the commit it resolved to. The recipe's ``sha256`` (one digest
for one file, or ``{path in repo: digest}``, which ``mixer pin`` writes) is checked against the bytes
that arrived: a file changed under the same revision name is refused as a pin mismatch.

Offline (``HF_HUB_OFFLINE=1``) nothing is asked of the Hub: the commit comes from the cache's ``refs/``,
the file list from the pins (or, without pins, from the cached snapshot, with a warning that the list
could not be confirmed), and each file from the cache, or a message saying which file is missing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixer.core.digest import file_sha256
from mixer.core.errors import MixerError
from mixer.recipe.load import Recipe, Source, SourceFile, allowed

COMMIT = re.compile(r"[0-9a-f]{40}")
DEFAULT_REVISION = "main"
Warn = Callable[[str], None]


class HubUnavailable(MixerError):
    """The Hub cannot be asked (offline, or no connection) and the cache does not have what is needed."""


@dataclass(frozen=True)
class HubFile:
    path: str  #: the file's path in the repo
    local: Path  #: where the Hub's cache holds it
    bytes: int
    sha256: str


@dataclass(frozen=True)
class HubResolution:
    """One ``hf`` entry of a source, resolved: the commit and the files it names."""

    source: str
    repo: str
    revision: str  #: as the recipe wrote it (``main`` when it gave none)
    commit: str
    files: tuple[HubFile, ...]

    def uri(self, f: HubFile) -> str:
        return f"hf://datasets/{self.repo}@{self.commit}/{f.path}"

    def card(self) -> dict[str, Any]:
        """The card's provenance entry: no local path (the card is the same on every machine)."""
        return {"source": self.source, "repo": self.repo, "revision": self.revision, "commit": self.commit,
                "pinned_revision": self.revision == self.commit,
                "files": [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for f in self.files]}


# -- environment, read at call time ---------------------------------------------------------------

def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def _repo_folder(repo: str) -> Path:
    """The cache's folder of a dataset repo (huggingface_hub's documented layout)."""
    return cache_dir() / ("datasets--" + repo.replace("/", "--"))


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


# -- errors -------------------------------------------------------------------------------------

def _hub_error(e: BaseException, what: str, repo: str, revision: str) -> MixerError | None:
    """The user's message for an error of huggingface_hub, or None for one that is a bug."""
    from huggingface_hub import errors as hf

    where = endpoint() or "https://huggingface.co"
    if isinstance(e, hf.RevisionNotFoundError):
        return MixerError(f"{what}: revision {revision!r} does not exist in dataset {repo} on {where} (give a branch, "
                          "a tag or a 40-hex commit of that repo)")
    if isinstance(e, hf.GatedRepoError):
        return MixerError(f"{what}: dataset {repo} is gated: accept its terms on the Hub and set HF_TOKEN")
    if isinstance(e, hf.RepositoryNotFoundError):
        return MixerError(f"{what}: dataset repo {repo} not found on {where} (or private: set HF_TOKEN)")
    if isinstance(e, hf.LocalEntryNotFoundError | hf.OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE is set" if offline() else "the Hub could not be reached"
        return HubUnavailable(f"{what}: {why} and it is not in the Hugging Face cache ({cache_dir()}); run "
                              "`mixer fetch RECIPE` where the Hub can be reached")
    if isinstance(e, hf.EntryNotFoundError):
        return MixerError(f"{what}: no such file in dataset {repo} at revision {revision!r}")
    if isinstance(e, hf.HfHubHTTPError):
        return MixerError(f"{what}: the Hub ({where}) answered: {str(e).splitlines()[0]}")
    module = type(e).__module__.split(".")[0]
    if isinstance(e, OSError | TimeoutError) or module in ("httpx", "httpx2", "requests", "urllib3"):
        return HubUnavailable(f"{what}: cannot reach the Hub at {where} ({type(e).__name__}: {e}); without network, "
                              "set HF_HUB_OFFLINE=1 to use the files in the Hugging Face cache")
    return None


def _call(fn: Callable[[], Any], what: str, repo: str, revision: str) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - re-raised unless it is the user's (see _hub_error)
        message = _hub_error(e, what, repo, revision)
        if message is None:
            raise
        raise message from None


# -- resolving ----------------------------------------------------------------------------------

def resolve_commit(repo: str, revision: str, what: str) -> str:
    """The commit ``revision`` names: itself when it is one, else the Hub's answer (offline: the cache's
    ``refs/``, which every download through a branch or tag wrote)."""
    if COMMIT.fullmatch(revision):
        return revision
    if offline():
        ref = _repo_folder(repo) / "refs" / revision
        if ref.is_file():
            return ref.read_text(encoding="utf-8").strip()
        raise HubUnavailable(f"{what}: HF_HUB_OFFLINE is set and revision {revision!r} of {repo} was never "
                             f"fetched into the Hugging Face cache ({cache_dir()}); run `mixer fetch RECIPE` where the "
                             "Hub can be reached, or pin a commit that is cached")
    info = _call(lambda: _api().dataset_info(repo, revision=revision), what, repo, revision)
    commit = getattr(info, "sha", None)
    if not commit:
        raise MixerError(f"{what}: the Hub's answer for {repo}@{revision} names no commit")
    ref = _repo_folder(repo) / "refs" / revision
    try:  # as huggingface_hub does: a later offline run resolves the same name to the same commit
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit, encoding="utf-8")
    except OSError:
        pass
    return commit


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Hub data-files glob as a regex: ``*`` and ``?`` stay within one folder, ``**`` crosses folders."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                out.append("[" + pattern[i + 1:end].replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _repo_files(repo: str, commit: str, prefix: str, what: str) -> list[str]:
    """Every file path under ``prefix`` (a folder, or the whole repo) at ``commit``."""
    if offline():
        snapshot = _repo_folder(repo) / "snapshots" / commit
        root = snapshot / prefix if prefix else snapshot
        return sorted(str(p.relative_to(snapshot)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    from huggingface_hub.hf_api import RepoFile

    def listing() -> list[str]:
        try:
            entries = _api().list_repo_tree(repo, path_in_repo=prefix or None, recursive=True, revision=commit,
                                            repo_type="dataset")
            return sorted(e.path for e in entries if isinstance(e, RepoFile))
        except Exception as e:
            from huggingface_hub import errors as hf

            if isinstance(e, hf.EntryNotFoundError) and prefix:
                return []  # no such folder: no file matches
            raise

    return _call(listing, what, repo, commit)


def _match(patterns: Iterable[str], repo: str, commit: str, what: str) -> list[str]:
    names: set[str] = set()
    for pattern in patterns:
        if not _is_glob(pattern):
            names.add(pattern)
            continue
        fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
        prefix = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        regex = glob_regex(pattern)
        found = [n for n in _repo_files(repo, commit, prefix, what) if regex.fullmatch(n)]
        if not found and offline():
            raise HubUnavailable(f"{what}: HF_HUB_OFFLINE is set and no file matching {pattern!r} of {repo} at "
                                 f"commit {commit} is in the Hugging Face cache ({cache_dir()}); run `mixer fetch "
                                 "RECIPE` where the Hub can be reached")
        if not found:
            raise MixerError(f"{what}: no file of dataset {repo} at commit {commit} matches {pattern!r}")
        names.update(found)
    return sorted(names)


def _card_patterns(repo: str, commit: str, config: str, split: str, what: str) -> list[str]:
    """The data files the dataset card's ``configs`` metadata lists for ``config``/``split`` (how the
    Hub and ``datasets`` find a config's files)."""
    readme = _download(repo, commit, "README.md", what)
    text = readme.read_text(encoding="utf-8", errors="replace")
    meta: Any = None
    if text.startswith("---"):
        end = text.find("\n---", 3)
        try:
            meta = yaml.safe_load(text[3:end]) if end > 0 else None
        except yaml.YAMLError as e:
            raise MixerError(f"{what}: the dataset card's YAML header does not parse ({e})") from None
    configs = meta.get("configs") if isinstance(meta, dict) else None
    if not isinstance(configs, list):
        raise MixerError(f"{what}: the dataset card of {repo} lists no configs; name the files with path: "
                         "(a file or glob in the repo)")
    names = [c.get("config_name") for c in configs if isinstance(c, dict)]
    chosen = next((c for c in configs if isinstance(c, dict) and c.get("config_name") == config), None)
    if chosen is None:
        raise MixerError(f"{what}: dataset {repo} has no config {config!r}; its configs: {names}")
    data_files = chosen.get("data_files")
    if isinstance(data_files, str | list) and not (isinstance(data_files, list) and data_files
                                                  and isinstance(data_files[0], dict)):
        data_files = [{"split": "train", "path": data_files}]
    splits = {d.get("split"): d.get("path") for d in data_files or [] if isinstance(d, dict)}
    if split not in splits:
        raise MixerError(f"{what}: config {config!r} of dataset {repo} has no split {split!r}; its splits: "
                         f"{sorted(str(s) for s in splits)}")
    path = splits[split]
    return [path] if isinstance(path, str) else [str(p) for p in path or []]


def _download(repo: str, commit: str, name: str, what: str, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download

    local = _call(lambda: hf_hub_download(repo, name, repo_type="dataset", revision=commit,
                                          cache_dir=str(cache_dir()), endpoint=endpoint(),
                                          local_files_only=offline(), force_download=force and not offline()),
                  f"{what}: {name}", repo, commit)
    return Path(local)


def resolve_entry(source: str, f: SourceFile, *, fetch: bool = True, warn: Warn | None = None,
                  force: bool = False) -> HubResolution:
    """Resolve one ``hf`` entry to its commit and files; with ``fetch``, download each file (from the cache
    when it is there), hash it and check it against the recipe's pins. Raises ``MixerError`` naming the
    source and the entry: an unknown repo or revision, a missing file, a pin mismatch, offline without
    the file. ``force`` downloads the files again over the cache's copies (``mixer fetch --force``)."""
    assert f.hf is not None
    repo, revision = f.hf, f.revision or DEFAULT_REVISION
    what = f"source {source!r}, {f.label}"
    commit = resolve_commit(repo, revision, what)
    if warn is not None and commit != revision:
        warn(f"source {source!r}: revision {revision!r} of {repo} is not pinned: it resolved to commit {commit}; "
             f"write revision: {commit} (or run `mixer pin`) so the next build reads the same files")
    pins = dict(f.hub_pins)
    if f.path and not _is_glob(f.path):
        names = [f.path]
    elif offline() and pins and f.path:
        regex = glob_regex(f.path)
        names = sorted(n for n in pins if regex.fullmatch(n))
    elif offline() and pins:
        names = sorted(pins)
    else:
        patterns = [f.path] if f.path else _card_patterns(repo, commit, f.config or "default", f.split or "", what)
        names = _match(patterns, repo, commit, what)
        if offline() and warn is not None:
            warn(f"{what}: offline, so the file list ({len(names)} files) comes from the Hugging Face cache and "
                 "could not be confirmed with the Hub; pin the entry (`mixer pin`) to fix its file list")
    if pins and fetch:
        missing, extra = sorted(set(pins) - set(names)), sorted(set(names) - set(pins))
        if missing or extra:
            raise MixerError(f"{what}: pin mismatch: the files at commit {commit} differ from the pinned list "
                             f"(pinned but absent: {missing or 'none'}; present but not pinned: {extra or 'none'}); "
                             "run `mixer pin` if the change is expected")
    files: list[HubFile] = []
    if fetch:
        for name in names:
            local = _download(repo, commit, name, what, force)
            digest = file_sha256(local)
            expected = pins.get(name)
            if expected is not None and expected != digest:
                raise MixerError(
                    f"{what}: pin mismatch for {name}: the recipe pins sha256 {expected}, the file at revision "
                    f"{revision!r} (commit {commit}) has sha256 {digest}. It changed since it was pinned: if that "
                    "is expected, run `mixer pin` to pin the new bytes; otherwise pin revision: to the commit the "
                    "pins were made at")
            files.append(HubFile(name, local, local.stat().st_size, digest))
    else:
        files = [HubFile(name, Path(), 0, pins.get(name, "")) for name in names]
    return HubResolution(source, repo, revision, commit, tuple(files))


def materialise(recipe: Recipe, warn: Warn | None = None) -> tuple[Recipe, list[HubResolution]]:
    """The recipe with every ``hf`` entry replaced by its files in the Hub's cache (absolute paths), and
    the resolutions for the card. Sources left out by ``allow_licenses`` are not fetched."""
    resolutions: list[HubResolution] = []
    sources: list[Source] = []
    for s in recipe.sources:
        if not any(f.is_hub for f in s.files) or allowed(recipe, s):
            sources.append(s)
            continue
        files: list[SourceFile] = []
        for f in s.files:
            if not f.is_hub:
                files.append(f)
                continue
            r = resolve_entry(s.name, f, warn=warn)
            resolutions.append(r)
            files.extend(SourceFile(str(h.local.absolute())) for h in r.files)
        sources.append(dataclasses.replace(s, files=tuple(files)))
    if not resolutions:
        return recipe, []
    return dataclasses.replace(recipe, sources=tuple(sources)), resolutions


def cached_path(r: HubResolution, f: HubFile) -> Path | None:
    """Where the cache holds a resolved file, if it does (``mixer validate`` probes only those)."""
    path = _repo_folder(r.repo) / "snapshots" / r.commit / f.path
    return path if path.is_file() else None


def hub_file_names(hub_card: Iterable[dict[str, Any]]) -> dict[str, str]:
    """From the card's ``hub`` entries: the tail of each file's path in the Hub's cache
    (``datasets--org--name/snapshots/<commit>/<path>``, the cache's documented layout) -> its name
    ``hf://datasets/org/name@<commit>/<path>``, which the card shows instead of a path of this machine."""
    return {f"datasets--{h['repo'].replace('/', '--')}/snapshots/{h['commit']}/{f['path']}":
            f"hf://datasets/{h['repo']}@{h['commit']}/{f['path']}" for h in hub_card for f in h["files"]}
