"""Rebuild the bundled sample and copy its card into ``data_cards/v2-sample/``.

Run after a change that alters the sample build (an adapter, a stage, the card or the plots):

    python scripts/update_sample_card.py [DEST]      # DEST defaults to data_cards/v2-sample

The committed card is what someone browsing the repository sees before running anything, and a test
compares it with a fresh build, so it is regenerated rather than edited by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "v2-sample.yaml"
DEST = ROOT / "data_cards" / "v2-sample"


def main(argv: list[str]) -> int:
    dest = Path(argv[0]).resolve() if argv else DEST
    # Build from the repository root with the recipe's relative path, exactly as
    # `mixer build recipes/v2-sample.yaml` does, so the card names the same recipe path.
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from mixer.build import build
    from mixer.recipe.load import load_recipe
    from mixer.report.plots import write_plots, write_sample_card

    with tempfile.TemporaryDirectory(prefix="mixer-sample-") as tmp:
        out = Path(tmp) / "out"
        recipe = load_recipe(RECIPE.relative_to(ROOT), output=str(out))
        result = build(recipe)
        if not (result.out / "plots").is_dir():  # builds from before plots were written by `mixer build`
            write_plots(result.card, result.out / "data", result.out / "plots")
        written = write_sample_card(result.out, dest)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
