"""Pinned inputs: a recipe may pin the sha256 of each raw file, so a build never runs on a file that
silently changed (a re-upload, a truncated copy, a colleague's edited version).

``verify_pins`` is what ``mixer build`` checks before any work; ``pin_recipe`` is ``mixer pin``,
which writes the pins of the files at hand into the recipe text itself, keeping its comments and
layout (only the file entries change).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from mixer.core.digest import file_sha256
from mixer.core.errors import MixerError, RecipeError
from mixer.core.executor import Executor
from mixer.recipe.load import Recipe, SourceFile, load_recipe


def pinned_files(recipe: Recipe) -> list[tuple[str, Path, str]]:
    """(source, path under raw_dir, pinned sha256) of every pinned file."""
    base = Path(recipe.raw_dir)
    return [(s.name, Path(f.path) if Path(f.path).is_absolute() else base / f.path, f.sha256)
            for s in recipe.sources for f in s.files if f.sha256]


def verify_pins(recipe: Recipe, executor: Executor | None = None) -> None:
    """Raise ``MixerError`` naming the first pinned file whose bytes differ from its pin.

    ``executor``: the build's engine, which hashes the files on its threads (hashlib releases the GIL);
    without one they are hashed here, one after the other.
    """
    pins = [(source, path, expected) for source, path, expected in pinned_files(recipe) if path.exists()]
    if not pins:  # a missing file is reported when the source's files are resolved, with its url
        return
    paths = [path for _, path, _ in pins]
    actual = executor.map(file_sha256, paths, threads=True) if executor is not None else map(file_sha256, paths)
    for (source, path, expected), found in zip(pins, actual, strict=True):
        if found != expected:
            raise MixerError(
                f"{path}: the file differs from the recipe's pin (source {source!r}): expected sha256 "
                f"{expected}, found {found}. It changed since it was pinned: download it again "
                f"(`mixer fetch --force`), or pin the file at hand with `mixer pin`")


@dataclass
class Pin:
    source: str
    path: str
    sha256: str
    changed: bool


def pin_recipe(recipe_path: Path, raw_dir: str | None = None) -> list[Pin]:
    """Write the sha256 of every file the recipe names (globs excepted) into the recipe file.

    A plain entry ``- dir/file.json`` becomes ``- {path: dir/file.json, sha256: ...}``; a mapping
    gets a ``sha256`` key (or its value replaced). Everything else in the text stays as it was.
    """
    recipe_path = Path(recipe_path)
    recipe = load_recipe(recipe_path, raw_dir=raw_dir)  # validates, and checks every file exists
    text = recipe_path.read_text(encoding="utf-8")
    root = yaml.compose(text)
    sources_node = _get(root, "sources")
    if sources_node is None or not isinstance(sources_node, yaml.SequenceNode):
        raise RecipeError(f"{recipe_path}: 'sources' is not a list")
    edits: list[tuple[int, int, str]] = []
    pins: list[Pin] = []
    base = Path(recipe.raw_dir)
    for source, source_node in zip(recipe.sources, sources_node.value, strict=True):
        files_node = _get(source_node, "files")
        entries = files_node.value if isinstance(files_node, yaml.SequenceNode) else [files_node]
        for f, node in zip(source.files, entries, strict=True):
            if f.is_hub:
                hub_pins, hub_edits = _pin_hub(text, source.name, f, node)
                pins.extend(hub_pins)
                edits.extend(hub_edits)
                continue
            if any(ch in f.path for ch in "*?["):
                continue  # a pin names one file's bytes; a glob's files may come and go
            path = Path(f.path) if Path(f.path).is_absolute() else base / f.path
            digest = file_sha256(path)
            pins.append(Pin(source.name, f.path, digest, digest != f.sha256))
            if digest != f.sha256:
                edits.append(_pin_edit(text, node, digest))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    load_check = yaml.safe_load(text)  # the edit must leave valid YAML with the same sources
    if len(load_check.get("sources", [])) != len(recipe.sources):
        raise AssertionError("pin edit changed the recipe's sources")  # a bug in mixer
    if not edits:
        return pins  # every pin already right: the file is left as it is
    # a symlinked recipe is pinned where it lives (replacing the link would leave the real file unpinned),
    # and keeps its permissions
    target = recipe_path.resolve()
    tmp = target.with_name(f".{target.name}.pin-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    shutil.copymode(target, tmp)
    os.replace(tmp, target)
    return pins


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _pin_edit(text: str, node: yaml.Node, digest: str) -> tuple[int, int, str]:
    """The (start, end, replacement) that pins one file entry node."""
    if isinstance(node, yaml.ScalarNode):
        original = text[node.start_mark.index:node.end_mark.index]
        return node.start_mark.index, node.end_mark.index, f"{{path: {original}, sha256: {digest}}}"
    assert isinstance(node, yaml.MappingNode)
    return _set_key(text, node, "sha256", digest)


def _pin_hub(text: str, source: str, f: SourceFile, node: yaml.Node) -> tuple[list[Pin], list[tuple[int, int, str]]]:
    """Pin a Hub entry: its revision becomes the commit it resolves to now, and ``sha256`` the digest of
    each file that commit holds (one digest for a single ``path``, else ``{path in repo: digest}``)."""
    import json

    from mixer.recipe.hub import resolve_entry

    r = resolve_entry(source, dataclasses.replace(f, hub_pins=()))  # re-pinning: the old pins may differ
    old = dict(f.hub_pins)
    pins = [Pin(source, r.uri(h), h.sha256, old.get(h.path) != h.sha256 or f.revision != r.commit)
            for h in r.files]
    single = bool(f.path) and not any(ch in f.path for ch in "*?[")
    value = r.files[0].sha256 if single else \
        "{" + ", ".join(f"{json.dumps(h.path)}: {h.sha256}" for h in r.files) + "}"
    if not any(p.changed for p in pins) and set(old) == {h.path for h in r.files}:
        return pins, []
    assert isinstance(node, yaml.MappingNode)
    edits = [_set_key(text, node, "sha256", value)]
    if f.revision != r.commit:
        edits.append(_set_key(text, node, "revision", r.commit))
    if len(edits) == 2 and edits[0][0] == edits[1][0]:  # two new keys at one place: one insertion
        edits = [(edits[0][0], edits[0][1], edits[1][2] + edits[0][2])]
    return pins, edits


def _set_key(text: str, node: yaml.MappingNode, key: str, value: str) -> tuple[int, int, str]:
    """The edit that gives ``key`` the (flow) ``value`` in a mapping node: its value replaced, or the key
    added after the last one (in the node's own style)."""
    current = _get(node, key)
    if current is not None:
        start, end = current.start_mark.index, current.end_mark.index
        tail = "\n" if text[start:end].endswith("\n") else ""
        return start, end, value + tail
    if node.flow_style:
        close = text.rindex("}", node.start_mark.index, node.end_mark.index)
        return close, close, f", {key}: {value}"
    indent = node.value[0][0].start_mark.column
    line_end = text.find("\n", node.value[-1][1].end_mark.index)
    line_end = len(text) if line_end < 0 else line_end
    return line_end, line_end, "\n" + " " * indent + f"{key}: {value}"
