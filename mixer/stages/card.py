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
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mixer import __version__
from mixer.core.records import SCORE_FIELDS
from mixer.core.stats import SourceStats, score_summary, summary
from mixer.core.tables import SpillFiles, list_sums
from mixer.recipe.load import Recipe
from mixer.sources import get_adapter


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
    #: preference pairs only: the ratings of the pairs that carry them, and how many carry none
    score_chosen: list[float] = field(default_factory=list)
    score_rejected: list[float] = field(default_factory=list)
    unscored: int = 0

    @classmethod
    def read(cls, table: SpillFiles | None, preference: bool = False) -> SelectedColumns:
        out = cls()
        if table is None:
            return out
        columns = ["dataset", "messages", "n_tokens", *(SCORE_FIELDS if preference else ())]
        for batch in table.iter_batches(columns):
            out.tokens.extend(batch.column("n_tokens").to_pylist())
            out.turns.extend(assistant_turns(batch.column("messages")))
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

    def scores(self, repeat: int, scale: str | None) -> dict[str, Any]:
        """The card's ``scores`` of a preference source: how many of its final pairs carry ratings (what
        ``mixer train rm``'s margin needs), and the ratings and their gap (chosen - rejected), counted
        ``repeat`` times as the tokens are."""
        gaps = [c - r for c, r in zip(self.score_chosen, self.score_rejected, strict=True)]
        scored = len(gaps) * repeat
        return {"scale": scale, "pairs": scored + self.unscored * repeat, "scored": scored,
                "gap": score_summary(gaps * repeat), "chosen": score_summary(self.score_chosen * repeat),
                "rejected": score_summary(self.score_rejected * repeat)}


def source_card(stats: SourceStats, selected: SelectedColumns, raw_dir: str,
                scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """One source's entry of the card; ``scores`` (preference builds only) is ``SelectedColumns.scores``."""
    tokens, turns = selected.tokens, selected.turns
    datasets = {name: n * stats.repeat for name, n in selected.datasets.items()}
    card = {
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
    selected = {s.name: SelectedColumns.read(selected_records.get(s.name), preference) for s in recipe.sources}
    scores = {s.name: selected[s.name].scores(s.repeat, get_adapter(s.adapter).score_scale(s.options))
              for s in recipe.sources} if preference else {}
    sources = [source_card(stats[s.name], selected[s.name], recipe.raw_dir, scores.get(s.name))
               for s in recipe.sources]
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
            # counts only: a gap summed over sources would mix rating scales
            **({"scores": {"pairs": sum(v["pairs"] for v in scores.values()),
                           "scored": sum(v["scored"] for v in scores.values())}} if preference else {}),
        },
        "sources": sources,
        "outputs": {"data": shards, "dropped": dropped_files},
        "warnings": list(warnings),
        "versions": _versions(),
    }
    card.update(sections)
    return card
