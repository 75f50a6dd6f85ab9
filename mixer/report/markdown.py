"""The data card as people read it: ``README.md`` (a Hugging Face dataset card whose body is the
numbers of ``card.json`` as tables) and loading a build's card for ``mixer card`` / ``diff``.
The numbers themselves are computed by the card stage (``mixer.stages.card``).

The card is deterministic for the same inputs (no timestamps, paths relative to ``raw_dir``) so that
committed cards can be checked against a fresh build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from mixer.core.records import SCORE_FIELDS
from mixer.recipe.load import license_key

#: Hugging Face Hub licence identifiers for the licences the known sources carry.
HF_LICENSE_IDS = {
    "apache-2.0": "apache-2.0", "mit": "mit", "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "odc-by": "odc-by", "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0", "cc0-1.0": "cc0-1.0",
}


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
    preference = card["recipe"].get("kind") == "preference"
    columns = ["prompt", "chosen", "rejected"] if preference else ["messages"]
    licences = sorted({HF_LICENSE_IDS.get(license_key(s["license"]), "other")
                       for s in card["sources"] if s["license"] and not s["excluded"]}) or ["other"]
    data_bytes = sum(shard["bytes"] for shard in card["outputs"]["data"])
    return {
        "license": licences if len(licences) > 1 else licences[0],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {
            "features": [
                {"name": "dataset", "dtype": "string"},
                {"name": "id", "dtype": "string"},
                *({"name": name, "list": message} for name in columns),
                *({"name": name, "dtype": "float64"} for name in (SCORE_FIELDS if preference else ())),
                {"name": "n_tokens", "dtype": "int32"},
            ],
            # datasets ignores a split entry without num_bytes (with a warning on every load_dataset);
            # the figure is the Parquet shards' bytes, which is also what a download costs
            "splits": [{"name": "train", "num_bytes": data_bytes, "num_examples": card["totals"]["records"]}],
            "download_size": data_bytes,
            "dataset_size": data_bytes,
        },
        "tags": ["instruction-tuning", "sft", "mixer"],
    }


def token_limit(max_tokens: int | None) -> str:
    """The recipe's length limit as the card header says it ("no token limit", not "max tokens None")."""
    return "no token limit" if max_tokens is None else f"max tokens {max_tokens}"


def render_markdown(card: dict[str, Any], plot_section: str = "") -> str:
    fm = yaml.safe_dump(front_matter(card), sort_keys=False, allow_unicode=True)
    t, r = card["totals"], card["recipe"]
    out = [f"---\n{fm}---\n", f"# {card['name']}\n"]
    if card["description"]:
        out.append(card["description"].strip() + "\n")
    out.append(f"Built by mixer {card['versions']['mixer']} from `{r['path']}` (seed {r['seed']}, "
               f"order `{r['order']}`, tokenizer `{r['tokenizer']}`, {token_limit(r['max_tokens'])}). "
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
    if any("scores" in s for s in card["sources"]):
        out.append(scores_section(card))
    if any("llm_mentions" in s for s in card["sources"]):
        out.append(mention_modes_section(card))
    if any("token_take" in s for s in card["sources"]):
        out.append(token_take_section(card))
    for key, title in (("near_dedup", "Near-duplicates"), ("contamination", "Decontamination")):
        if key in card:
            out.append(f"## {title}\n")
            numbers = {k: v for k, v in card[key].items() if k != "flagged"}
            out.append("```json\n" + json.dumps(numbers, indent=2, ensure_ascii=False)[:20000] + "\n```\n")
            if key == "contamination" and card[key].get("flagged"):
                out.append(flagged_section(card[key], card["recipe"]))
    if card["warnings"]:
        out.append("## Warnings\n")
        out.extend(f"- {w}" for w in card["warnings"])
        out.append("")
    out.append("## Provenance\n")
    out.append(f"Recipe `{r['path']}` sha256 `{r['sha256']}`; seed {r['seed']}.\n")
    file_rows = [[s["name"], f["path"], f["bytes"], f["sha256"]] for s in card["sources"] for f in s["files"]]
    out.append(_table(["source", "file", "bytes", "sha256"], file_rows) + "\n")
    if card.get("hub"):
        out.append(hub_section(card["hub"]))
    shard_rows = [[d["path"], d["rows"], d["bytes"], d["sha256"]] for d in card["outputs"]["data"]]
    out.append(_table(["output", "rows", "bytes", "sha256"], shard_rows) + "\n")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + ".\n")
    return "\n".join(out)


#: flagged records the card lists per benchmark; the HTML report (``mixer card OUT --html``) lists all
AUDIT_LIMIT = 20


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", text).replace("\n", " ")


def _md_marked(entry: dict[str, Any]) -> str:
    """An audit text with its shared words in bold (everything else escaped, on one line)."""
    text, pieces, pos = entry["text"], [], 0
    for start, end in entry["marks"]:
        pieces += [_md_escape(text[pos:start]), "**" + _md_escape(text[start:end]) + "**"]
        pos = end
    pieces.append(_md_escape(text[pos:]))
    return ("… " if entry["cut_before"] else "") + "".join(pieces) + (" …" if entry["cut_after"] else "")


def flagged_section(contamination: dict[str, Any], recipe: dict[str, Any]) -> str:
    """Every record decontamination removed, beside the benchmark item it matched with the shared words
    in bold, per benchmark (the first ``AUDIT_LIMIT``, then how many more)."""
    out = []
    numbers = set(contamination.get("normalise_numbers", []))
    for bench, entries in contamination["flagged"].items():
        if not entries:
            continue
        out.append(f"### Flagged for {bench} ({len(entries):,})\n")
        out.append(f"Each removed record's prompt beside the {bench} item it matched; **bold** words lie in a word "
                   "sequence both share" + (" (numbers compared as one placeholder)" if bench in numbers else "")
                   + ". Judge each: a shared template or a common phrase is not a copy.\n")
        for k, e in enumerate(entries[:AUDIT_LIMIT], 1):
            rid = str(e["id"]).replace("`", "'")  # shown as code: no escapes, no backtick
            out.append(f"{k}. `{e['source']}` · `{rid}` · rule {e['rule']}, coverage "
                       f"{e['coverage']:.2f}, overlap {e['overlap']:.2f}\n"
                       f"   - record: {_md_marked(e['record'])}\n"
                       f"   - {bench} item {e['item_index']}: {_md_marked(e['item'])}")
        if len(entries) > AUDIT_LIMIT:
            out.append(f"\n{len(entries) - AUDIT_LIMIT:,} more flagged for {bench}: all of them are in the HTML report "
                       "(`mixer card OUT --html report.html`) and in `dropped/<source>.parquet`.")
        out.append("")
    return "\n".join(out) + "\n"


def hub_section(hub: list[dict[str, Any]]) -> str:
    """The Hugging Face Hub sources: the revision each was asked for, the commit it resolved to, and the
    sha256 of every file read (the source table above names them ``hf://datasets/org/name@commit/path``)."""
    rows = [[h["source"], h["repo"], h["revision"], h["commit"],
             "yes" if h["pinned_revision"] else "**no**: a branch or tag, which can move", len(h["files"]),
             sum(f["bytes"] for f in h["files"])] for h in hub]
    return ("Hugging Face Hub sources (each file's sha256 is in the table above):\n\n"
            + _table(["source", "dataset", "revision", "commit", "pinned", "files", "bytes"], rows) + "\n")


def _num(v: float | None) -> str:
    """A score statistic: up to 4 significant digits (ratings 1-10 and reward-model outputs alike)."""
    return "" if v is None else f"{v:.4g}"


def scores_section(card: dict[str, Any]) -> str:
    """Preference builds: per source, how many pairs carry ratings (``mixer train rm`` derives its margin
    from them) and the gap chosen - rejected, on the scale the source rates on."""
    rows = []
    for s in card["sources"]:
        sc = s.get("scores")
        if sc is None:
            continue
        gap = sc["gap"]
        rows.append([s["name"], sc["pairs"], sc["scored"], _num(gap["mean"]), _num(gap["min"]), _num(gap["p5"]),
                     _num(gap["p50"]), _num(gap["p95"]), _num(gap["max"]), _num(sc["chosen"]["mean"]),
                     _num(sc["rejected"]["mean"]), sc["scale"] or "no ratings"])
    total = card["totals"].get("scores", {})
    intro = (f"{total.get('scored', 0):,} of {total.get('pairs', 0):,} pairs carry `score_chosen`/`score_rejected` "
             "(null on the others); `mixer train rm` with `margin: true` derives its margin from the gap "
             "(chosen - rejected). Percentiles are nearest-rank.\n")
    return "## Preference scores\n\n" + intro + "\n" + _table(
        ["source", "pairs", "with scores", "gap mean", "gap min", "gap p5", "gap p50", "gap p95", "gap max",
         "chosen mean", "rejected mean", "scale"], rows) + "\n"


def token_take_section(card: dict[str, Any]) -> str:
    """Sources taken by tokens (``take: {tokens: N}`` or a budget share): tokens planned and achieved,
    and for a budget, each source's share planned and achieved."""
    budget = card.get("budget")
    shares = {b["name"]: b for b in budget["sources"]} if budget else {}
    rows = []
    for s in card["sources"]:
        t = s.get("token_take")
        if t is None:
            continue
        b = shares.get(s["name"])
        rows.append([s["name"], t["planned"], t["achieved"], t["planned"] - t["achieved"], t["repeats"],
                     t["remainder_records"], f"{b['share']:.4g}" if b else "",
                     f"{b['achieved_share']:.4g}" if b else ""])
    intro = ("Per source, records are taken in its seeded order until the next would pass its tokens; a budget "
             "share larger than the source is met by whole repeats and then a remainder (records taken once "
             "more). Tokens are counted as `n_tokens` is.\n")
    if budget:
        intro += (f"\nRecipe budget: {budget['tokens']:,} tokens planned, {budget['achieved']:,} achieved.\n")
    return "## Token budgets\n\n" + intro + "\n" + _table(
        ["source", "planned tokens", "achieved", "short by", "repeats", "remainder records", "planned share",
         "achieved share"], rows) + "\n"


def mention_modes_section(card: dict[str, Any]) -> str:
    """Per source, how many records each mode of the LLM-mention filter drops (both are computed,
    the recipe's mode is applied): what choosing the other mode would change."""
    rows = [[s["name"], s["llm_mentions"]["would_drop"]["substring"], s["llm_mentions"]["would_drop"]["word"]]
            for s in card["sources"] if "llm_mentions" in s]
    mode = card["recipe"].get("llm_mention_mode", "substring")
    intro = (f"Records each mode drops, of those reaching the filter; this build applied `{mode}`. "
             "`substring`: Tulu V2's case-insensitive substring of any message; `word`: a whole word in an "
             "assistant turn (open-instruct's current rule).\n")
    return "## LLM-mention filter modes\n\n" + intro + "\n" + _table(["source", "substring", "word"], rows) + "\n"


#: The ``tool`` a ``mixer generate`` output's card.json names; a build's card has no such key.
GENERATE_TOOL = "mixer generate"


#: ``mixer gatt``'s card.json has no ``tool``: it names its method (``mixer/generate/gatt.py``, ``run_gatt``)
GATT_METHOD = "gatt"


def generated_by(card: dict[str, Any]) -> str | None:
    """The command that wrote a card of generated data (``mixer generate``, ``mixer gatt``); None for any
    other card (a build's, or one mixer does not know)."""
    if card.get("tool") == GENERATE_TOOL:
        return GENERATE_TOOL
    if card.get("method") == GATT_METHOD and "dialogues" in card:
        return "mixer gatt"
    return None


def is_generate_card(card: dict[str, Any]) -> bool:
    """A card of generated data, ``mixer generate``'s or ``mixer gatt``'s (their own shape: prompts, dialogues,
    samples; no sources or totals), shown from the README.md written beside it."""
    return generated_by(card) is not None


def load_card(out_dir: Path, *, builds_only: bool = True) -> dict[str, Any]:
    """A folder's card.json. ``builds_only``: a ``mixer generate`` output is refused by name (the card,
    diff and HTML views read a build's sources and totals, which a generate card does not have)."""
    from mixer.core.errors import MixerError

    path = Path(out_dir) / "card.json"
    if not Path(out_dir).exists():
        raise MixerError(f"{out_dir}: no such folder")
    if not path.exists():
        raise MixerError(f"{out_dir}: no card.json here; is this the output folder of `mixer build`?")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MixerError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(card, dict):
        raise MixerError(f"{path}: not a mixer card (a JSON object was expected)")
    if builds_only and is_generate_card(card):
        raise MixerError(f"{out_dir}: not a build output (it was written by `{generated_by(card)}`; "
                         f"`mixer card {out_dir}` shows its card)")
    if not is_generate_card(card) and not {"sources", "totals", "recipe"} <= card.keys():
        raise MixerError(f"{path}: not a build output's card (no sources/totals/recipe), nor one of `mixer "
                         f"generate` or `mixer gatt`; it is JSON: read it as it is (`python -m json.tool {path}`)")
    return card
