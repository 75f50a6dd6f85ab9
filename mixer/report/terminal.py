"""Terminal views: the card as tables, the adapter list, records as chat turns."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixer.core.errors import MixerError


def _n(v: Any) -> str:
    """Integers with separators; a fractional mean keeps one decimal only while it is small."""
    if isinstance(v, float) and v != int(v) and abs(v) < 100:
        return f"{v:,.1f}"
    return f"{round(v):,}"


def _compact(n: int) -> str:
    """Token totals in a narrow column: 28,686 / 1.2M / 345k."""
    if n >= 10_000_000:
        return f"{n / 1e6:,.1f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:,.2f}M"
    if n >= 100_000:
        return f"{n / 1e3:,.0f}k"
    return f"{n:,}"


def print_card(card: dict[str, Any], console: Console) -> None:
    """The card as terminal tables in the recipe's source order (``card["sources"]`` keeps it).

    Two narrow tables instead of one wide one, so that every column fits a 100-column terminal
    without rich truncating source names (``gpt4_al…``) or wrapping numbers.
    """
    from rich import box
    from rich.markup import escape

    from mixer.report.markdown import token_limit

    t, r, sources = card["totals"], card["recipe"], card["sources"]
    console.print(f"[bold]{escape(card['name'])}[/]: {t['records']:,} records, {t['tokens']['total']:,} tokens "
                  f"(seed {r['seed']}, {escape(str(r['tokenizer']))}, {token_limit(r['max_tokens'])})",
                  highlight=False)
    total_records = t["records"] or 1
    total_tokens = t["tokens"]["total"] or 1

    counts = Table(title="records per source (in = dropped + not sampled + selected; final = selected × repeat)",
                   title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # Headers may wrap at spaces and long source names fold; numbers never break (no spaces in them).
    counts.add_column("source", overflow="fold")
    counts.add_column("licence", overflow="fold", max_width=16)
    for col in ("in", "dropped", "not sampled", "selected", "repeat", "final"):
        counts.add_column(col, justify="right")
    notes = []
    for s in sources:
        note = s["excluded"] or (f"take {s['take']} but short by {s['shortfall']:,}" if s["shortfall"] else "")
        if note:  # below the table: excluded reasons are sentences, too long for a column
            notes.append(f"* [bold]{escape(s['name'])}[/]: {'excluded, ' if s['excluded'] else ''}{escape(note)}")
        counts.add_row(escape(s["name"]) + (" *" if note else ""), escape(s["license"] or "unknown"),
                       _n(s["records_in"]), _n(s["dropped_total"]), _n(s["not_sampled"]), _n(s["selected"]),
                       _n(s["repeat"]), _n(s["final"]), style="dim" if s["excluded"] else None)
    counts.add_row("total", "", _n(t["records_in"]), _n(t["dropped"]), _n(t["not_sampled"]),
                   _n(sum(s["selected"] for s in sources)), "", _n(t["records"]), style="bold")
    console.print(counts)
    for line in notes:
        console.print(line, highlight=False)

    lengths = Table(title="shares, tokens per record and assistant turns", title_justify="left",
                    box=box.SIMPLE_HEAD, pad_edge=False)
    lengths.add_column("source", overflow="fold")
    for col in ("% records", "tokens", "% tokens", "mean", "p50", "p95", "max", "turns mean", "turns max"):
        lengths.add_column(col, justify="right")
    for s in [*sources, {"name": "total", "final": t["records"], "tokens": t["tokens"], "turns": t["turns"]}]:
        tk, tu = s["tokens"], s["turns"]
        lengths.add_row(escape(s["name"]), f"{100 * s['final'] / total_records:.1f}", _compact(tk["total"]),
                        f"{100 * tk['total'] / total_tokens:.1f}",
                        _n(tk["mean"]), _n(tk["p50"]), _n(tk["p95"]), _n(tk["max"]), f"{tu['mean']:.2f}",
                        _n(tu["max"]), style="bold" if s["name"] == "total" and "adapter" not in s else None)
    console.print(lengths)

    scored = [s for s in sources if "scores" in s]
    if scored:
        scores = Table(title="preference scores (gap = chosen - rejected, on each source's scale)",
                       title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        scores.add_column("source", overflow="fold")
        for col in ("pairs", "with scores", "gap mean", "gap p5", "gap p50", "gap p95"):
            scores.add_column(col, justify="right")
        for s in scored:
            sc, gap = s["scores"], s["scores"]["gap"]
            scores.add_row(escape(s["name"]), _n(sc["pairs"]), _n(sc["scored"]),
                           *("" if gap[k] is None else f"{gap[k]:.3g}" for k in ("mean", "p5", "p50", "p95")))
        console.print(scores)

    reasons = Table(title="dropped by reason", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("source", "reason", "records", "% of in"):
        reasons.add_column(col, justify="left" if col in ("source", "reason") else "right", overflow="fold")
    for s in sources:
        for reason, n in s["dropped"].items():
            pct = 100 * n / s["records_in"] if s["records_in"] else 0.0
            reasons.add_row(escape(s["name"]), escape(reason), _n(n), f"{pct:.1f}")
    if reasons.row_count:
        console.print(reasons)
    near = card.get("near_dedup")
    if isinstance(near, dict) and "removed_total" in near:
        console.print(f"near-duplicates: {near['removed_total']:,} records removed in {near.get('clusters', 0):,} "
                      "clusters", highlight=False)
    for w in card.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)


def print_generate_card(out_dir: Path, console: Console) -> None:
    """A ``mixer generate`` output's card: its README.md (written with the card.json beside it), rendered
    without the YAML front matter."""
    from rich.markdown import Markdown

    path = Path(out_dir) / "README.md"
    if not path.is_file():
        raise MixerError(f"{out_dir}: a `mixer generate` output without its README.md; "
                         "`mixer card --json` prints its card.json")
    text = path.read_text(encoding="utf-8")
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        text = text[end + 5:] if end != -1 else text
    # off a terminal the Markdown is the readable form (rich would draw its headings as wide as the console)
    console.print(Markdown(text) if console.is_terminal else text, markup=False, highlight=False)


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each field of an options dataclass (the adapters document their options
    that way, as Sphinx's autodoc reads them), joined into one line per field."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
        elif ":" in text and text.split(":", 1)[0].isidentifier() and pending:
            out[text.split(":", 1)[0]] = " ".join(pending).replace("``", "`")
            pending = []
        else:
            pending = []
    return out


def _valid_values(tp: Any) -> str:
    """What a recipe may write for an option of type ``tp``: choices, true/false, null, a number."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_valid_values(a) for a in typing.get_args(tp))
    names = {bool: "true | false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def describe_sources() -> list[dict[str, Any]]:
    """Every adapter with its licence, what it reads, and each option's default, valid values and meaning
    (the ``mixer sources`` view, and its ``--json``)."""
    from mixer.sources import adapters

    out = []
    for name, cls in adapters().items():
        hints = typing.get_type_hints(cls.Options)
        comments = _field_comments(cls.Options)
        options = [{"name": f.name, "default": f.default if f.default is not dataclasses.MISSING else None,
                    "values": _valid_values(hints[f.name]), "help": comments.get(f.name, "")}
                   for f in dataclasses.fields(cls.Options)]
        out.append({"adapter": name, "kind": cls.kind, "license": cls.license, "reads": cls.description,
                    "options": options})
    return out


def print_sources(console: Console) -> None:
    """The adapters as a table; below it, each option with its default, valid values and meaning."""
    described = describe_sources()
    table = Table(title="source adapters (recipe key: adapter)", title_justify="left")
    table.add_column("adapter")
    table.add_column("licence")
    table.add_column("reads")
    table.add_column("options")
    for a in described:
        table.add_row(a["adapter"], escape(a["license"] or "-"), escape(a["reads"]),
                      ", ".join(o["name"] for o in a["options"]) or "-")
    console.print(table)
    console.print("\n[bold]options[/] (a source's `options:` mapping in the recipe)", highlight=False)
    for a in described:
        for o in a["options"]:
            meaning = f" — {escape(o['help'])}" if o["help"] else ""
            console.print(f"  [bold]{a['adapter']}.{o['name']}[/]: {escape(o['values'])} "
                          f"(default {escape(json.dumps(o['default']))}){meaning}", highlight=False, soft_wrap=True)


def _print_messages(messages: list[dict[str, str]], console: Console) -> None:
    for m in messages:
        no_loss = " [dim](train: false, no loss)[/]" if m.get("train") is False else ""
        console.print(f"[bold cyan]{m['role']}[/]{no_loss}", highlight=False)
        console.print(m["content"], markup=False, highlight=False)


def _record_sizes(rec: dict[str, Any]) -> list[str]:
    """What a record's header says about its size: a build's ``n_tokens``, a generate output's completion
    tokens and reward; nothing for a field the record does not carry (never "None tokens")."""
    parts = []
    if rec.get("n_tokens") is not None:
        parts.append(f"{rec['n_tokens']:,} tokens")
    for key, label in (("completion_tokens", "completion tokens"), ("chosen_tokens", "chosen tokens"),
                       ("rejected_tokens", "rejected tokens")):
        if rec.get(key) is not None:
            parts.append(f"{rec[key]:,} {label}")
    if rec.get("reward") is not None:
        parts.append(f"reward {rec['reward']:.3g}")
    return parts


def iter_records(out_dir: Path, source: str | None = None, *, dropped: bool = False) -> Iterator[dict[str, Any]]:
    """A build's records (``data/``) or, with ``dropped``, the records it dropped (``dropped/``, with their
    stage and reason), in file order; ``source``: only those whose ``dataset`` (or, for dropped records,
    source) starts with it, or whose label the card counts for a recipe source whose name starts with it."""
    import pyarrow.parquet as pq

    folder = Path(out_dir) / ("dropped" if dropped else "data")
    if not folder.is_dir():
        inner = sorted(p.parent.name for p in Path(out_dir).glob("*/data") if p.is_dir())
        if inner and not dropped:  # a `mixer generate` output holds one build-shaped folder per dataset
            raise MixerError(f"{out_dir}: no data/ folder here, but in {', '.join(inner)}; show one of them, "
                             f"e.g. `mixer show {Path(out_dir) / inner[0]}`")
        if dropped and (Path(out_dir) / "data").is_dir():
            raise MixerError(f"{out_dir}: no dropped/ folder: this build dropped nothing")
        raise MixerError(f"{out_dir}: no {folder.name}/ folder; is this the output folder of `mixer build`?")
    if (Path(out_dir) / "tokenized.json").is_file():
        raise MixerError(f"{out_dir}: a `mixer tokenize` folder holds token ids, not readable records; show the "
                         f"build it was made from (tokenized.json names it), its counts are in {out_dir}/README.md")
    labels = _labels_of_sources(Path(out_dir), source) if source else set()
    for path in sorted(folder.glob("*.parquet")):
        names = set(pq.read_schema(path).names)
        if "dataset" not in names or not ({"messages", "prompt"} & names or dropped):
            raise MixerError(f"{path}: not records of a mixer build (columns: {', '.join(sorted(names))}); "
                             "`mixer show` reads the data/ of `mixer build` and `mixer generate` outputs")
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                label = rec.get("source") or rec["dataset"] if dropped else rec["dataset"]
                if source and not (label.startswith(source) or rec["dataset"].startswith(source)
                                   or rec["dataset"] in labels):
                    continue
                yield rec


def _labels_of_sources(out_dir: Path, prefix: str) -> set[str]:
    """The ``dataset`` labels the card counts for the recipe's sources whose name starts with ``prefix``: a
    source given ``options: {dataset: other}`` writes records labelled ``other``, which ``-s <source name>``
    finds through them (the written rows carry the label, not the source's name)."""
    try:
        card = json.loads((out_dir / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    sources = card.get("sources") if isinstance(card, dict) else None
    return {str(label) for s in sources or [] if isinstance(s, dict) and str(s.get("name", "")).startswith(prefix)
            for label in (s.get("datasets") or {})}


def print_records(out_dir: Path, n: int, source: str | None, console: Console, *, dropped: bool = False,
                  as_json: bool = False) -> None:
    """The first ``n`` records as chat turns (``as_json``: one JSON object per line on stdout)."""
    import sys

    shown = 0
    for rec in iter_records(out_dir, source, dropped=dropped):
        if as_json:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        else:
            _print_record(rec, console, dropped=dropped)
        shown += 1
        if shown >= n:
            return
    if shown == 0:
        what = "dropped records" if dropped else "records"
        raise MixerError(f"{out_dir}: no {what}" + (f" with a name starting {source!r}" if source else ""))


def _print_record(rec: dict[str, Any], console: Console, *, dropped: bool) -> None:
    # a record the reader could not parse (kept under on_error: skip) has neither: name its source instead
    head = [rec.get("dataset") or rec.get("source") or "?", rec.get("id") or "no id (unreadable record)",
            *_record_sizes(rec)]
    if dropped:
        head += [f"dropped at {rec['stage']}: {rec['reason']}"]
    title = " · ".join(head)
    if console.is_terminal:
        console.rule(title)
    else:  # a rule is as wide as the console, which is unbounded off a terminal (logs, pipes)
        console.print(f"── {title} ──", markup=False, highlight=False)
    if dropped:
        for key, label in (("detail", "detail"), ("kept_id", "kept copy")):
            if rec.get(key):
                console.print(f"[dim]{label}:[/] {escape(str(rec[key]))}", highlight=False)
        if rec.get("messages") is None and rec.get("raw"):
            console.print(rec["raw"], markup=False, highlight=False)
    if rec.get("messages") is not None:
        _print_messages(rec["messages"], console)
    elif "prompt" in rec:  # a preference build: the shared prompt, then the two replies
        _print_messages(rec["prompt"], console)
        for side in ("chosen", "rejected"):
            score = rec.get(f"score_{side}")
            console.print(f"[bold magenta]── {side}" + (f" (score {score:g})" if score is not None else "")
                          + " ──[/]", highlight=False)
            _print_messages(rec[side], console)
