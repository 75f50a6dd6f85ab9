"""Recipes: YAML parsed once, at the edge, into typed objects.

Every key is checked: an unknown key, a wrong type, an unknown adapter or a missing file is a
``RecipeError`` naming the key path (``sources[3].take``) and listing the valid choices. The rest of
the code never sees raw dicts.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixer.core.errors import RecipeError, did_you_mean
from mixer.core.yamlio import read_yaml_file
from mixer.recipe.budget import (
    BudgetSettings,
    FirstTake,
    TokenTake,
    apply_budget,
    check_token_takes,
    parse_budget,
    parse_take,
)
from mixer.recipe.coerce import parse_dataclass
from mixer.recipe.settings import (
    DecontaminationSettings,
    DedupSettings,
    FilterSettings,
    NormaliseSettings,
)
from mixer.sources import get_adapter


@dataclass(frozen=True)
class SourceFile:
    """A raw file (or glob) under ``raw_dir``, or with ``hf`` files of a Hugging Face dataset repo
    (``mixer.recipe.hub``): ``path`` is then a file or glob inside the repo, or empty when the
    dataset card's ``config``/``split`` names the files."""

    path: str
    url: str | None = None
    #: the file's sha256 (``mixer pin`` writes it): a build or fetch refuses a file that differs
    sha256: str | None = None
    #: a Hub dataset repo (``org/name``) the files come from, at ``revision`` (branch, tag or commit)
    hf: str | None = None
    revision: str | None = None
    config: str | None = None
    split: str | None = None
    #: Hub files only: (path in the repo, sha256) of every file the entry resolved to when pinned
    hub_pins: tuple[tuple[str, str], ...] = ()

    @property
    def is_hub(self) -> bool:
        return self.hf is not None

    @property
    def label(self) -> str:
        """How messages name the entry: the path, or ``hf://datasets/org/name@revision/path``."""
        if not self.is_hub:
            return self.path
        what = self.path or f"config {self.config or 'default'}, split {self.split}"
        return f"hf://datasets/{self.hf}@{self.revision or 'main'}/{what}" if self.path else \
            f"hf://datasets/{self.hf}@{self.revision or 'main'} ({what})"


@dataclass(frozen=True)
class Source:
    name: str
    adapter: str
    files: tuple[SourceFile, ...]
    #: "all", a count, or a fraction of the records left after filtering and dedup; ``{tokens: N}``
    #: (or a budget share) is a ``TokenTake``, ``{first: N}`` a ``FirstTake``
    take: int | float | Literal["all"] | TokenTake | FirstTake = "all"
    #: apply ``take`` to each file separately (CoT: 25k from the zero-shot and 25k from the few-shot file)
    take_per_file: bool = False
    repeat: int = 1
    license: str | None = None
    on_error: Literal["raise", "skip"] = "raise"
    options: Any = None


@dataclass(frozen=True)
class Output:
    #: a new shard starts once a shard holds this many bytes of text
    shard_max_bytes: int = 500_000_000
    row_group_rows: int = 10_000
    #: write records not chosen by sampling to dropped/ as ids (reason not_sampled)
    write_unsampled: bool = True


@dataclass(frozen=True)
class Recipe:
    name: str
    sources: tuple[Source, ...]
    seed: int = 42
    raw_dir: str = "data/raw_train"
    #: default ``out/<name>`` (set by ``parse_recipe``): two recipes without ``output:`` never share a folder
    output: str = ""
    tokenizer: str = "tiktoken:cl100k_base"
    max_tokens: int | None = None
    #: open-instruct samples raw records first and filters afterwards; mixer filters first so that
    #: ``take`` counts hold in the output
    order: Literal["filter_then_sample", "sample_then_filter"] = "filter_then_sample"
    allow_licenses: tuple[str, ...] | None = None
    description: str = ""
    #: sft: conversations (``messages``); preference: pairs for DPO (``prompt``/``chosen``/``rejected``)
    kind: Literal["sft", "preference"] = "sft"
    normalise: NormaliseSettings = field(default_factory=NormaliseSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    decontaminate: DecontaminationSettings | None = None
    output_options: Output = field(default_factory=Output)
    #: a total of tokens split among sources by share (``mixer.recipe.budget``); resolved into the
    #: sources' ``take`` when the recipe is parsed
    budget: BudgetSettings | None = None
    #: set by load_recipe: the recipe file and the hash of its text, for provenance
    path: str = ""
    sha256: str = ""

    def source_seed(self, source: str) -> int:
        """Each source's own seed: adding or reordering sources never changes another's sample."""
        digest = hashlib.sha256(f"{self.seed}:{source}".encode()).digest()
        return int.from_bytes(digest[:8], "big")


# -- recipe-specific parsing ----------------------------------------------------------------

def _parse_files(value: Any, where: str) -> tuple[SourceFile, ...]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RecipeError(f"{where}: expected a file path or a non-empty list of file paths")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(SourceFile(item))
        elif isinstance(item, dict) and "hf" in item:
            out.append(_parse_hub_file(item, f"{where}[{i}]"))
        else:
            if isinstance(item, dict):
                _check_keys(item, _LOCAL_FILE_KEYS, f"{where}[{i}]",
                            "(revision, config and split go with hf: org/name)")
            f = parse_dataclass(SourceFile, item, f"{where}[{i}]")
            if f.sha256 is not None:
                if len(f.sha256) != 64 or not all(c in "0123456789abcdef" for c in f.sha256):
                    raise RecipeError(f"{where}[{i}].sha256: expected 64 lowercase hex digits, found {f.sha256!r}")
                if any(ch in f.path for ch in "*?["):
                    raise RecipeError(f"{where}[{i}].sha256: a pin names one file; {f.path!r} is a glob")
            out.append(f)
    return tuple(out)


_LOCAL_FILE_KEYS = ("path", "url", "sha256")
_HUB_FILE_KEYS = ("hf", "revision", "path", "config", "split", "sha256")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_keys(item: dict, valid: tuple[str, ...], where: str, note: str = "") -> None:
    unknown = [k for k in item if k not in valid]
    if unknown:
        named = ", ".join(f"{k!r}{did_you_mean(str(k), valid)}" for k in unknown)
        raise RecipeError(f"{where}: unknown key(s) {named}; valid keys: {', '.join(valid)}"
                          + (f" {note}" if note else ""))


def _parse_hub_file(item: dict, where: str) -> SourceFile:
    """``{hf: org/name, revision: ..., path: data/*.parquet}`` or ``{hf: ..., config: ..., split: ...}``.

    ``sha256`` pins the files: one digest for a single ``path``, else a mapping of each file's path
    in the repo to its digest (what ``mixer pin`` writes)."""
    _check_keys(item, _HUB_FILE_KEYS, where)
    for key in ("hf", "revision", "path", "config", "split"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise RecipeError(f"{where}.{key}: expected a non-empty string, found {value!r}")
    repo = item["hf"]
    if repo.count("/") != 1 or repo.startswith("/") or repo.endswith("/"):
        raise RecipeError(f"{where}.hf: expected a dataset repo as org/name, found {repo!r}")
    path, split, config = item.get("path"), item.get("split"), item.get("config")
    if path is None and split is None:
        raise RecipeError(f"{where}: a hf source file needs path: (a file or glob in the repo, e.g. "
                          f"data/*.parquet) or split: (with config:, the files the dataset card lists)")
    if path is not None and (split is not None or config is not None):
        raise RecipeError(f"{where}: give path: or config:/split:, not both")
    pins: tuple[tuple[str, str], ...] = ()
    sha = item.get("sha256")
    if isinstance(sha, str):
        if path is None or any(ch in path for ch in "*?["):
            raise RecipeError(f"{where}.sha256: one digest pins one file; this entry names several, so pin "
                              "each: sha256: {path/in/repo: digest, ...} (`mixer pin` writes it)")
        pins = ((path, sha),)
    elif isinstance(sha, dict):
        pins = tuple(sorted((str(k), v) for k, v in sha.items()))
    elif sha is not None:
        raise RecipeError(f"{where}.sha256: expected a digest or a mapping of file to digest, found {sha!r}")
    for name, digest in pins:
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise RecipeError(f"{where}.sha256[{name}]: expected 64 lowercase hex digits, found {digest!r}")
    return SourceFile(path=path or "", hf=repo, revision=item.get("revision"), config=config, split=split,
                      hub_pins=pins)


def _parse_source(data: Any, index: int) -> Source:
    where = f"sources[{index}]"
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping with name, adapter, files, ...")
    name = data.get("name")
    if isinstance(name, str):
        where = f"sources[{index}] ({name})"
    data = dict(data)
    files_raw = data.pop("files", None)
    options_raw = data.pop("options", None)
    if "adapter" not in data and isinstance(name, str):
        data["adapter"] = name
    take = parse_take(data.get("take"), where)
    if isinstance(take, (TokenTake, FirstTake)):
        del data["take"]
    elif "take" in data:
        data["take"] = take
    # the keys first: `file:` for `files:` is a typo to name, not a missing list of files
    source = parse_dataclass(Source, {**data, "files": []}, where)
    if isinstance(take, (TokenTake, FirstTake)):
        source = dataclasses.replace(source, take=take)
    files = _parse_files(files_raw, f"{where}.files")
    if isinstance(source.take, (int, float)) and not isinstance(source.take, bool):
        if isinstance(source.take, float) and not 0 < source.take <= 1:
            raise RecipeError(f"{where}.take: a fraction must be in (0, 1], found {source.take}")
        if isinstance(source.take, int) and source.take < 0:
            raise RecipeError(f"{where}.take: must be >= 0, found {source.take}")
    if source.repeat < 1:
        raise RecipeError(f"{where}.repeat: must be >= 1, found {source.repeat}")
    try:
        adapter = get_adapter(source.adapter)
    except RecipeError as e:
        raise RecipeError(f"{where}.adapter: {e}") from None
    options = parse_dataclass(adapter.Options, options_raw, f"{where}.options")
    return dataclasses.replace(source, files=files, options=options)


def parse_recipe(data: Any, *, path: str = "", text: str = "") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{path or 'recipe'}: expected a YAML mapping at the top level")
    data = dict(data)
    if "output_options" not in data and isinstance(data.get("output"), dict):
        data["output_options"] = data.pop("output")
    sources_raw = data.pop("sources", None)
    if not isinstance(sources_raw, list) or not sources_raw:
        raise RecipeError(f"{path or 'recipe'}: 'sources' must be a non-empty list of sources")
    sources = tuple(_parse_source(s, i) for i, s in enumerate(sources_raw))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RecipeError(f"sources: duplicate source name(s) {dupes}; each source needs its own name")
    if "name" not in data:
        data["name"] = Path(path).stem if path else "mixture"
    if "output" not in data and isinstance(data["name"], str):
        # one folder per recipe: a shared default would let one recipe's build replace another's
        data["output"] = f"out/{data['name']}"
    dedup = data.get("dedup")
    if isinstance(dedup, dict) and isinstance(dedup.get("exact"), bool):  # exact: true | false
        data["dedup"] = {**dedup, "exact": {"enabled": dedup["exact"]}}
    budget = parse_budget(data.pop("budget", None))
    recipe = parse_dataclass(Recipe, {**data, "sources": []}, "")
    check_token_takes(sources, recipe.order)
    if budget is not None:
        takes = apply_budget(budget, sources, recipe.order)
        sources = tuple(dataclasses.replace(s, take=takes[s.name]) if s.name in takes else s for s in sources)
        recipe = dataclasses.replace(recipe, budget=budget)
    for i, s in enumerate(sources):
        adapter_kind = get_adapter(s.adapter).kind
        if adapter_kind != recipe.kind:
            raise RecipeError(f"sources[{i}] ({s.name}).adapter: {s.adapter!r} yields {adapter_kind} records but "
                              f"the recipe's kind is {recipe.kind!r}; set kind: {adapter_kind} or use a "
                              f"{recipe.kind} adapter")
    _check_bounds(recipe)
    _check_cross_source(recipe)
    digest = hashlib.sha256(text.encode()).hexdigest() if text else ""
    return dataclasses.replace(recipe, sources=sources, path=path, sha256=digest)


def load_recipe(path: str | Path, *, raw_dir: str | None = None, output: str | None = None,
                seed: int | None = None) -> Recipe:
    """Read and validate a recipe file; command-line overrides win over the file's values."""
    p = Path(path)
    if not p.exists():
        raise RecipeError(f"{p}: recipe file not found")
    if not p.is_file():
        raise RecipeError(f"{p}: is a folder, not a recipe file; give the recipe's YAML file")
    text, data = read_yaml_file(p, error=RecipeError)
    try:
        recipe = parse_recipe(data, path=str(p), text=text)
    except RecipeError as e:  # every message names the recipe file, then the key path inside it
        if str(e).startswith(str(p)):
            raise
        raise RecipeError(f"{p}: {e}") from None
    changes: dict[str, Any] = {}
    if raw_dir is not None:
        changes["raw_dir"] = raw_dir
    if output is not None:
        changes["output"] = output
    if seed is not None:
        changes["seed"] = seed
    return dataclasses.replace(recipe, **changes) if changes else recipe


def resolve_files(recipe: Recipe, source: Source) -> list[Path]:
    """The source's files under ``raw_dir``, globs expanded and sorted; missing files are errors."""
    base = Path(recipe.raw_dir)
    out: list[Path] = []
    for f in source.files:
        if f.is_hub:
            raise RecipeError(f"source {source.name!r}: {f.label} is on the Hugging Face Hub; `mixer build` and "
                              "`mixer fetch` download it (mixer.recipe.hub.materialise)")
        pattern = f.path if Path(f.path).is_absolute() else str(base / f.path)
        if any(ch in f.path for ch in "*?["):
            # a folder that matches the pattern holds no records of its own: only files count
            matches = sorted(Path(m) for m in glob.glob(pattern) if not Path(m).is_dir())
            if not matches:
                raise RecipeError(f"source {source.name!r}: no file matches {pattern!r}{relative_raw_dir_hint(base)}")
            out.extend(matches)
        else:
            p = Path(pattern)
            if not p.exists():
                hint = f" (run `mixer fetch` to download it from {f.url})" if f.url else ""
                raise RecipeError(f"source {source.name!r}: file not found: {p}{hint}{relative_raw_dir_hint(base)}")
            if p.is_dir():
                raise RecipeError(f"source {source.name!r}: {p} is a folder, not a file: name the files in it "
                                  f"(or a glob such as {str(Path(f.path) / '*.jsonl')!r})")
            out.append(p)
    return out


def relative_raw_dir_hint(base: Path) -> str:
    """Why every file of a recipe may be missing at once: a relative ``raw_dir`` is read from the folder mixer
    runs in, not the recipe's folder (``cd recipes && mixer build v2-sample.yaml`` finds no
    ``samples/raw_train``). Said only when that folder does not exist from here."""
    if base.is_absolute() or base.exists():
        return ""
    return (f"; raw_dir {str(base)!r} is relative to the folder mixer runs in ({Path.cwd()}), which has no such "
            "folder: run mixer from the folder the recipe's paths are relative to, or pass --raw-dir")


def source_license(source: Source) -> str | None:
    """The recipe's licence for a source, else the adapter's default for the published data."""
    return source.license or get_adapter(source.adapter).license


def license_key(name: str) -> str:
    """'CC BY-NC 4.0' and 'cc-by-nc-4.0' name the same licence."""
    return "-".join(name.lower().replace("_", " ").replace("-", " ").split())


def allowed(recipe: Recipe, source: Source) -> str | None:
    """None if the source's licence is allowed, else why it is left out."""
    if recipe.allow_licenses is None:
        return None
    lic = source_license(source)
    if lic is None or license_key(lic) not in {license_key(x) for x in recipe.allow_licenses}:
        return f"licence {lic or 'unknown'} not in allow_licenses {list(recipe.allow_licenses)}"
    return None

def unmatched_licenses(recipe: Recipe) -> list[str]:
    """The ``allow_licenses`` entries that match no source's licence: most likely a misspelling, which
    would otherwise leave sources out with nothing pointing at the entry."""
    if recipe.allow_licenses is None:
        return []
    present = {license_key(lic) for s in recipe.sources if (lic := source_license(s)) is not None}
    return [entry for entry in recipe.allow_licenses if license_key(entry) not in present]


def _check_bounds(recipe: Recipe) -> None:
    """Integers whose type is right but whose value makes no sense (a zero row group breaks the writer;
    a max_tokens of 0 or min_turns above max_turns silently drop every record)."""
    for key, value, low, nullable in (
            ("max_tokens", recipe.max_tokens, 1, True),
            ("filters.min_turns", recipe.filters.min_turns, 0, True),
            ("filters.max_turns", recipe.filters.max_turns, 0, True),
            ("output_options.shard_max_bytes", recipe.output_options.shard_max_bytes, 1, False),
            ("output_options.row_group_rows", recipe.output_options.row_group_rows, 1, False)):
        if value is not None and value < low:
            raise RecipeError(f"{key}: must be >= {low}{' (or null: no limit)' if nullable else ''}, found {value}")
    lo, hi = recipe.filters.min_turns, recipe.filters.max_turns
    if lo is not None and hi is not None and lo > hi:
        raise RecipeError(f"filters: min_turns ({lo}) is greater than max_turns ({hi}); no record could pass")


def _check_cross_source(recipe: Recipe) -> None:
    """What the cross-source settings' own checks (run as they are parsed) cannot see."""
    if recipe.decontaminate is not None and not recipe.decontaminate.benchmarks:
        raise RecipeError("decontaminate.benchmarks: list at least one benchmark {name, files, field}")
