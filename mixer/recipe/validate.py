"""``mixer validate``: everything a build would check before the expensive part."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mixer.core.errors import InputError, RecordError
from mixer.readers.base import ParseFailure
from mixer.recipe.load import allowed, load_recipe, resolve_files
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
        files = resolve_files(recipe, s)
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
        table.add_row(s.name, s.adapter, str(s.take), "\n".join(str(f) for f in files),
                      f"{converted} records from the first {PROBE_RECORDS} per file")
    console.print(table)
