"""Source adapters, registered by name.

Importing this package imports every adapter module so the registry is complete; an adapter module
registers its class with ``@register``.
"""

from __future__ import annotations

import importlib
import pkgutil

from mixer.core.errors import RecipeError
from mixer.sources.base import Adapter, SourceContext

_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available to recipes under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"adapter {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base",) and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def adapters() -> dict[str, type[Adapter]]:
    """All registered adapters, by name, sorted."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_adapter(name: str) -> type[Adapter]:
    available = adapters()
    if name not in available:
        raise RecipeError(f"unknown adapter {name!r}; valid adapters: {', '.join(available)}")
    return available[name]


__all__ = ["Adapter", "SourceContext", "register", "adapters", "get_adapter"]
