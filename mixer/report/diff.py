"""``mixer diff OUT_A OUT_B``: what changed between two builds, for tuning a recipe.

Three views answer "what did my change do": the per-source counts and tokens side by side, the
records themselves (compared by content hash of the messages, the same hash exact dedup uses, so a
record whose id or position changed but whose text did not counts as unchanged), and the recipe
fields that differ (what was changed, to tie the effect to its cause).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from mixer.report.markdown import load_card
from mixer.report.plots import is_preference, iter_batches, source_groups
from mixer.stages.exact_dedup import content_hash

#: Count fields compared per source, in display order.
COUNT_FIELDS = ("records_in", "dropped_total", "not_sampled", "selected", "final")
#: Per-source recipe settings the card records.
SOURCE_SETTINGS = ("adapter", "license", "take", "repeat", "excluded")


def _delta(a: Any, b: Any) -> dict[str, Any]:
    d = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
    return {"a": a, "b": b, "delta": d}


def _hashes(card: dict[str, Any], data_dir: Path) -> dict[bytes, tuple[str, str, str]]:
    """Content hash -> (source group, dataset, id) of the first record with that content.

    Repeated records (``repeat: 10``) collapse to one entry: the comparison is of distinct contents.
    """
    label_group, _ = source_groups(card)
    out: dict[bytes, tuple[str, str, str]] = {}
    columns = _conversation_columns(card)
    for batch in iter_batches(data_dir, ["dataset", "id", *columns]):
        for label, rid, messages in zip(batch.column("dataset").to_pylist(), batch.column("id").to_pylist(),
                                        _conversations(batch, columns), strict=True):
            out.setdefault(content_hash(messages), (label_group.get(label, label), label, rid))
    return out


def _conversation_columns(card: dict[str, Any]) -> list[str]:
    return ["prompt", "chosen", "rejected"] if is_preference(card) else ["messages"]


def _conversations(batch: Any, columns: list[str]) -> list[list[dict[str, str]]]:
    """The messages hashed per record; for a preference pair the rejected reply is included under a
    distinct role, so changing only the rejected side counts as a different record."""
    if columns == ["messages"]:
        return batch.column("messages").to_pylist()
    prompts, chosen, rejected = (batch.column(c).to_pylist() for c in columns)
    return [[*(p or []), *(c or []), *({"role": "rejected:" + m["role"], "content": m["content"]} for m in r or [])]
            for p, c, r in zip(prompts, chosen, rejected, strict=True)]


def _snippets(card: dict[str, Any], data_dir: Path, wanted: set[bytes], limit: int = 120) -> dict[bytes, str]:
    """First-message snippets of a few records, found by a second pass so the first keeps no text."""
    found: dict[bytes, str] = {}
    if not wanted:
        return found
    columns = _conversation_columns(card)
    for batch in iter_batches(data_dir, columns):
        for messages in _conversations(batch, columns):
            h = content_hash(messages)
            if h in wanted and h not in found:
                text = " ".join((messages[0]["content"] if messages else "").split())
                found[h] = text if len(text) <= limit else text[: limit - 1] + "…"
        if len(found) == len(wanted):
            break
    return found


def _records_diff(ca: dict[str, Any], a: Path, cb: dict[str, Any], b: Path, examples: int) -> dict[str, Any]:
    ha, hb = _hashes(ca, a / "data"), _hashes(cb, b / "data")
    only_a = [h for h in ha if h not in hb]
    only_b = [h for h in hb if h not in ha]
    by_a = Counter(ha[h][0] for h in only_a)
    by_b = Counter(hb[h][0] for h in only_b)
    groups = list(dict.fromkeys([*source_groups(ca)[1], *source_groups(cb)[1], *by_a, *by_b]))
    snip_a = _snippets(ca, a / "data", set(only_a[:examples]))
    snip_b = _snippets(cb, b / "data", set(only_b[:examples]))

    def example(h: bytes, info: tuple[str, str, str], snips: dict[bytes, str]) -> dict[str, str]:
        return {"hash": h.hex(), "source": info[0], "dataset": info[1], "id": info[2], "text": snips.get(h, "")}

    return {
        "distinct_a": len(ha), "distinct_b": len(hb), "common": len(ha) - len(only_a),
        "only_a": len(only_a), "only_b": len(only_b),
        "by_source": [{"source": g, "only_a": by_a.get(g, 0), "only_b": by_b.get(g, 0)} for g in groups],
        "examples_only_a": [example(h, ha[h], snip_a) for h in only_a[:examples]],
        "examples_only_b": [example(h, hb[h], snip_b) for h in only_b[:examples]],
    }


def _recipe_diff(ca: dict[str, Any], cb: dict[str, Any]) -> list[dict[str, Any]]:
    """Differing settings as ``{"field", "a", "b"}``; a missing side is None."""
    out = []
    ra, rb = ca.get("recipe", {}), cb.get("recipe", {})
    for key in dict.fromkeys([*ra, *rb]):
        if ra.get(key) != rb.get(key):
            out.append({"field": f"recipe.{key}", "a": ra.get(key), "b": rb.get(key)})
    for key in ("name", "description"):
        if ca.get(key) != cb.get(key):
            out.append({"field": key, "a": ca.get(key), "b": cb.get(key)})
    sa = {s["name"]: s for s in ca["sources"]}
    sb = {s["name"]: s for s in cb["sources"]}
    order_a, order_b = list(sa), list(sb)
    if [n for n in order_a if n in sb] != [n for n in order_b if n in sa]:
        out.append({"field": "sources order", "a": order_a, "b": order_b})
    for name in dict.fromkeys([*order_a, *order_b]):
        if name not in sb or name not in sa:
            out.append({"field": f"sources.{name}", "a": "present" if name in sa else None,
                        "b": "present" if name in sb else None})
            continue
        x, y = sa[name], sb[name]
        for key in SOURCE_SETTINGS:
            if x.get(key) != y.get(key):
                out.append({"field": f"sources.{name}.{key}", "a": x.get(key), "b": y.get(key)})
        fa = {f["path"]: f for f in x.get("files", [])}
        fb = {f["path"]: f for f in y.get("files", [])}
        for path in dict.fromkeys([*fa, *fb]):
            if path not in fa or path not in fb:
                out.append({"field": f"sources.{name}.files", "a": path if path in fa else None,
                            "b": path if path in fb else None})
            elif fa[path]["sha256"] != fb[path]["sha256"]:
                out.append({"field": f"sources.{name}.files[{path}].sha256", "a": fa[path]["sha256"],
                            "b": fb[path]["sha256"]})
    return out


def diff_builds(a: Path, b: Path, examples: int = 5) -> dict[str, Any]:
    """Compare the builds in folders ``a`` and ``b``; a JSON-ready dict (see the module docstring)."""
    a, b = Path(a), Path(b)
    ca, cb = load_card(a), load_card(b)
    sa = {s["name"]: s for s in ca["sources"]}
    sb = {s["name"]: s for s in cb["sources"]}
    sources = []
    for name in dict.fromkeys([*sa, *sb]):
        x, y = sa.get(name), sb.get(name)
        row: dict[str, Any] = {"name": name,
                               "status": "both" if x and y else ("only_a" if x else "only_b")}
        for key in COUNT_FIELDS:
            row[key] = _delta(x[key] if x else 0, y[key] if y else 0)
        row["tokens"] = _delta(x["tokens"]["total"] if x else 0, y["tokens"]["total"] if y else 0)
        reasons = dict.fromkeys([*(x or {}).get("dropped", {}), *(y or {}).get("dropped", {})])
        row["dropped"] = {r: _delta((x or {}).get("dropped", {}).get(r, 0), (y or {}).get("dropped", {}).get(r, 0))
                          for r in reasons}
        sources.append(row)
    ta, tb = ca["totals"], cb["totals"]
    totals = {key: _delta(ta[key], tb[key]) for key in ("records_in", "dropped", "not_sampled", "records")}
    totals["tokens"] = _delta(ta["tokens"]["total"], tb["tokens"]["total"])
    versions = [{"package": k, "a": ca.get("versions", {}).get(k), "b": cb.get("versions", {}).get(k)}
                for k in dict.fromkeys([*ca.get("versions", {}), *cb.get("versions", {})])
                if ca.get("versions", {}).get(k) != cb.get("versions", {}).get(k)]
    return {
        "a": {"path": str(a), "name": ca["name"], "recipe_sha256": ca["recipe"].get("sha256")},
        "b": {"path": str(b), "name": cb["name"], "recipe_sha256": cb["recipe"].get("sha256")},
        "totals": totals,
        "sources": sources,
        "records": _records_diff(ca, a, cb, b, examples),
        "recipe": _recipe_diff(ca, cb),
        "versions": versions,
    }


def builds_differ(d: dict[str, Any]) -> bool:
    """Whether the data differs (``mixer diff --exit-code``): a record only in one build, or a count or
    token total that changed. A recipe edit that leaves the data as it was is reported, but is no
    difference here, as ``git diff`` compares contents."""
    records = d["records"]
    if records["only_a"] or records["only_b"]:
        return True
    if any(v["a"] != v["b"] for v in d["totals"].values()):
        return True
    return any(row["status"] != "both" or any(isinstance(v, dict) and v.get("a") != v.get("b")
                                              for v in row.values()) for row in d["sources"])


# -- terminal -------------------------------------------------------------------------------------

def _compact(n: int | float) -> str:
    n = int(n)
    if abs(n) >= 10_000_000:
        return f"{n / 1e6:,.1f}M"
    if abs(n) >= 100_000:
        return f"{n / 1e3:,.0f}k"
    return f"{n:,}"


def _change(d: dict[str, Any], compact: bool = False) -> str:
    fmt = _compact if compact else (lambda v: f"{v:,}")
    if d["a"] == d["b"]:
        return f"[dim]{fmt(d['a'])}[/]"
    return f"{fmt(d['a'])} → {fmt(d['b'])}"


def _signed(d: dict[str, Any], compact: bool = False) -> str:
    delta = d["delta"] or 0
    if delta == 0:
        return "[dim]0[/]"
    text = (_compact(abs(delta)) if compact else f"{abs(delta):,}")
    pct = f" ({100 * delta / d['a']:+.0f}%)" if d["a"] else ""
    return f"[green]+{text}[/]{pct}" if delta > 0 else f"[red]-{text}[/]{pct}"


def _short(value: Any, limit: int = 60) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_diff(diff: dict[str, Any], console: Console) -> None:
    """Body of ``mixer diff``: the comparison as tables that fit a 100-column terminal."""
    from rich.markup import escape

    a, b = diff["a"], diff["b"]
    console.print(f"[bold]A[/] {escape(a['path'])} ({escape(a['name'])})\n[bold]B[/] {escape(b['path'])} "
                  f"({escape(b['name'])})", highlight=False)
    t = diff["totals"]
    console.print(f"records {_change(t['records'])} ({_signed(t['records'])}), "
                  f"tokens {_change(t['tokens'], True)} ({_signed(t['tokens'], True)})", highlight=False)

    # One cell per count: the value when unchanged, else "A → B" over the signed delta; the columns stay
    # few enough for an 80-column terminal. not sampled = in - dropped - selected, so it is left out.
    table = Table(title="per source (A → B; not sampled = in - dropped - selected)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("source", overflow="fold")
    for col in ("in", "dropped", "selected", "final", "tokens"):
        table.add_column(col, justify="right")

    def cell(d: dict[str, Any], compact: bool = False) -> str:
        return _change(d, compact) if d["a"] == d["b"] else f"{_change(d, compact)}\n{_signed(d, compact)}"

    for s in diff["sources"]:
        status = {"both": "", "only_a": " [dim](A only)[/]", "only_b": " [dim](B only)[/]"}[s["status"]]
        table.add_row(escape(s["name"]) + status, cell(s["records_in"]), cell(s["dropped_total"]),
                      cell(s["selected"]), cell(s["final"]), cell(s["tokens"], True))
    table.add_row("total", cell(t["records_in"]), cell(t["dropped"]), "", cell(t["records"]),
                  cell(t["tokens"], True), style="bold")
    console.print(table)

    reasons = Table(title="dropped by reason, changed (A → B)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("source", "reason", "records", "Δ"):
        reasons.add_column(col, justify="right" if col in ("records", "Δ") else "left")
    for s in diff["sources"]:
        for reason, d in s["dropped"].items():
            if d["delta"]:
                reasons.add_row(escape(s["name"]), escape(reason), _change(d), _signed(d))
    if reasons.row_count:
        console.print(reasons)

    r = diff["records"]
    console.print(f"[bold]records by content[/]: {r['common']:,} in both, {r['only_a']:,} only in A, "
                  f"{r['only_b']:,} only in B (distinct contents: A {r['distinct_a']:,}, B {r['distinct_b']:,})",
                  highlight=False)
    rows = [x for x in r["by_source"] if x["only_a"] or x["only_b"]]
    if rows:
        by = Table(box=box.SIMPLE_HEAD)
        by.add_column("source", no_wrap=True)
        by.add_column("only in A", justify="right")
        by.add_column("only in B", justify="right")
        for x in rows:
            by.add_row(escape(x["source"]), f"{x['only_a']:,}", f"{x['only_b']:,}")
        console.print(by)
    for side, key in (("A", "examples_only_a"), ("B", "examples_only_b")):
        for e in r[key]:
            console.print(f"  [bold]only {side}[/] {escape(e['source'])} · {escape(e['id'])}: "
                          f"[dim]{escape(_short(e['text'], 70))}[/]", highlight=False, overflow="ellipsis",
                          no_wrap=True)

    if diff["recipe"]:
        rt = Table(title="recipe differences", title_justify="left", box=box.SIMPLE_HEAD)
        rt.add_column("field", overflow="fold")
        rt.add_column("A", overflow="fold")
        rt.add_column("B", overflow="fold")
        for d in diff["recipe"]:
            limit = 16 if d["field"].endswith("sha256") else 60  # a prefix tells hashes apart
            rt.add_row(escape(d["field"]), escape(_short(d["a"], limit)), escape(_short(d["b"], limit)))
        console.print(rt)
    else:
        console.print("recipe: no differences", highlight=False)
    if diff["versions"]:
        console.print("versions: " + ", ".join(f"{v['package']} {v['a']} → {v['b']}" for v in diff["versions"]),
                      highlight=False)
