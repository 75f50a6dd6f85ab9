"""``mixer validate``: everything a build would check before the expensive part, every problem in one pass.

A build stops at its first bad file; validating is where a user wants the whole list (three missing
files are three downloads, not three runs), so each file is resolved and probed on its own and the
problems are collected, then reported together.
"""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixer.core.errors import InputError, MixerError, RecordError, user_message
from mixer.readers.base import ParseFailure, json_problem, with_lone_surrogates
from mixer.readers.raw import file_format, json_array
from mixer.recipe.load import Recipe, Source, SourceFile, allowed, load_recipe, relative_raw_dir_hint, resolve_files
from mixer.sources import SourceContext, get_adapter

PROBE_RECORDS = 50


class ValidationFailed(MixerError):
    """The recipe parsed, but files or records are missing or bad: every one is in ``problems``."""

    def __init__(self, recipe: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{recipe}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def check_recipe(recipe_path: Path, raw_dir: str | None) -> dict[str, Any]:
    """Parse the recipe, resolve every file, and convert the first records of each file.

    A recipe that does not parse raises (its error names the key); otherwise every missing file and the
    first bad record of every file is collected into ``problems``, so that one run lists them all.
    Returns ``{"recipe", "name", "ok", "sources": [...], "problems": [...]}`` (the ``--json`` view).
    """
    recipe = load_recipe(recipe_path, raw_dir=raw_dir)
    problems: list[str] = []
    rows = []
    for s in recipe.sources:
        row: dict[str, Any] = {"name": s.name, "adapter": s.adapter, "take": s.take, "files": [],
                               "records_probed": 0, "left_out": allowed(recipe, s)}
        rows.append(row)
        if row["left_out"]:
            continue
        local = dataclasses.replace(s, files=tuple(f for f in s.files if not f.is_hub))
        files = _resolve_each(recipe, local, problems) if local.files else []
        shown: list[str] = [str(f) for f in files]
        notes: list[str] = []
        for f in s.files:
            if f.is_hub:
                try:
                    hub_files, hub_shown, note = _hub_files(s.name, f)
                except MixerError as e:  # an unknown revision, a glob matching nothing: listed with the rest
                    problems.append(str(e))
                    continue
                files += hub_files
                shown += hub_shown
                notes += [note] if note else []
        row["files"] = shown
        row["notes"] = notes
        row["records_probed"] = _probe(recipe, s, files, problems)
    _hint_once(problems, relative_raw_dir_hint(Path(recipe.raw_dir)))
    return {"recipe": str(recipe_path), "name": recipe.name, "ok": not problems, "sources": rows,
            "problems": problems}


def _hint_once(problems: list[str], hint: str) -> None:
    """Keep the relative-``raw_dir`` hint on the first problem that carries it only: every missing file of a
    recipe run from the wrong folder carries it (12 times for ``cd recipes && mixer validate v2-sample.yaml``),
    and the reason is one, not one per file."""
    if not hint:
        return
    said = False
    for i, problem in enumerate(problems):
        if problem.endswith(hint):
            if said:
                problems[i] = problem[: -len(hint)]
            said = True


def _resolve_each(recipe: Recipe, source: Source, problems: list[str]) -> list[Path]:
    """The source's files, each entry resolved on its own: a missing one is a problem, the rest still count."""
    files: list[Path] = []
    for f in source.files:
        try:
            files += resolve_files(recipe, dataclasses.replace(source, files=(f,)))
        except MixerError as e:
            problems.append(str(e))
    return files


def _probe(recipe: Recipe, s: Source, files: list[Path], problems: list[str]) -> int:
    """Convert the first ``PROBE_RECORDS`` records of each file; the first bad one of a file is a problem
    (with ``on_error: raise``, as the build would stop there). Returns the records converted."""
    cls = get_adapter(s.adapter)
    adapter = cls(s.options, SourceContext(s.name, recipe.source_seed(s.name), recipe.tokenizer,
                                           many_files=len(files) > 1))
    converted = 0
    for path in files:
        try:
            probed = 0
            for item in islice(adapter.read_file(path), PROBE_RECORDS):
                probed += 1
                if isinstance(item.value, ParseFailure):
                    if s.on_error == "raise":
                        raise InputError(item.location, item.value.problem)
                    continue
                try:
                    converted += len(list(adapter.convert(item.value, item.location)))
                except RecordError as e:
                    if s.on_error == "raise":
                        raise InputError(item.location, str(e)) from None
            if probed == PROBE_RECORDS:  # the probe stopped early: is the file whole where it ends?
                _check_end(path, s.on_error)
        except (MixerError, OSError) as e:
            message = user_message(e)
            if message is None:
                raise
            problems.append(message)
    return converted


#: bytes read back from a file's end to find its last line (a longer last line is not checked)
TAIL_BYTES = 1 << 20


def _check_end(path: Path, on_error: str) -> None:
    """A cut download is the most common bad file, and the probe reads only a file's head: check its end
    too, where that is cheap (a plain file, read back from its end). A JSON array must end with its
    closing ``]``; with ``on_error: raise``, the last line of JSON Lines must parse (with ``skip`` the
    build drops it and counts it). Gzipped files would have to be decompressed whole; they are not
    checked here (the build still is)."""
    if path.suffix == ".gz" or file_format(path) not in ("json", "jsonl"):
        return
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - TAIL_BYTES, 0))
        tail = f.read()
    if json_array(path):
        if not tail.rstrip().endswith(b"]"):
            raise InputError(str(path), "truncated JSON array: the file ends without the closing ']' "
                             "(an interrupted download?)")
        return
    body = tail.rstrip(b" \t\r\n")
    cut = body.rfind(b"\n")
    if on_error != "raise" or (cut < 0 and len(body) < size):
        return  # skip: the build drops a bad line; or the last line is longer than the tail
    last = body[cut + 1:]
    try:
        orjson.loads(last)
    except orjson.JSONDecodeError as e:
        if with_lone_surrogates(last, e) is None:  # a lone surrogate is read, then dropped, by the build
            raise InputError(str(path), f"the last line: {json_problem(last, e)} (is the file cut short?)") from None


def print_check(result: dict[str, Any], console: Console) -> None:
    """The result as a table, then the problems (each on its own line, for copying)."""
    ok = "recipe OK" if result["ok"] else f"{len(result['problems'])} problem(s)"
    table = Table(title=f"{escape(result['name'])}: {ok}", title_justify="left")
    for col in ("source", "adapter", "take", "files", "probe"):
        table.add_column(col)
    for row in result["sources"]:
        if row["left_out"]:
            probe = f"left out: {row['left_out']}"
        elif row["files"]:
            probe = f"{row['records_probed']} records from the first {PROBE_RECORDS} per file"
        else:
            probe = "no file found"
        table.add_row(escape(row["name"]), row["adapter"], str(row["take"]),
                      escape("\n".join(row["files"])) or "-", escape("\n".join([probe, *row.get("notes", [])])))
    console.print(table)



def _hub_files(source: str, f: SourceFile) -> tuple[list[Path], list[str], str]:
    """A Hub entry's files for the probe: those already in the Hugging Face cache. Its repo, revision and
    file list are checked with the Hub (an unknown revision or a glob matching nothing is an error, as in a
    build); without network or offline and not cached, the entry's structure is all that is checked, and
    the row says so."""
    from mixer.recipe.hub import HubUnavailable, cached_path, resolve_entry

    try:
        r = resolve_entry(source, f, fetch=False)
    except HubUnavailable as e:
        return [], [f.label], f"Hub entry not checked: the Hub cannot be asked (offline or no network: {e}) and " \
            "the cache lacks it"
    cached = [(h, cached_path(r, h)) for h in r.files]
    at_hand = [p for _, p in cached if p is not None]
    shown = [r.uri(h) + ("" if p is not None else " (not fetched yet)") for h, p in cached]
    note = "" if len(at_hand) == len(cached) else f"{len(cached) - len(at_hand)} of {len(cached)} Hub files not " \
        "fetched yet (`mixer fetch` or the build downloads them)"
    return at_hand, shown, note
