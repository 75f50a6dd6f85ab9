"""TRL's config fields (name, annotation, default) without importing TRL, for what only reads a config.

``mixer train ... --dry-run`` resolves a recipe against TRL's config classes (``ModelConfig``, ``SFTConfig``,
``DPOConfig``, ``RewardConfig``, ``RLOOConfig``): which keys exist, what type each takes, and the defaults
``validate`` reads. Importing ``trl`` imports transformers, peft and torch (8-12 s of CPU time measured), for a
command that prints a config. So the fields are recorded once in ``trl_fields.json``, beside this module,
together with the trl and transformers versions they were read from; when the installed versions are the
recorded ones the file answers, otherwise the classes are imported as before (same answers, slower). A test
(``tests/train/test_train_logs.py``) compares the file with the installed classes and names the command
that rewrites it: ``python -m mixer.train.trl_fields`` (``scripts/refresh_constraints.sh`` runs it for the
locked versions, which are the recorded ones).

An annotation is stored as a small JSON tree (``"int"``, ``{"union": [...]}``, ``{"literal": [...]}``,
``{"enum": name, "members": {...}}``); an annotation naming some other class (accelerate's
``ParallelismConfig``) or a default JSON cannot hold exactly is read from the real class when asked for.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

SCHEMA_PATH = Path(__file__).with_name("trl_fields.json")
CLASSES = ("ModelConfig", "SFTConfig", "DPOConfig", "RewardConfig", "RLOOConfig")
VERSIONED = ("trl", "transformers")  # the packages whose classes the file records
_SIMPLE = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict, "any": Any, "none": type(None)}


@dataclass(frozen=True)
class LazyHint:
    """An annotation that names a class outside the builtins (imported only when a recipe sets the key)."""

    owner: str
    name: str

    def resolve(self) -> Any:
        return typing.get_type_hints(_real_class(self.owner))[self.name]


@dataclass(frozen=True)
class TrlField:
    """One init field of a TRL config class; ``default()`` gives a fresh default value."""

    owner: str
    name: str
    hint: Any
    value: Any = None
    #: where the default comes from: ``value`` (recorded), ``real`` (the class: a value JSON cannot hold
    #: exactly), ``missing`` (the field has none)
    source: str = "value"

    def default(self) -> Any:
        if self.source == "missing":
            return dataclasses.MISSING
        if self.source == "value":
            return json.loads(json.dumps(self.value))  # a fresh copy of a list or mapping
        f = next(f for f in dataclasses.fields(_real_class(self.owner)) if f.name == self.name)
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _real_class(name: str) -> type:
    import trl

    return getattr(trl, name)


def installed_versions() -> dict[str, str | None]:
    """The installed versions of :data:`VERSIONED` (None: not installed), read without importing them."""
    versions: dict[str, str | None] = {}
    for package in VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def encode_hint(tp: Any) -> Any:
    """An annotation as a JSON tree (see the module docstring)."""
    for key, simple in _SIMPLE.items():
        if tp is simple:
            return key
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return {"literal": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"union": [encode_hint(a) for a in args]}
    if origin in (list, tuple, dict):
        return {origin.__name__: ["..." if a is Ellipsis else encode_hint(a) for a in args]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and all(
            isinstance(m.value, (str, int)) for m in tp):
        return {"enum": tp.__name__, "members": {m.name: m.value for m in tp}}
    return {"class": f"{getattr(tp, '__module__', '?')}:{getattr(tp, '__qualname__', repr(tp))}"}


def _decode(node: Any) -> Any:
    if isinstance(node, str):
        return Ellipsis if node == "..." else _SIMPLE[node]
    if "literal" in node:
        return Literal[tuple(node["literal"])]
    if "union" in node:
        return typing.Union[tuple(_decode(a) for a in node["union"])]  # noqa: UP007 - built at run time
    if "enum" in node:
        return _enum(node["enum"], tuple(node["members"].items()))
    for container in (list, tuple, dict):
        if container.__name__ in node:
            args = tuple(_decode(a) for a in node[container.__name__])
            return container[args] if args else container
    raise ValueError(f"not a recorded annotation: {node!r}")


@functools.cache
def _enum(name: str, members: tuple[tuple[str, Any], ...]) -> type[enum.Enum]:
    """The same enum for the same members, so repeated reads compare equal."""
    return enum.Enum(name, list(members))  # type: ignore[return-value]


def _names_a_class(node: Any) -> bool:
    if isinstance(node, dict):
        return "class" in node or any(_names_a_class(v) for v in node.values())
    return isinstance(node, list) and any(_names_a_class(v) for v in node)


def _json_exact(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip with its types (a tuple or an enum does not)."""
    try:
        back = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return False
    return back == value and _same_types(back, value)


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    return True


def record() -> dict[str, Any]:
    """Read the installed TRL classes into the JSON mapping ``trl_fields.json`` holds."""
    classes: dict[str, list[list[Any]]] = {}
    for name in CLASSES:
        cls = _real_class(name)
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default: Any = {"value": f.default} if _json_exact(f.default) else {"real": True}
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
                default = {"value": value} if _json_exact(value) else {"real": True}
            else:
                default = {"missing": True}
            rows.append([f.name, encode_hint(hints[f.name]), default])
        classes[name] = rows
    return {"versions": installed_versions(), "classes": classes}


@functools.cache
def _recorded() -> dict[str, Any] | None:
    """The recorded fields when they are those of the installed trl and transformers, else None."""
    try:
        data = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("versions") == installed_versions() else None


def trl_fields(owner: str) -> list[TrlField]:
    """The init fields of TRL's class ``owner``, in declaration order: from the record when it matches the
    installed versions, else from the class itself (importing TRL)."""
    data = _recorded()
    if data is None or owner not in data["classes"]:
        cls = _real_class(owner)
        hints = typing.get_type_hints(cls)
        return [TrlField(owner, f.name, hints[f.name], source="real") for f in dataclasses.fields(cls) if f.init]
    fields = []
    for name, hint, default in data["classes"][owner]:
        decoded = LazyHint(owner, name) if _names_a_class(hint) else _decode(hint)
        source = next(iter(default))
        fields.append(TrlField(owner, name, decoded, default.get("value"), source))
    return fields


def write_record(path: Path = SCHEMA_PATH) -> Path:
    """Rewrite ``trl_fields.json`` from the installed TRL (after upgrading trl or transformers)."""
    data = record()
    lines = ["{", f' "versions": {json.dumps(data["versions"])},', ' "classes": {']
    for i, (name, rows) in enumerate(data["classes"].items()):
        lines.append(f"  {json.dumps(name)}: [")
        lines += [f"   {json.dumps(row)}" + ("," if j < len(rows) - 1 else "") for j, row in enumerate(rows)]
        lines.append("  ]" + ("," if i < len(data["classes"]) - 1 else ""))
    lines += [" }", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # one field a line: diffs read as field changes
    _recorded.cache_clear()
    return path


if __name__ == "__main__":
    print(f"wrote {write_record()} for {installed_versions()}")

