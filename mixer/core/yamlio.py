"""Safe YAML for recipes and train configs: a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a pasted ``take: 10`` under an earlier
``take: 5`` would win silently; both the build recipe and the train config loaders refuse it.
"""

from __future__ import annotations

from typing import Any

import yaml


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
