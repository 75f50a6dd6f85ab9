"""Terminal views: the card as tables, the adapter list, records as chat turns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mixer.errors import MixerError


def print_card(card: dict[str, Any], console: Console) -> None:
    t = card["totals"]
    console.print(f"[bold]{card['name']}[/]: {t['records']:,} records, {t['tokens']['total']:,} tokens "
                  f"(seed {card['recipe']['seed']}, {card['recipe']['tokenizer']})", highlight=False)
    table = Table(title="records per source", title_justify="left", min_width=60)
    for col in ("source", "in", "dropped", "not sampled", "selected", "final", "tokens p50", "p95", "max"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in card["sources"]:
        tk = s["tokens"]
        name = s["name"] + (" (excluded)" if s["excluded"] else "")
        table.add_row(name, f"{s['records_in']:,}", f"{s['dropped_total']:,}", f"{s['not_sampled']:,}",
                      f"{s['selected']:,}", f"{s['final']:,}", f"{tk['p50']:,}", f"{tk['p95']:,}",
                      f"{tk['max']:,}")
    table.add_row("total", f"{t['records_in']:,}", f"{t['dropped']:,}", f"{t['not_sampled']:,}", "",
                  f"{t['records']:,}", f"{t['tokens']['p50']:,}", f"{t['tokens']['p95']:,}",
                  f"{t['tokens']['max']:,}", style="bold")
    console.print(table)
    reasons = Table(title="dropped by reason", title_justify="left")
    for col in ("source", "reason", "records"):
        reasons.add_column(col, justify="right" if col == "records" else "left")
    for s in card["sources"]:
        for reason, n in s["dropped"].items():
            reasons.add_row(s["name"], reason, f"{n:,}")
    if reasons.row_count:
        console.print(reasons)
    for w in card.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


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


def print_records(out_dir: Path, n: int, source: str | None, console: Console) -> None:
    import pyarrow.dataset as ds

    data = Path(out_dir) / "data"
    if not data.is_dir():
        raise MixerError(f"{out_dir}: no data/ folder; is this the output folder of `mixer build`?")
    dataset = ds.dataset(str(data), format="parquet")
    shown = 0
    for batch in dataset.to_batches():
        for rec in batch.to_pylist():
            if source and not rec["dataset"].startswith(source):
                continue
            console.rule(f"{rec['dataset']} · {rec['id']} · {rec.get('n_tokens')} tokens")
            for m in rec["messages"]:
                console.print(f"[bold cyan]{m['role']}[/]", highlight=False)
                console.print(m["content"], markup=False, highlight=False)
            shown += 1
            if shown >= n:
                return
    if shown == 0:
        raise MixerError(f"{out_dir}: no records" + (f" with dataset starting {source!r}" if source else ""))
