"""Typed parsing of YAML values: one coercer for recipes and train configs.

:func:`coerce` checks a value against a type annotation (``Literal``, unions, lists and tuples, enums,
nested dataclasses, the scalars) and :func:`parse_dataclass` builds a settings dataclass from a mapping;
an unknown key or a wrong type is a ``RecipeError`` that names the key path (``sources[3].take``) and the
valid choices. ``mixer.recipe.load`` parses recipes with them, ``mixer.train.config`` its run configs.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

from mixer.core.errors import RecipeError, did_you_mean


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
