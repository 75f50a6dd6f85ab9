"""The data card: ``card.json`` (machine-readable) and ``README.md`` (a Hugging Face dataset card
whose body is the same numbers as tables), plus the terminal view used by ``mixer card``.

The card is deterministic for the same inputs (no timestamps, paths relative to ``raw_dir``) so that
committed cards can be checked against a fresh build.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from mixer import __version__
from mixer.recipe import license_key
from mixer.stats import SourceStats, summary
from mixer.tables import SpillFiles, list_sums

#: Hugging Face Hub licence identifiers for the licences the known sources carry.
HF_LICENSE_IDS = {
    "apache-2.0": "apache-2.0", "mit": "mit", "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "odc-by": "odc-by", "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0", "cc0-1.0": "cc0-1.0",
}


def assistant_turns(messages: pa.ChunkedArray | pa.Array) -> list[int]:
    """Number of assistant messages per record, computed on the Arrow columns."""
    arr = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    if len(arr) == 0:
        return []
    is_assistant = pc.equal(pc.list_flatten(arr).field("role"), "assistant").to_numpy(zero_copy_only=False)
    return list_sums(arr, is_assistant).tolist()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mixer": __version__}
    for pkg in ("pyarrow", "polars", "numpy", "tiktoken", "tokenizers", "datasketch", "orjson", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _relative(path: str, base: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return path


@dataclass
class SelectedColumns:
    """What the card needs from one source's selected records: read once, a batch at a time."""

    tokens: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    datasets: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, table: SpillFiles | None) -> SelectedColumns:
        out = cls()
        if table is None:
            return out
        for batch in table.iter_batches(["dataset", "messages", "n_tokens"]):
            out.tokens.extend(batch.column("n_tokens").to_pylist())
            out.turns.extend(assistant_turns(batch.column("messages")))
            for row in pc.value_counts(batch.column("dataset")).to_pylist():
                out.datasets[row["values"]] += row["counts"]
        return out


def source_card(stats: SourceStats, selected: SelectedColumns, raw_dir: str) -> dict[str, Any]:
    tokens, turns = selected.tokens, selected.turns
    datasets = {name: n * stats.repeat for name, n in selected.datasets.items()}
    return {
        "name": stats.name,
        "adapter": stats.adapter,
        "license": stats.license,
        "take": stats.take,
        "repeat": stats.repeat,
        "excluded": stats.excluded,
        "files": [{"path": _relative(f.path, raw_dir), "bytes": f.bytes, "sha256": f.sha256}
                  for f in stats.files],
        "raw_records": stats.raw_records,
        "records_in": stats.records_in,
        "dropped": dict(sorted(stats.dropped.items())),
        "dropped_total": sum(stats.dropped.values()),
        "normalised": dict(sorted(stats.normalised.items())),
        "not_sampled": stats.not_sampled,
        "selected": stats.selected,
        "shortfall": stats.shortfall,
        "final": stats.final,
        "datasets": dict(sorted(datasets.items())),
        "tokens": summary(tokens * stats.repeat),
        "turns": summary(turns * stats.repeat),
    }


def build_card(state: Any, shards: list[dict[str, Any]], dropped_files: list[str]) -> dict[str, Any]:
    """The card as a JSON-ready dict (state is the pipeline's BuildState)."""
    recipe = state.recipe
    selected = {s.name: SelectedColumns.read(state.selected.get(s.name)) for s in recipe.sources}
    sources = [source_card(state.stats[s.name], selected[s.name], recipe.raw_dir) for s in recipe.sources]
    all_tokens: list[int] = []
    all_turns: list[int] = []
    for s in recipe.sources:
        all_tokens.extend(selected[s.name].tokens * s.repeat)
        all_turns.extend(selected[s.name].turns * s.repeat)
    card = {
        "name": recipe.name,
        "description": recipe.description,
        "recipe": {
            "path": recipe.path, "sha256": recipe.sha256, "seed": recipe.seed, "kind": recipe.kind,
            "order": recipe.order,
            "tokenizer": recipe.tokenizer, "max_tokens": recipe.max_tokens,
            "allow_licenses": list(recipe.allow_licenses) if recipe.allow_licenses is not None else None,
            "llm_mention_filter": recipe.filters.llm_mentions.enabled,
            "exact_dedup": recipe.dedup.exact,
            "near_dedup": recipe.dedup.near is not None and recipe.dedup.near.enabled,
            "decontaminate": recipe.decontaminate is not None,
        },
        "totals": {
            "records": len(all_tokens),
            "records_in": sum(s["records_in"] for s in sources),
            "dropped": sum(s["dropped_total"] for s in sources),
            "not_sampled": sum(s["not_sampled"] for s in sources),
            "tokens": summary(all_tokens),
            "turns": summary(all_turns),
        },
        "sources": sources,
        "outputs": {"data": shards, "dropped": dropped_files},
        "warnings": list(state.warnings),
        "versions": _versions(),
    }
    card.update(state.extra_card)
    return card


# -- Markdown ---------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def front_matter(card: dict[str, Any]) -> dict[str, Any]:
    message = [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]
    columns = ["prompt", "chosen", "rejected"] if card["recipe"].get("kind") == "preference" else ["messages"]
    licences = sorted({HF_LICENSE_IDS.get(license_key(s["license"]), "other")
                       for s in card["sources"] if s["license"] and not s["excluded"]}) or ["other"]
    return {
        "license": licences if len(licences) > 1 else licences[0],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {
            "features": [
                {"name": "dataset", "dtype": "string"},
                {"name": "id", "dtype": "string"},
                *({"name": name, "list": message} for name in columns),
                {"name": "n_tokens", "dtype": "int32"},
            ],
            "splits": [{"name": "train", "num_examples": card["totals"]["records"]}],
        },
        "tags": ["instruction-tuning", "sft", "mixer"],
    }


def render_markdown(card: dict[str, Any], plot_section: str = "") -> str:
    fm = yaml.safe_dump(front_matter(card), sort_keys=False, allow_unicode=True)
    t, r = card["totals"], card["recipe"]
    out = [f"---\n{fm}---\n", f"# {card['name']}\n"]
    if card["description"]:
        out.append(card["description"].strip() + "\n")
    out.append(f"Built by mixer {card['versions']['mixer']} from `{r['path']}` (seed {r['seed']}, "
               f"order `{r['order']}`, tokenizer `{r['tokenizer']}`, max tokens {r['max_tokens']}). "
               f"**{t['records']:,} records**, {t['tokens']['total']:,} tokens.\n")
    out.append("Load it with `datasets.load_dataset(\"parquet\", data_dir=\"<this folder>/data\")`. "
               "Every record removed on the way is in `dropped/<source>.parquet` with its stage and "
               "reason; `card.json` holds these numbers machine-readable.\n")
    if plot_section:
        out.append(plot_section)
    out.append("## Records per source\n")
    out.append("Per source: `in` = records entering the pipeline = dropped + not sampled + selected; "
               "final = selected x repeat.\n")
    rows = [[s["name"], s["license"] or "unknown", s["raw_records"], s["records_in"], s["dropped_total"],
             s["not_sampled"], s["selected"], s["repeat"], s["final"],
             s["excluded"] or (f"short by {s['shortfall']}" if s["shortfall"] else "")]
            for s in card["sources"]]
    rows.append(["**total**", "", sum(s["raw_records"] for s in card["sources"]), t["records_in"],
                 t["dropped"], t["not_sampled"], sum(s["selected"] for s in card["sources"]), "",
                 t["records"], ""])
    out.append(_table(["source", "licence", "raw read", "in", "dropped", "not sampled", "selected",
                       "repeat", "final", "note"], rows) + "\n")
    drop_rows = [[s["name"], reason, n] for s in card["sources"] for reason, n in s["dropped"].items()]
    out.append("## Dropped, by reason\n")
    out.append(_table(["source", "reason", "records"], drop_rows) + "\n" if drop_rows else "Nothing.\n")
    norm_rows = [[s["name"], rule, n] for s in card["sources"] for rule, n in s["normalised"].items()]
    if norm_rows:
        out.append("## Normalisation\n")
        out.append("Records changed per rule (`empty_turns_removed` counts turns).\n")
        out.append(_table(["source", "rule", "count"], norm_rows) + "\n")
    out.append("## Tokens and turns\n")
    out.append(f"Tokens of the Tulu-formatted conversation (`{r['tokenizer']}`); turns = assistant "
               "messages. Percentiles are nearest-rank.\n")
    stat_rows = []
    for s in [*card["sources"], {"name": "**all**", "tokens": t["tokens"], "turns": t["turns"]}]:
        tk, tu = s["tokens"], s["turns"]
        stat_rows.append([s["name"], tk["count"], tk["total"], tk["mean"], tk["p50"], tk["p95"], tk["max"],
                          tu["mean"], tu["p50"], tu["p95"], tu["max"]])
    out.append(_table(["source", "records", "tokens", "mean", "p50", "p95", "max",
                       "turns mean", "turns p50", "turns p95", "turns max"], stat_rows) + "\n")
    for key, title in (("near_dedup", "Near-duplicates"), ("contamination", "Decontamination")):
        if key in card:
            out.append(f"## {title}\n")
            out.append("```json\n" + json.dumps(card[key], indent=2, ensure_ascii=False)[:20000] + "\n```\n")
    if card["warnings"]:
        out.append("## Warnings\n")
        out.extend(f"- {w}" for w in card["warnings"])
        out.append("")
    out.append("## Provenance\n")
    out.append(f"Recipe `{r['path']}` sha256 `{r['sha256']}`; seed {r['seed']}.\n")
    file_rows = [[s["name"], f["path"], f["bytes"], f["sha256"]] for s in card["sources"] for f in s["files"]]
    out.append(_table(["source", "file", "bytes", "sha256"], file_rows) + "\n")
    shard_rows = [[d["path"], d["rows"], d["bytes"], d["sha256"]] for d in card["outputs"]["data"]]
    out.append(_table(["output", "rows", "bytes", "sha256"], shard_rows) + "\n")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + ".\n")
    return "\n".join(out)


def load_card(out_dir: Path) -> dict[str, Any]:
    from mixer.errors import MixerError

    path = Path(out_dir) / "card.json"
    if not path.exists():
        raise MixerError(f"{out_dir}: no card.json here; is this the output folder of `mixer build`?")
    return json.loads(path.read_text(encoding="utf-8"))
