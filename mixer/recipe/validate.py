"""``mixer validate``: everything a build would check before the expensive part."""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixer.core.errors import InputError, RecordError
from mixer.readers.base import ParseFailure
from mixer.recipe.load import SourceFile, allowed, load_recipe, resolve_files
from mixer.sources import SourceContext, get_adapter

PROBE_RECORDS = 50


def validate_recipe(recipe_path: Path, raw_dir: str | None, console: Console) -> None:
    """Parse the recipe, resolve every file, and convert the first records of each file.

    Raises on the first problem (as a build would, naming file and record); prints a table when
    all is well.
    """
    recipe = load_recipe(recipe_path, raw_dir=raw_dir)
    table = Table(title=f"{recipe.name}: recipe OK", title_justify="left")
    for col in ("source", "adapter", "take", "files", "probe"):
        table.add_column(col)
    for s in recipe.sources:
        why = allowed(recipe, s)
        if why:
            table.add_row(s.name, s.adapter, str(s.take), "-", f"left out: {why}")
            continue
        local = dataclasses.replace(s, files=tuple(f for f in s.files if not f.is_hub))
        files = resolve_files(recipe, local) if local.files else []
        shown: list[str] = [str(f) for f in files]
        notes: list[str] = []
        for f in s.files:
            if f.is_hub:
                hub_files, hub_shown, note = _hub_files(s.name, f, console)
                files += hub_files
                shown += hub_shown
                notes += [note] if note else []
        cls = get_adapter(s.adapter)
        adapter = cls(s.options, SourceContext(s.name, recipe.source_seed(s.name), recipe.tokenizer,
                                                 many_files=len(files) > 1))
        converted = 0
        for path in files:
            for item in islice(adapter.read_file(path), PROBE_RECORDS):
                if isinstance(item.value, ParseFailure):
                    if s.on_error == "raise":
                        raise InputError(item.location, item.value.problem)
                    continue
                try:
                    converted += len(list(adapter.convert(item.value, item.location)))
                except RecordError as e:
                    if s.on_error == "raise":
                        raise InputError(item.location, str(e)) from None
        probe = f"{converted} records from the first {PROBE_RECORDS} per file" if files else "no file at hand"
        table.add_row(s.name, s.adapter, str(s.take), "\n".join(shown), "\n".join([probe, *notes]))
    console.print(table)


def _hub_files(source: str, f: SourceFile, console: Console) -> tuple[list[Path], list[str], str]:
    """A Hub entry's files for the probe: those already in the Hugging Face cache. Its repo, revision and
    file list are checked with the Hub (an unknown revision or a glob matching nothing is an error, as in a
    build); without network or offline and not cached, the entry's structure is all that is checked, and
    the row says so."""
    from mixer.recipe.hub import HubUnavailable, cached_path, resolve_entry

    try:
        r = resolve_entry(source, f, fetch=False)
    except HubUnavailable as e:
        console.print(f"[yellow]warning:[/] not checked with the Hub: {escape(str(e))}", highlight=False,
                      soft_wrap=True)
        return [], [f.label], "Hub entry not checked: the Hub cannot be asked (offline or no network) and " \
            "the cache lacks it"
    cached = [(h, cached_path(r, h)) for h in r.files]
    at_hand = [p for _, p in cached if p is not None]
    shown = [r.uri(h) + ("" if p is not None else " (not fetched yet)") for h, p in cached]
    note = "" if len(at_hand) == len(cached) else f"{len(cached) - len(at_hand)} of {len(cached)} Hub files not " \
        "fetched yet (`mixer fetch` or the build downloads them)"
    return at_hand, shown, note
