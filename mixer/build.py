"""``mixer build``: run the stages, then write data, drops and card into a staging folder that
replaces the output folder only when everything succeeded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.card import build_card, render_markdown
from mixer.engine import LocalEngine
from mixer.pipeline import BuildState, Reporter, file_info, peak_rss_mb, run_stages, shuffled_output
from mixer.plots import render_plot_section, write_plots
from mixer.recipe import Recipe
from mixer.writer import staging_dir, write_dropped, write_shards


@dataclass
class BuildResult:
    out: Path
    card: dict[str, Any]
    state: BuildState
    timings: dict[str, Any]


def build(recipe: Recipe, reporter: Reporter | None = None, workers: int | None = None) -> BuildResult:
    """Build the mixture the recipe describes into ``recipe.output``.

    ``workers``: processes for reading sources and counting tokens (default: all cores); the build
    runs on a ``LocalEngine`` of that many workers.
    """
    with LocalEngine(workers) as engine:
        state = run_stages(recipe, reporter, engine)
        try:
            return _write(recipe, state)
        finally:
            state.close()


def _write(recipe: Recipe, state: BuildState) -> BuildResult:
    out = Path(recipe.output)
    with state.timed("shuffle"):
        selected, order = shuffled_output(state)
    with staging_dir(out) as tmp:
        with state.timed("write"):
            opts = recipe.output_options

            def dropped() -> list[str]:
                files = []
                for s in recipe.sources:
                    path = write_dropped(s.name, state.drops[s.name], state.unsampled[s.name], tmp / "dropped")
                    if path is not None:
                        files.append(f"dropped/{path.name}")
                return files

            dropped_files = state.executor.submit(dropped, threads=True)  # written while the shards are
            written = write_shards(selected, order, recipe.kind, tmp / "data", opts.shard_max_bytes,
                                   opts.row_group_rows, work_dir=state.work_dir, executor=state.executor)
            shards = []
            for path, rows in written:
                info = file_info(path)
                shards.append({"path": f"data/{path.name}", "rows": rows, "bytes": info.bytes,
                               "sha256": info.sha256})
        with state.timed("card"):
            card = build_card(state, shards, dropped_files())
            plot_paths = write_plots(card, tmp / "data", tmp / "plots")
            card["outputs"]["plots"] = [f"plots/{p.name}" for p in plot_paths]
            (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
            (tmp / "README.md").write_text(render_markdown(card, render_plot_section(plot_paths, tmp)),
                                           encoding="utf-8")
        timings = {name: {"wall_s": round(t.wall_s, 3), "cpu_s": round(t.cpu_s, 3),
                          "rss_mb_after": round(t.rss_mb_after, 1)} for name, t in state.timings.items()}
        timings["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if state.read_cache:
            timings["read_cache_hits"] = state.read_cache["hits"]
        (tmp / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    return BuildResult(out=out, card=card, state=state, timings=timings)
