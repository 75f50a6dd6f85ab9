"""Safe YAML for recipes and train configs: a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a pasted ``take: 10`` under an earlier
``take: 5`` would win silently; both the build recipe and the train config loaders refuse it.
:func:`read_yaml_file` reads such a file with errors that name it, in each caller's own error class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mixer.core.errors import MixerError


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises a ``ConstructorError`` (with the key's line) on a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: construct_mapping's own error says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping (YAML would keep only the last)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_file(path: str | Path, *, loader: type[yaml.SafeLoader] = UniqueKeyLoader,
                   error: type[MixerError] = MixerError) -> tuple[str, Any]:
    """A user's YAML file as (its text, the data ``loader`` parses from it).

    A byte that is not UTF-8 is named with its line and offset (an editor's Latin-1 "é" would
    otherwise surface as a codec traceback), and a YAML syntax error keeps PyYAML's own line and
    column, its location naming the file (PyYAML, given the text, says ``in "<unicode string>"``); both
    messages start with ``path`` and are raised as ``error``, so a recipe reports a
    ``RecipeError`` and a train config a ``ConfigError``. The text is returned too, for callers that
    digest what they read. That the file exists and is a file is the caller's to check first.
    """
    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{p}: line {line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - loader is a SafeLoader subclass
    except yaml.YAMLError as e:
        _name_marks(e, str(p))
        raise error(f"{p}: not valid YAML: {e}") from None
    return text, data


def _name_marks(e: yaml.YAMLError, name: str) -> None:
    """Put the file's name in the error's marks, where PyYAML wrote ``<unicode string>`` for parsed text."""
    for attr in ("context_mark", "problem_mark"):
        mark = getattr(e, attr, None)
        if mark is not None:
            mark.name = name
