"""``mixer card OUT --html report.html``: the data card as one self-contained HTML page.

The page is meant to be mailed, attached to an issue or opened from a laptop without the build folder,
so everything is inside it: the CSS inline, the plots as base64 ``data:`` URIs, no scripts and no
external resources. Records are untrusted text (scraped chats contain HTML, ``<script>`` included),
so every string that comes from the data or the card is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from mixer.core.outdir import HTML_MARKER
from mixer.report.markdown import load_card
from mixer.report.plots import PLOTS, is_preference, iter_batches, source_groups

#: Messages longer than this many characters are collapsed behind a <details> element.
LONG_TEXT = 1200
PREVIEW = 300

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1b1f24;
       background: #f6f7f9; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { margin-top: 0; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; overflow-wrap: anywhere; }
th { background: #f0f3f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #f6f8fa; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
pre.json { background: #f6f8fa; padding: .6rem; overflow-x: auto; max-height: 30rem; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: .88rem; }
nav.toc a { margin-right: .8rem; white-space: nowrap; }
.warning { color: #9a6700; }
.record { border: 1px solid #d0d7de; border-radius: 6px; margin: .8rem 0; }
.record-head { background: #f6f8fa; padding: .3rem .6rem; font-size: .85rem; color: #57606a;
               border-bottom: 1px solid #d0d7de; }
.turn { padding: .4rem .6rem; border-top: 1px solid #eaeef2; }
.turn:first-of-type { border-top: none; }
.role { font-weight: bold; font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.role-user .role { color: #0969da; } .role-assistant .role { color: #1a7f37; }
.role-system .role { color: #8250df; } .role-other .role { color: #9a6700; }
.role-assistant { background: #fbfdfb; }
.content { white-space: pre-wrap; overflow-wrap: anywhere; margin: .2rem 0 0; font-family: inherit; }
details summary { cursor: pointer; color: #57606a; font-size: .85rem; }
.dropped .record-head { background: #fff8f0; }
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def _inline_code(text: str) -> str:
    """Escape, then show the Markdown `code` spans of the plot captions as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _slug(name: str) -> str:
    return "src-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _e(v if v is not None else "")
    if isinstance(v, float):
        return f"{v:,.2f}" if v != int(v) else f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    return _e(v)


def _table(headers: list[str], rows: list[list[Any]], total_last: bool = False) -> str:
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        cls = ' class="total"' if total_last and i == len(rows) - 1 else ""
        cells = "".join(f'<td class="num">{_num(v)}</td>' if isinstance(v, int | float) and not isinstance(v, bool)
                        else f"<td>{_e(v)}</td>" for v in row)
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


# -- card sections --------------------------------------------------------------------------------

def _card_sections(card: dict[str, Any]) -> list[str]:
    t, r, sources = card["totals"], card["recipe"], card["sources"]
    out = ["<h2 id=\"sources\">Records per source</h2>",
           "<p>in = dropped + not sampled + selected; final = selected × repeat.</p>"]
    rows = [[s["name"], s["license"] or "unknown", s["raw_records"], s["records_in"], s["dropped_total"],
             s["not_sampled"], s["selected"], s["repeat"], s["final"],
             s["excluded"] or (f"short by {s['shortfall']}" if s["shortfall"] else "")] for s in sources]
    rows.append(["total", "", sum(s["raw_records"] for s in sources), t["records_in"], t["dropped"],
                 t["not_sampled"], sum(s["selected"] for s in sources), "", t["records"], ""])
    out.append(_table(["source", "licence", "raw read", "in", "dropped", "not sampled", "selected", "repeat",
                       "final", "note"], rows, total_last=True))

    out.append("<h2 id=\"tokens\">Tokens and turns</h2>")
    out.append(f"<p>Tokens of the Tulu-formatted conversation (<code>{_e(r['tokenizer'])}</code>); turns = "
               "assistant messages; percentiles are nearest-rank.</p>")
    stat_rows = []
    for s in [*sources, {"name": "all", "tokens": t["tokens"], "turns": t["turns"]}]:
        tk, tu = s["tokens"], s["turns"]
        stat_rows.append([s["name"], tk["count"], tk["total"], tk["mean"], tk["p50"], tk["p95"], tk["max"],
                          tu["mean"], tu["p95"], tu["max"]])
    out.append(_table(["source", "records", "tokens", "mean", "p50", "p95", "max", "turns mean", "turns p95",
                       "turns max"], stat_rows, total_last=True))

    drop_rows = [[s["name"], reason, n] for s in sources for reason, n in s["dropped"].items()]
    out.append("<h2 id=\"dropped\">Dropped, by reason</h2>")
    out.append(_table(["source", "reason", "records"], drop_rows) if drop_rows else "<p>Nothing.</p>")
    norm_rows = [[s["name"], rule, n] for s in sources for rule, n in s.get("normalised", {}).items()]
    if norm_rows:
        out.append("<h3>Normalisation</h3>")
        out.append(_table(["source", "rule", "count"], norm_rows))
    for key, title in (("near_dedup", "Near-duplicates"), ("contamination", "Decontamination")):
        if isinstance(card.get(key), dict):
            out.append(f"<h2>{_e(title)}</h2>")
            out.append(f'<pre class="json">{_e(json.dumps(card[key], indent=2, ensure_ascii=False))}</pre>')
    if card.get("warnings"):
        out.append("<h2>Warnings</h2><ul>")
        out.extend(f'<li class="warning">{_e(w)}</li>' for w in card["warnings"])
        out.append("</ul>")
    out.append("<h2 id=\"provenance\">Provenance</h2>")
    out.append(f"<p>Recipe <code>{_e(r['path'])}</code>, sha256 <code>{_e(r['sha256'])}</code>, seed {_e(r['seed'])}, "
               f"order <code>{_e(r['order'])}</code>, max tokens {_e(r['max_tokens'])}.</p>")
    recipe_rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in r.items()]
    out.append(_table(["recipe field", "value"], recipe_rows))
    file_rows = [[s["name"], f["path"], f["bytes"], f["sha256"]] for s in sources for f in s["files"]]
    out.append(_table(["source", "file", "bytes", "sha256"], file_rows))
    shard_rows = [[d["path"], d["rows"], d["bytes"], d["sha256"]] for d in card["outputs"]["data"]]
    out.append(_table(["output", "rows", "bytes", "sha256"], shard_rows))
    out.append("<p>Versions: " + _e(", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items())) + ".</p>")
    return out


def _plot_section(card: dict[str, Any], out_dir: Path) -> list[str]:
    """Plots from OUT/plots, or drawn now for builds made before plots were part of the card."""
    pngs = sorted((out_dir / "plots").glob("*.png"))
    tmp = None
    if not pngs:
        from mixer.report.plots import write_plots

        tmp = tempfile.TemporaryDirectory(prefix="mixer-plots-")
        pngs = write_plots(card, out_dir / "data", Path(tmp.name))
    order = list(PLOTS)
    pngs.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name))
    out = ['<h2 id="plots">Plots</h2>']
    for p in pngs:
        title, caption = PLOTS.get(p.stem, (p.stem.replace("_", " "), ""))
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{_inline_code(caption)}</figcaption></figure>")
    if tmp is not None:
        tmp.cleanup()
    return out


# -- records --------------------------------------------------------------------------------------

def _message_html(role: str | None, content: str | None, label: str | None = None) -> str:
    role = role or "?"
    cls = role if role in ("user", "assistant", "system") else "other"
    label = label or role
    text = content or ""
    if len(text) > LONG_TEXT:
        body = (f"<details><summary><span class=\"content\">{_e(text[:PREVIEW])}…</span> "
                f"(expand {len(text):,} characters)</summary><div class=\"content\">{_e(text)}</div></details>")
    else:
        body = f'<div class="content">{_e(text)}</div>'
    return f'<div class="turn role-{cls}"><div class="role">{_e(label)}</div>{body}</div>'


def _record_html(head: str, messages: list[dict[str, Any]] | None, raw: str | None = None,
                 extra_class: str = "") -> str:
    parts = [f'<div class="record {extra_class}"><div class="record-head mono">{head}</div>']
    if messages:
        parts.extend(_message_html(m.get("role"), m.get("content"), m.get("label")) for m in messages)
    elif raw:
        parts.append(_message_html("raw", raw))
    else:
        parts.append('<div class="turn"><em>no content</em></div>')
    parts.append("</div>")
    return "".join(parts)


def first_records(card: dict[str, Any], data_dir: Path, n: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``n`` output records of each source group, in output (shuffled) order; stops reading
    once every group has its ``n``."""
    label_group, groups = source_groups(card)
    picked: dict[str, list[dict[str, Any]]] = {g: [] for g in groups}
    if n <= 0 or not Path(data_dir).is_dir():
        return picked
    preference = is_preference(card)
    columns = ["prompt", "chosen", "rejected"] if preference else ["messages"]
    for batch in iter_batches(data_dir, ["dataset", "id", *columns, "n_tokens"], batch_size=1024):
        for rec in batch.to_pylist():
            group = picked.setdefault(label_group.get(rec["dataset"], rec["dataset"]), [])
            if len(group) < n:
                if preference:  # one conversation with both replies, labelled
                    rec["messages"] = [*(rec["prompt"] or []),
                                       *({**m, "label": f"{m['role']} · chosen"} for m in rec["chosen"] or []),
                                       *({**m, "label": f"{m['role']} · rejected"} for m in rec["rejected"] or [])]
                group.append(rec)
        if all(len(v) >= n for v in picked.values()):
            break
    return picked


def first_dropped(out_dir: Path, source: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` dropped records of a source (from OUT/dropped/<source>.parquet)."""
    import pyarrow.parquet as pq

    path = out_dir / "dropped" / f"{source}.parquet"
    if n <= 0 or not path.exists():
        return []
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=n):
        return batch.to_pylist()[:n]
    return []


def _records_section(card: dict[str, Any], out_dir: Path, n: int) -> list[str]:
    picked = first_records(card, out_dir / "data", n)
    out = ['<h2 id="records">Sample records</h2>',
           f"<p>The first {n} records of each source in output order, and the first {n} it dropped.</p>",
           '<nav class="toc">' + "".join(f'<a href="#{_slug(g)}">{_e(g)}</a>' for g in picked) + "</nav>"]
    names = {s["name"] for s in card["sources"]}
    for group, records in picked.items():
        out.append(f'<section id="{_slug(group)}"><h3>{_e(group)}</h3>')
        if not records:
            out.append("<p><em>No records of this source in the output.</em></p>")
        for rec in records:
            head = f"{_e(rec['dataset'])} · {_e(rec['id'])} · {_num(rec.get('n_tokens'))} tokens"
            out.append(_record_html(head, rec["messages"]))
        dropped = first_dropped(out_dir, group, n) if group in names else []
        if dropped:
            out.append(f"<details><summary>{len(dropped)} dropped records of {_e(group)}</summary>")
            for d in dropped:
                head = (f"{_e(d.get('id'))} · {_e(d.get('stage'))} · <b>{_e(d.get('reason'))}</b>"
                        + (f" · {_e(d.get('detail'))}" if d.get("detail") else "")
                        + (f" · kept {_e(d.get('kept_id'))}" if d.get("kept_id") else ""))
                out.append(_record_html(head, d.get("messages"), d.get("raw"), "dropped"))
            out.append("</details>")
        out.append("</section>")
    return out


def render_html(out_dir: Path, n_per_source: int = 5) -> str:
    """The whole page for the build in ``out_dir`` as a string (nothing is fetched when it is opened)."""
    out_dir = Path(out_dir)
    card = load_card(out_dir)
    t = card["totals"]
    title = f"{card['name']} — data card"
    body = [f"<h1>{_e(card['name'])}</h1>"]
    if card.get("description"):
        body.append(f"<p>{_e(card['description'].strip())}</p>")
    body.append(f"<p><b>{t['records']:,} records</b>, {t['tokens']['total']:,} tokens from "
                f"{len(card['sources'])} sources; built by mixer {_e(card.get('versions', {}).get('mixer'))} from "
                f"<code>{_e(card['recipe']['path'])}</code>.</p>")
    body.append('<nav class="toc"><a href="#plots">plots</a><a href="#sources">sources</a>'
                '<a href="#tokens">tokens</a><a href="#dropped">dropped</a><a href="#provenance">provenance</a>'
                '<a href="#records">records</a></nav>')
    body += _plot_section(card, out_dir)
    body += _card_sections(card)
    body += _records_section(card, out_dir, n_per_source)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"{HTML_MARKER}\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def write_html_report(out_dir: Path, html_path: Path, n: int = 5) -> Path:
    """Body of ``mixer card OUT --html PATH [-n N]``: render and write the page, return its path."""
    html_path = Path(html_path)
    if html_path.parent != Path(""):
        html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(out_dir, n), encoding="utf-8")
    return html_path
