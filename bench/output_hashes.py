"""sha256 of what a build promises to reproduce: every ``data/`` and ``dropped/`` file and ``card.json``.

``card.json`` is hashed as canonical JSON without its ``versions`` block (library versions are
provenance, not output) and with an absolute recipe path cut to the file name (``bench/build.py``
passes the checkout's absolute path, which differs between checkouts); ``timings.json``, the plots
and ``README.md`` are left out. A refactoring
of the pipeline must leave every hash unchanged, which is how issue 11 was checked:

    python bench/output_hashes.py OUT                  # prints {path: sha256} as JSON
    python bench/output_hashes.py OUT --check FILE     # exits 1 and names each file that differs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def card_digest(card_path: Path) -> str:
    """sha256 of the card as sorted, compact JSON without ``versions`` and with a relative recipe path."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.pop("versions", None)
    recipe_path = card.get("recipe", {}).get("path")
    if recipe_path and Path(recipe_path).is_absolute():
        card["recipe"]["path"] = Path(recipe_path).name
    canonical = json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def output_hashes(out: Path) -> dict[str, str]:
    """{relative path: sha256} over ``data/``, ``dropped/`` and ``card.json`` of the build in *out*."""
    hashes = {"card.json": card_digest(out / "card.json")}
    for folder in ("data", "dropped"):
        for path in sorted((out / folder).glob("*")):
            if path.is_file():
                hashes[f"{folder}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a build's output folder")
    parser.add_argument("--check", type=Path, help="compare with this JSON file of hashes instead of printing")
    args = parser.parse_args()
    hashes = output_hashes(args.out)
    if args.check is None:
        print(json.dumps(hashes, indent=1))
        return 0
    expected = json.loads(args.check.read_text(encoding="utf-8"))["files"]
    differ = sorted(k for k in set(hashes) | set(expected) if hashes.get(k) != expected.get(k))
    for name in differ:
        print(f"differs: {name}", file=sys.stderr)
    print(f"{len(hashes) - len(differ)} of {len(expected)} files identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
