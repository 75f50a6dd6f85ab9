"""Terminal views: the card as tables, the adapter list, records as chat turns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
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
    console.print(Markdown(text))


def print_sources(console: Console) -> None:
    from mixer.sources import adapters

    table = Table(title="source adapters (recipe key: adapter)", title_justify="left")
    table.add_column("adapter")
    table.add_column("licence")
    table.add_column("reads")
    table.add_column("options")
    for name, cls in adapters().items():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Options))
        table.add_row(name, cls.license or "-", cls.description, opts or "-")
    console.print(table)


def _print_messages(messages: list[dict[str, str]], console: Console) -> None:
    for m in messages:
        console.print(f"[bold cyan]{m['role']}[/]", highlight=False)
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


def print_records(out_dir: Path, n: int, source: str | None, console: Console) -> None:
    import pyarrow.dataset as ds

    data = Path(out_dir) / "data"
    if not data.is_dir():
        inner = sorted(p.parent.name for p in Path(out_dir).glob("*/data") if p.is_dir())
        if inner:  # a `mixer generate` output holds one build-shaped folder per dataset it writes
            raise MixerError(f"{out_dir}: no data/ folder here, but in {', '.join(inner)}; show one of them, "
                             f"e.g. `mixer show {Path(out_dir) / inner[0]}`")
        raise MixerError(f"{out_dir}: no data/ folder; is this the output folder of `mixer build`?")
    dataset = ds.dataset(str(data), format="parquet")
    shown = 0
    for batch in dataset.to_batches():
        for rec in batch.to_pylist():
            if source and not rec["dataset"].startswith(source):
                continue
            console.rule(" · ".join([rec["dataset"], rec["id"], *_record_sizes(rec)]))
            if "messages" in rec:
                _print_messages(rec["messages"], console)
            else:  # a preference build: the shared prompt, then the two replies
                _print_messages(rec["prompt"], console)
                for side in ("chosen", "rejected"):
                    score = rec.get(f"score_{side}")
                    console.print(f"[bold magenta]── {side}" + (f" (score {score:g})" if score is not None else "")
                                  + " ──[/]", highlight=False)
                    _print_messages(rec[side], console)
            shown += 1
            if shown >= n:
                return
    if shown == 0:
        raise MixerError(f"{out_dir}: no records" + (f" with dataset starting {source!r}" if source else ""))
