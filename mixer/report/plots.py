"""Plots of a build for its data card: PNGs written next to the card and embedded in ``README.md``.

People decide whether to train on a mixture by looking at it, so the card carries pictures of what
the tables say: each source's share of records and tokens, token lengths against the ``max_tokens``
cut, turns per conversation, what was dropped and why, and (when near-dedup ran) cluster sizes.

The card holds only summaries, so lengths and turns are read back from the build's Parquet shards.
The output must be byte-identical across runs on the same machine, because the committed sample card
is compared against a fresh build: the figures are drawn with the Agg renderer through
``matplotlib.figure.Figure`` (no pyplot, no global backend switch), with a fixed size, dpi, font and
palette, and without the ``Software`` PNG metadata that carries the matplotlib version.

matplotlib is imported inside the functions so that ``mixer --help`` stays fast.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: file stem -> (title, caption) in the order the plots appear in the card.
PLOTS: dict[str, tuple[str, str]] = {
    "share": ("Share of records and tokens per source",
              "Each source's share of the final records (repeats counted) and of the tokens."),
    "tokens": ("Token lengths per source",
               "Tokens per record (log scale): boxes span p25-p75 with the median, whiskers p5-p95, dots "
               "are the records beyond. The dashed line is the recipe's `max_tokens` cut; longer records "
               "were dropped."),
    "turns": ("Turns per conversation",
              "Share of each source's records by number of assistant turns."),
    "drops": ("Dropped records per source and reason",
              "Records removed before sampling, by reason (every one is in `dropped/<source>.parquet`)."),
    "near_dedup_clusters": ("Near-duplicate cluster sizes",
                            "Clusters of near-duplicates found by MinHash LSH, by size (keeper included)."),
}

#: Figure width in inches and resolution: 900 px wide, readable on the Hub and in a terminal viewer.
WIDTH_IN = 9.0
DPI = 100
#: Bins of assistant turns for the turns plot: (label, lowest, highest inclusive).
TURN_BINS = [("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9+", 9, 1 << 30)]
_RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib, so every machine renders the same glyphs
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": DPI,
}


# -- data -----------------------------------------------------------------------------------------

def source_groups(card: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Map each output ``dataset`` label to the source that produced it, and list groups in recipe order.

    The output Parquet has no source column, only the adapter's ``dataset`` label (``science.*`` for
    one source, the same ``flan_v2`` for two sources read with the same adapter). A label claimed by
    several sources cannot be split between them, so their records are shown under a joint group
    named ``a + b`` rather than attributed to one of them.
    """
    owners: dict[str, list[str]] = {}
    for s in card["sources"]:
        for label in s.get("datasets", {}):
            owners.setdefault(label, []).append(s["name"])
    label_group = {label: " + ".join(names) for label, names in owners.items()}
    groups: list[str] = []
    for s in card["sources"]:
        mine = [g for label, g in label_group.items() if s["name"] in owners[label]]
        for g in [*sorted(set(mine), key=lambda g: (g != s["name"], g))] or [s["name"]]:
            if g not in groups:
                groups.append(g)
    return label_group, groups


@dataclass
class GroupData:
    """Per-record values of one source group, read from the output shards."""

    tokens: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)


def iter_batches(data_dir: Path, columns: list[str], batch_size: int = 8192) -> Iterator[Any]:
    """Record batches of the build's shards in file order (the shuffled output order)."""
    import pyarrow.parquet as pq

    for path in sorted(Path(data_dir).glob("*.parquet")):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)


def is_preference(card: dict[str, Any]) -> bool:
    """Preference builds publish ``prompt``/``chosen``/``rejected`` instead of ``messages``."""
    return card.get("recipe", {}).get("kind") == "preference"


def read_group_data(card: dict[str, Any], data_dir: Path) -> dict[str, GroupData]:
    """Token counts and assistant turns per source group, batch by batch so memory stays flat.

    For a preference pair the turns are those of the prompt plus the one chosen reply.
    """
    from mixer.stages.card import assistant_turns

    label_group, groups = source_groups(card)
    preference = is_preference(card)
    conversation = "prompt" if preference else "messages"
    out = {g: GroupData() for g in groups}
    for batch in iter_batches(data_dir, ["dataset", "n_tokens", conversation]):
        labels = batch.column("dataset").to_pylist()
        tokens = batch.column("n_tokens").to_pylist()
        turns = [t + preference for t in assistant_turns(batch.column(conversation))]
        for label, tk, tu in zip(labels, tokens, turns, strict=True):
            group = label_group.get(label, label)
            out.setdefault(group, GroupData())
            out[group].tokens.append(int(tk))
            out[group].turns.append(int(tu))
    return out


def near_cluster_sizes(card: dict[str, Any]) -> dict[int, int]:
    """Cluster size -> number of clusters from the card's near-dedup section ({} when it did not run)."""
    near = card.get("near_dedup")
    if not isinstance(near, dict):
        return {}
    hist = near.get("cluster_size_histogram") or near.get("cluster_sizes") or {}
    if isinstance(hist, list):  # a plain list of sizes
        return dict(sorted(Counter(int(v) for v in hist).items()))
    return {int(k): int(v) for k, v in sorted(hist.items(), key=lambda kv: int(kv[0]))}


# -- drawing --------------------------------------------------------------------------------------

def _colors(n: int) -> list[Any]:
    """A fixed qualitative palette, the same source getting the same colour in every plot."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the strong colours first, then the light ones
    return [tab20(order[i % 20]) for i in range(n)]


def _figure(rows: int, min_height: float = 2.4) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, max(min_height, 1.3 + 0.34 * rows)), dpi=DPI, layout="constrained")
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _label_rows(ax: Any, names: list[str]) -> None:
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first source of the recipe on top


def plot_share(card: dict[str, Any], path: Path) -> Path:
    """Two bar panels: % of final records and % of tokens per source."""
    sources = card["sources"]
    names = [s["name"] for s in sources]
    records = [s["final"] for s in sources]
    tokens = [s["tokens"]["total"] for s in sources]
    colors = _colors(len(names))
    fig = _figure(len(names))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, values, what in ((axes[0], records, "records"), (axes[1], tokens, "tokens")):
        total = sum(values) or 1
        shares = [100 * v / total for v in values]
        ax.barh(range(len(names)), shares, color=colors)
        for i, (share, v) in enumerate(zip(shares, values, strict=True)):
            ax.text(share, i, f" {share:.1f}% ({v:,})", va="center", fontsize=8)
        ax.set_xlim(0, max(shares + [1]) * 1.45)
        ax.set_xlabel(f"% of {sum(values):,} {what}")
        ax.set_title(f"share of {what}", loc="left")
    _label_rows(axes[0], names)
    fig.suptitle(f"{card['name']}: records and tokens per source", fontweight="bold")
    return _save(fig, path)


def _boxplot_horizontal(ax: Any, data: list[list[int]], **kwargs: Any) -> Any:
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    orient = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    return ax.boxplot(data, **orient, **kwargs)


def plot_tokens(card: dict[str, Any], groups: dict[str, GroupData], order: list[str], path: Path) -> Path:
    """Horizontal box plots of tokens per record, log scale, with the ``max_tokens`` cut marked."""
    max_tokens = card["recipe"].get("max_tokens")
    from matplotlib import ticker

    fig = _figure(len(order))
    ax = fig.subplots()
    data = [groups[g].tokens if groups.get(g) and groups[g].tokens else [] for g in order]
    colors = _colors(len(order))
    present = [i for i, d in enumerate(data) if d]
    if present:
        box = _boxplot_horizontal(
            ax, [data[i] for i in present], positions=present, whis=(5, 95), widths=0.6, patch_artist=True,
            flierprops={"marker": ".", "markersize": 3, "alpha": 0.5},
            medianprops={"color": "black"})
        for patch, i in zip(box["boxes"], present, strict=True):
            patch.set_facecolor(colors[i])
    lowest = min((min(d) for d in data if d), default=1)
    highest = max((max(d) for d in data if d), default=1)
    ax.set_xscale("log")
    ax.set_xlim(max(1, lowest / 2), max(highest, max_tokens or 1) * 2)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    for i, d in enumerate(data):
        if d:
            s = sorted(d)
            label = f"p50 {s[(len(s) + 1) // 2 - 1]:,} · max {s[-1]:,}"
        else:
            label = "no records"
        ax.annotate(label, (1.01, i), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    if max_tokens:
        ax.axvline(max_tokens, color="#d62728", linestyle="--", linewidth=1.2)
        ax.text(max_tokens, -0.55, f"max_tokens = {max_tokens:,}", color="#d62728", va="bottom", ha="center",
                fontsize=8)
    _label_rows(ax, order)
    ax.set_xlabel(f"tokens per record ({card['recipe']['tokenizer']}, Tulu chat format; log scale)")
    ax.set_title("token length per source", loc="left", pad=14)
    ax.grid(axis="x", which="major", alpha=0.3)
    return _save(fig, path)


def plot_turns(groups: dict[str, GroupData], order: list[str], path: Path) -> Path:
    """100% stacked bars: share of each source's records with 1, 2, 3-4... assistant turns."""
    counts = []
    for g in order:
        turns = groups[g].turns if g in groups else []
        counts.append([sum(lo <= t <= hi for t in turns) for _, lo, hi in TURN_BINS])
    used = [j for j in range(len(TURN_BINS)) if any(c[j] for c in counts)]
    fig = _figure(len(order))
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    left = [0.0] * len(order)
    for k, j in enumerate(used):
        widths = [100 * c[j] / (sum(c) or 1) for c in counts]
        ax.barh(range(len(order)), widths, left=left, color=cmap(0.15 + 0.75 * k / max(1, len(used) - 1)),
                label=TURN_BINS[j][0], edgecolor="white", linewidth=0.5)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    for i, c in enumerate(counts):
        ax.text(101, i, f"n {sum(c):,}" if sum(c) else "no records", va="center", fontsize=8)
    ax.set_xlim(0, 112)
    ax.set_xlabel("% of the source's records")
    _label_rows(ax, order)
    if used:  # a build with no records has no bins to name (and matplotlib warns about an empty legend)
        fig.legend(title="assistant turns", loc="outside lower center", ncol=len(used), frameon=False)
    ax.set_title("turns per conversation", loc="left")
    return _save(fig, path)


def plot_drops(card: dict[str, Any], path: Path) -> Path | None:
    """Stacked bars of dropped records per source, one segment per reason; None if nothing was dropped."""
    sources = card["sources"]
    totals: Counter[str] = Counter()
    for s in sources:
        totals.update(s["dropped"])
    if not totals:
        return None
    reasons = sorted(totals, key=lambda r: (-totals[r], r))
    names = [s["name"] for s in sources]
    from matplotlib import ticker

    colors = _colors(len(reasons))
    fig = _figure(len(names))
    ax = fig.subplots()
    left = [0] * len(names)
    for reason, color in zip(reasons, colors, strict=True):
        widths = [s["dropped"].get(reason, 0) for s in sources]
        ax.barh(range(len(names)), widths, left=left, color=color, label=reason, edgecolor="white", linewidth=0.5)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    for i, s in enumerate(sources):
        pct = 100 * s["dropped_total"] / s["records_in"] if s["records_in"] else 0.0
        ax.text(left[i], i, f" {s['dropped_total']:,} of {s['records_in']:,} ({pct:.1f}%)", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.35 or 1)
    ax.set_xlabel("records dropped")
    _label_rows(ax, names)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    fig.legend(title="reason", loc="outside right upper", fontsize=8, title_fontsize=8, frameon=False)
    ax.set_title("dropped records per source and reason", loc="left")
    return _save(fig, path)


#: Cluster-size bins once there are too many distinct sizes for one bar each.
CLUSTER_BINS = [(2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 1 << 62)]


def plot_near_clusters(sizes: dict[int, int], path: Path) -> Path:
    """Bars of near-duplicate clusters per cluster size (log count axis when sizes vary a lot)."""
    if len(sizes) > 12:
        bars = {(f"{lo}" if lo == hi else f"{lo}+" if hi > 1 << 40 else f"{lo}-{hi}"):
                sum(n for k, n in sizes.items() if lo <= k <= hi) for lo, hi in CLUSTER_BINS}
        bars = {k: v for k, v in bars.items() if v}
    else:
        bars = {str(k): v for k, v in sizes.items()}
    fig = _figure(0, min_height=3.2)
    ax = fig.subplots()
    labels = list(bars)
    ax.bar(range(len(labels)), [bars[x] for x in labels], color=_colors(1)[0])
    ax.set_xticks(range(len(labels)), labels=labels)
    for i, x in enumerate(labels):
        ax.text(i, bars[x], f"{bars[x]:,}", ha="center", va="bottom", fontsize=8)
    if max(bars.values()) > 50 * max(1, min(bars.values())):
        ax.set_yscale("log")
    ax.set_xlabel("records in the cluster (keeper included)")
    ax.set_ylabel("clusters")
    ax.set_title(f"near-duplicate clusters ({sum(sizes.values()):,})", loc="left")
    return _save(fig, path)


def write_plots(card: dict[str, Any], data_dir: Path, out_dir: Path) -> list[Path]:
    """Write the card's PNGs into ``out_dir`` (OUT/plots) and return their paths in card order.

    ``data_dir`` is the build's ``data/`` folder (lengths and turns are read from it). A plot with
    nothing to show (no drops, no near-dedup) is not written, so the card does not show empty axes.
    """
    import matplotlib

    out_dir = Path(out_dir)
    groups = read_group_data(card, Path(data_dir))
    _, order = source_groups(card)
    order += [g for g in groups if g not in order]  # labels the card does not list (should not happen)
    paths: list[Path | None] = []
    with matplotlib.rc_context(_RC):
        paths.append(plot_share(card, out_dir / "share.png"))
        paths.append(plot_tokens(card, groups, order, out_dir / "tokens.png"))
        paths.append(plot_turns(groups, order, out_dir / "turns.png"))
        paths.append(plot_drops(card, out_dir / "drops.png"))
        sizes = near_cluster_sizes(card)
        paths.append(plot_near_clusters(sizes, out_dir / "near_dedup_clusters.png") if sizes else None)
    return [p for p in paths if p is not None]


# -- Markdown -------------------------------------------------------------------------------------

def render_plot_section(plot_paths: list[Path], out_dir: Path) -> str:
    """The ``## Plots`` Markdown section embedding the PNGs by paths relative to ``out_dir``.

    Relative paths keep the card portable: they resolve on the Hugging Face Hub, on GitHub and in a
    local Markdown viewer alike.
    """
    if not plot_paths:
        return ""
    out = ["## Plots\n"]
    for p in plot_paths:
        p = Path(p)
        try:
            rel = p.resolve().relative_to(Path(out_dir).resolve()).as_posix()
        except ValueError:
            rel = p.name
        title, caption = PLOTS.get(p.stem, (p.stem.replace("_", " "), ""))
        out.append(f"### {title}\n")
        out.append(f"![{title}]({rel})\n")
        if caption:
            out.append(caption + "\n")
    return "\n".join(out)


def write_sample_card(build_dir: Path, dest: Path) -> list[Path]:
    """Copy a build's committed-card files (README.md, card.json, plots/*.png) into ``dest``.

    ``data_cards/v2-sample/`` holds these for the bundled sample so that someone browsing the
    repository sees a card without running anything; the folder is replaced, not merged, so a plot
    that a build no longer writes does not linger.
    """
    build_dir, dest = Path(build_dir), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "plots").mkdir(parents=True)
    written = []
    for name in ("README.md", "card.json"):
        if (build_dir / name).exists():
            written.append(Path(shutil.copyfile(build_dir / name, dest / name)))
    for png in sorted((build_dir / "plots").glob("*.png")):
        written.append(Path(shutil.copyfile(png, dest / "plots" / png.name)))
    return written
