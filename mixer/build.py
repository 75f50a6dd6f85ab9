"""``mixer build``: run the stages, then write data, drops and card into a staging folder that
replaces the output folder only when everything succeeded."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer import __version__
from mixer.card import build_card, render_markdown
from mixer.outdir import BUILD_MARKER, check_output_dir, lock_output, write_build_marker
from mixer.pin import verify_pins
from mixer.pipeline import BuildState, Reporter, file_info, peak_rss_mb, run_stages, shuffled_output
from mixer.plots import render_plot_section, write_plots
from mixer.recipe import Recipe
from mixer.token_cache import damage_counts, damage_log
from mixer.writer import staging_dir, write_dropped, write_shards


@dataclass
class BuildResult:
    out: Path
    card: dict[str, Any]
    state: BuildState
    timings: dict[str, Any]


def build(recipe: Recipe, reporter: Reporter | None = None, workers: int | None = None, *,
          overwrite: bool = False) -> BuildResult:
    """Build the mixture the recipe describes into ``recipe.output``.

    ``workers``: processes for reading sources and counting tokens (default: all cores). The output
    folder is locked for the whole build and checked before any work: it may replace only an earlier
    mixer build (``mixer.outdir``) unless ``overwrite``. Pinned input files are verified first.
    """
    with lock_output(Path(recipe.output)), damage_log():
        check_output_dir(recipe.output, marker=BUILD_MARKER, overwrite=overwrite)
        verify_pins(recipe)
        state = run_stages(recipe, reporter, workers)
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

            with ThreadPoolExecutor(1) as side:  # dropped/ is written while the shards are
                dropped_files = side.submit(dropped)
                written = write_shards(selected, order, recipe.kind, tmp / "data", opts.shard_max_bytes,
                                       opts.row_group_rows, work_dir=state.work_dir, workers=state.workers)
                shards = []
                for path, rows in written:
                    info = file_info(path)
                    shards.append({"path": f"data/{path.name}", "rows": rows, "bytes": info.bytes,
                                   "sha256": info.sha256})
        with state.timed("card"):
            card = build_card(state, shards, dropped_files.result())
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
        # cache entries found damaged (truncated, altered, foreign), removed and rebuilt, per cache
        timings["cache_damaged"] = {"read_cache": 0, "token_cache": 0, **damage_counts()}
        (tmp / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        write_build_marker(tmp, {"version": __version__, "recipe_sha256": recipe.sha256})
    return BuildResult(out=out, card=card, state=state, timings=timings)
