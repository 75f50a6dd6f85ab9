"""sha256 of what a build promises to reproduce: every ``data/`` and ``dropped/`` file and ``card.json``.

``card.json`` is hashed as canonical JSON without its ``versions`` block (library versions are
provenance, not output) and with an absolute recipe path cut to the file name (``bench/build.py``
passes the checkout's absolute path, which differs between checkouts); ``timings.json``, the plots
and ``README.md`` are left out. A refactoring
of the pipeline must leave every hash unchanged, which is how issue 11 was checked.

Parquet files carry the writer's version, so their bytes change with pyarrow. ``content_hashes``
hashes what the writer was given instead: each Parquet file's schema (names, types, nullability), its
row-group sizes and its rows read back as canonical JSON; the card the same way as above. Those
hashes hold on any pyarrow; the file bytes only on the one they were recorded with.


    python bench/output_hashes.py OUT                  # prints {path: sha256} as JSON
    python bench/output_hashes.py OUT --check FILE     # exits 1 and names each file that differs
    python bench/output_hashes.py OUT --record FILE    # writes both kinds of hashes and the pyarrow version
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


def parquet_content_digest(path: Path) -> str:
    """sha256 of a Parquet file's schema, row-group sizes and rows (canonical JSON), not of its bytes."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    h = hashlib.sha256()
    fields = [(field.name, str(field.type), field.nullable) for field in f.schema_arrow]
    groups = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    h.update(json.dumps({"fields": fields, "row_groups": groups}).encode("utf-8") + b"\n")
    for batch in f.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
                     .encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def content_hashes(out: Path) -> dict[str, str]:
    """Like ``output_hashes``, with each Parquet file hashed by its content (``parquet_content_digest``)."""
    hashes = {"card.json": card_digest(out / "card.json")}
    for folder in ("data", "dropped"):
        for path in sorted((out / folder).glob("*")):
            if path.is_file():
                hashes[f"{folder}/{path.name}"] = parquet_content_digest(path) if path.suffix == ".parquet" \
                    else hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a build's output folder")
    parser.add_argument("--check", type=Path, help="compare with this JSON file of hashes instead of printing")
    parser.add_argument("--record", type=Path, help="write the pin (file and content hashes) to this JSON file, "
                        "keeping its `build` line")
    args = parser.parse_args()
    hashes = output_hashes(args.out)
    if args.record is not None:
        import pyarrow

        old = json.loads(args.record.read_text(encoding="utf-8")) if args.record.exists() else {}
        doc = {"build": old.get("build", ""), "pyarrow": pyarrow.__version__, "files": hashes,
               "content": content_hashes(args.out)}
        args.record.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return 0
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
