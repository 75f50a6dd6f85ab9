"""Recipes: YAML parsed once, at the edge, into typed objects.

Every key is checked: an unknown key, a wrong type, an unknown adapter or a missing file is a
``RecipeError`` naming the key path (``sources[3].take``) and listing the valid choices. The rest of
the code never sees raw dicts.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import hashlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mixer.core.errors import RecipeError, did_you_mean
from mixer.core.yamlio import UniqueKeyLoader
from mixer.recipe.settings import (
    DecontaminationSettings,
    DedupSettings,
    FilterSettings,
    NormaliseSettings,
)
from mixer.sources import get_adapter


@dataclass(frozen=True)
class SourceFile:
    path: str
    url: str | None = None
    #: the file's sha256 (``mixer pin`` writes it): a build or fetch refuses a file that differs
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    name: str
    adapter: str
    files: tuple[SourceFile, ...]
    #: "all", a count, or a fraction of the records left after filtering and dedup
    take: int | float | Literal["all"] = "all"
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
    #: set by load_recipe: the recipe file and the hash of its text, for provenance
    path: str = ""
    sha256: str = ""

    def source_seed(self, source: str) -> int:
        """Each source's own seed: adding or reordering sources never changes another's sample."""
        digest = hashlib.sha256(f"{self.seed}:{source}".encode()).digest()
        return int.from_bytes(digest[:8], "big")


_Loader = UniqueKeyLoader


# -- generic typed parsing ------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, dicts to dataclasses.

    Public: ``mixer train`` coerces its configs (and TRL's config fields) with it too."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise RecipeError(f"{where}: {value!r} is not valid; expected one of {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # Optional[X]: X's own error is the helpful one
            return coerce(value, others[0], where)
        for arg in args:
            try:
                return coerce(value, arg, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where}: {value!r} is not valid; expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise RecipeError(f"{where}: expected null")
    if origin in (tuple, list):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, found {type(value).__name__}")
        return origin(coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise RecipeError(f"{where}: expected a mapping, found {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if value in {m.value for m in tp}:
            return value
        raise RecipeError(f"{where}: {value!r} is not valid; expected one of {', '.join(m.value for m in tp)}")
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(f"{where}: expected true or false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise RecipeError(f"{where}: expected an integer, found {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise RecipeError(f"{where}: expected a number, found {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise RecipeError(f"{where}: expected a string, found {value!r}")
    raise TypeError(f"unsupported annotation {tp!r}")  # a bug in mixer, not a user error


def parse_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types; errors name ``where``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping of {cls.__name__} settings, found {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        valid = sorted(k for k in fields if k not in ("path", "sha256"))
        named = ", ".join(f"{k!r}{did_you_mean(str(k), valid)}" for k in unknown)
        raise RecipeError(f"{where + ': ' if where else ''}unknown key(s) {named}; "
                          + (f"valid keys: {', '.join(valid)}" if valid else "it takes no keys"))
    kwargs = {}
    for name, f in fields.items():
        sub = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where or 'recipe'}: missing required key {name!r}")
    return cls(**kwargs)


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
        else:
            f = parse_dataclass(SourceFile, item, f"{where}[{i}]")
            if f.sha256 is not None:
                if len(f.sha256) != 64 or not all(c in "0123456789abcdef" for c in f.sha256):
                    raise RecipeError(f"{where}[{i}].sha256: expected 64 lowercase hex digits, found {f.sha256!r}")
                if any(ch in f.path for ch in "*?["):
                    raise RecipeError(f"{where}[{i}].sha256: a pin names one file; {f.path!r} is a glob")
            out.append(f)
    return tuple(out)


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
    # the keys first: `file:` for `files:` is a typo to name, not a missing list of files
    source = parse_dataclass(Source, {**data, "files": []}, where)
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
    recipe = parse_dataclass(Recipe, {**data, "sources": []}, "")
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
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise RecipeError(f"{p}: line {line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(f"{p}: not valid YAML: {e}") from None
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
        pattern = f.path if Path(f.path).is_absolute() else str(base / f.path)
        if any(ch in f.path for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(pattern))
            if not matches:
                raise RecipeError(f"source {source.name!r}: no file matches {pattern!r}")
            out.extend(matches)
        else:
            p = Path(pattern)
            if not p.exists():
                hint = f" (run `mixer fetch` to download it from {f.url})" if f.url else ""
                raise RecipeError(f"source {source.name!r}: file not found: {p}{hint}")
            out.append(p)
    return out


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
