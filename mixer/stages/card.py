"""Stage **card** (corpus-level): the numbers of ``card.json``, from the per-source counters and the
selected records (read a batch at a time). Deterministic for the same inputs: no timestamps, paths
relative to ``raw_dir``. Rendering it as Markdown is ``mixer.report.markdown``.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mixer import __version__
from mixer.core.records import SCORE_FIELDS
from mixer.core.stats import SourceStats, score_summary, summary
from mixer.core.tables import SpillFiles, list_sums
from mixer.recipe.budget import FirstTake, TokenTake
from mixer.recipe.hub import hub_file_names
from mixer.recipe.load import Recipe
from mixer.sources import get_adapter
from mixer.stages.filter import MENTION_MODES


def assistant_turns(messages: pa.ChunkedArray | pa.Array) -> list[int]:
    """Number of assistant messages per record, computed on the Arrow columns."""
    arr = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    if len(arr) == 0:
        return []
    is_assistant = pc.equal(pc.list_flatten(arr).field("role"), "assistant").to_numpy(zero_copy_only=False)
    return list_sums(arr, is_assistant).tolist()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mixer": __version__}
    for pkg in ("pyarrow", "polars", "numpy", "tiktoken", "bpe-openai", "tokenizers", "datasketch", "orjson",
                "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class SelectedColumns:
    """What the card needs from one source's selected records: read once, a batch at a time."""

    tokens: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    datasets: Counter[str] = field(default_factory=Counter)
    #: preference pairs only: the ratings of the pairs that carry them, and how many carry none
    score_chosen: list[float] = field(default_factory=list)
    score_rejected: list[float] = field(default_factory=list)
    unscored: int = 0
    #: messages marked ``train: false`` (context, no loss), counted once per selected record
    untrained: int = 0

    @classmethod
    def read(cls, table: SpillFiles | None, preference: bool = False, limit: int | None = None) -> SelectedColumns:
        """The columns of ``table``'s records (the first ``limit`` only, when given)."""
        out = cls()
        if table is None:
            return out
        columns = ["dataset", "messages", "n_tokens", *(SCORE_FIELDS if preference else ())]
        left = limit
        for batch in table.iter_batches(columns):
            if left is not None:
                if left <= 0:
                    break
                batch = batch.slice(0, left)
                left -= batch.num_rows
            out.tokens.extend(batch.column("n_tokens").to_pylist())
            out.turns.extend(assistant_turns(batch.column("messages")))
            flags = pc.list_flatten(batch.column("messages")).field("train")
            out.untrained += int(pc.sum(pc.equal(flags, False)).as_py() or 0)
            for row in pc.value_counts(batch.column("dataset")).to_pylist():
                out.datasets[row["values"]] += row["counts"]
            if preference:
                for c, r in zip(*(batch.column(k).to_pylist() for k in SCORE_FIELDS), strict=True):
                    if c is None or r is None:
                        out.unscored += 1
                    else:
                        out.score_chosen.append(c)
                        out.score_rejected.append(r)
        return out

    def repeated(self, repeat: int, head: SelectedColumns | None = None) -> SelectedColumns:
        """The columns of a source's final records: each selected record ``repeat`` times, then ``head``
        (the first records once more: the remainder of a token budget met by repeating the source)."""
        head = head or SelectedColumns()
        datasets = Counter({name: n * repeat for name, n in self.datasets.items()})
        datasets.update(head.datasets)
        return SelectedColumns(tokens=self.tokens * repeat + head.tokens, turns=self.turns * repeat + head.turns,
                               datasets=datasets, score_chosen=self.score_chosen * repeat + head.score_chosen,
                               score_rejected=self.score_rejected * repeat + head.score_rejected,
                               unscored=self.unscored * repeat + head.unscored,
                               untrained=self.untrained * repeat + head.untrained)

    def scores(self, repeat: int, scale: str | None) -> dict[str, Any]:
        """The card's ``scores`` of a preference source: how many of its final pairs carry ratings (what
        ``mixer train rm``'s margin needs), and the ratings and their gap (chosen - rejected), counted
        ``repeat`` times as the tokens are."""
        gaps = [c - r for c, r in zip(self.score_chosen, self.score_rejected, strict=True)]
        scored = len(gaps) * repeat
        return {"scale": scale, "pairs": scored + self.unscored * repeat, "scored": scored,
                "gap": score_summary(gaps * repeat), "chosen": score_summary(self.score_chosen * repeat),
                "rejected": score_summary(self.score_rejected * repeat)}


def source_card(stats: SourceStats, final: SelectedColumns, raw_dir: str,
                scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """One source's entry of the card; ``final``: the columns of its final records (repeats counted,
    ``SelectedColumns.repeated``); ``scores`` (preference builds only) is ``SelectedColumns.scores``."""
    tokens, turns = final.tokens, final.turns
    datasets = {name: n for name, n in final.datasets.items() if n}
    card = {
        "name": stats.name,
        "adapter": stats.adapter,
        "license": stats.license,
        "take": stats.take.card() if isinstance(stats.take, (TokenTake, FirstTake)) else stats.take,
        "repeat": stats.repeat,
        "excluded": stats.excluded,
        "files": [{"path": f.shown(raw_dir), "bytes": f.bytes, "sha256": f.sha256}
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
        "tokens": summary(tokens),
        "turns": summary(turns),
    }
    if final.untrained:  # only mixtures with per-message loss flags: other cards keep their bytes
        card["untrained_messages"] = final.untrained
    if stats.token_take is not None:
        card["token_take"] = stats.token_take
    if scores is not None:
        card["scores"] = scores
    return card


def build_card(recipe: Recipe, stats: Mapping[str, SourceStats], selected_records: Mapping[str, SpillFiles],
               warnings: Sequence[str], sections: Mapping[str, Any], shards: list[dict[str, Any]],
               dropped_files: list[str]) -> dict[str, Any]:
    """The card as a JSON-ready dict: per source its counters (``stats``, fed by the stages through
    the drop sink) and its selected records' token, turn and dataset counts; ``sections``: what the
    cross-source stages reported (``near_dedup``, ``contamination``)."""
    preference = recipe.kind == "preference"
    final: dict[str, SelectedColumns] = {}  # per source, the columns of its final records
    for s in recipe.sources:
        table, st = selected_records.get(s.name), stats[s.name]
        head = SelectedColumns.read(table, preference, limit=st.extra_copies) if st.extra_copies else None
        final[s.name] = SelectedColumns.read(table, preference).repeated(st.repeat, head)
    scores = {s.name: final[s.name].scores(1, get_adapter(s.adapter).score_scale(s.options))
              for s in recipe.sources} if preference else {}
    sources = [source_card(stats[s.name], final[s.name], recipe.raw_dir, scores.get(s.name))
               for s in recipe.sources]
    lm = recipe.filters.llm_mentions
    if lm.enabled and lm.mode is not None:  # a recipe that names a mode sees what each mode drops
        for s, entry in zip(recipe.sources, sources, strict=True):
            if s.name not in lm.exempt and not entry["excluded"]:
                counts = stats[s.name].mention_modes
                entry["llm_mentions"] = {"mode": lm.mode, "would_drop": {m: counts[m] for m in MENTION_MODES}}
    all_tokens: list[int] = []
    all_turns: list[int] = []
    for s in recipe.sources:
        all_tokens.extend(final[s.name].tokens)
        all_turns.extend(final[s.name].turns)
    card = {
        "name": recipe.name,
        "description": recipe.description,
        "recipe": {
            "path": recipe.path, "sha256": recipe.sha256, "seed": recipe.seed, "kind": recipe.kind,
            "order": recipe.order,
            "tokenizer": recipe.tokenizer, "max_tokens": recipe.max_tokens,
            "allow_licenses": list(recipe.allow_licenses) if recipe.allow_licenses is not None else None,
            "llm_mention_filter": recipe.filters.llm_mentions.enabled,
            **({"llm_mention_mode": lm.mode} if lm.enabled and lm.mode is not None else {}),
            "exact_dedup": recipe.dedup.exact.enabled,
            # what a preference pair's exact-dedup key was (dedup.exact.preference_key)
            **({"preference_key": recipe.dedup.exact.preference_key} if recipe.kind == "preference" else {}),
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
            # counts only: a gap summed over sources would mix rating scales
            **({"scores": {"pairs": sum(v["pairs"] for v in scores.values()),
                           "scored": sum(v["scored"] for v in scores.values())}} if preference else {}),
        },
        "sources": sources,
        "outputs": {"data": shards, "dropped": dropped_files},
        "warnings": list(warnings),
        "versions": _versions(),
    }
    if recipe.budget is not None:
        card["budget"] = budget_section(recipe, stats)
    card.update(sections)
    hub_names = hub_file_names(sections.get("hub", []))
    for source in card["sources"] if hub_names else ():  # a Hub file by its hf:// name, not a cache path
        for f in source["files"]:
            f["path"] = next((uri for tail, uri in hub_names.items() if f["path"].endswith(tail)), f["path"])
    return card


def budget_section(recipe: Recipe, stats: Mapping[str, SourceStats]) -> dict[str, Any]:
    """The recipe's token budget, planned against achieved: per budgeted source its share, its tokens
    planned and achieved (repeats counted), how many whole copies and remainder records met it, and the
    share of the achieved total it makes."""
    assert recipe.budget is not None
    takes = {name: stats[name].token_take or {"planned": 0, "achieved": 0} for name in recipe.budget.shares}
    achieved = sum(t["achieved"] for t in takes.values())
    rows = [{"name": name, "share": share, "planned": takes[name]["planned"], "achieved": takes[name]["achieved"],
             "achieved_share": round(takes[name]["achieved"] / achieved, 6) if achieved else 0.0,
             "repeats": takes[name].get("repeats", 0), "remainder_records": takes[name].get("remainder_records", 0)}
            for name, share in recipe.budget.shares.items()]
    return {"tokens": recipe.budget.tokens, "achieved": achieved, "sources": rows}
