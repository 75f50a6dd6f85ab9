"""Tokenized (and optionally packed) training data, made once by ``mixer tokenize`` and read by the trainer.

Every trainer rank re-tokenizing a mixture costs minutes per run (open-instruct PR #1801, LLaMA-Factory
#3863). ``mixer tokenize`` runs the trainer's own tokenisation (the template ``resolve_chat_template``
picks, the rows ``tokenize_sft`` would give) once and writes Parquet shards:

- unpacked: one row per conversation, ``input_ids`` + ``assistant_masks`` (1 = the token carries loss) and
  the record's ``dataset`` and ``id``;
- packed (``--pack bfd``): one row per bin of at most ``max_length`` tokens, its conversations
  concatenated, with ``seq_lengths`` (where positions restart; TRL's collator builds ``position_ids`` from
  it) and the record ``ids``.

``tokenized.json`` records the tokenizer's and the template's sha256, the settings and per-source token
counts; ``mixer train sft --data DIR`` refuses the folder when this run's tokenizer or template hashes
differ. The same input, tokenizer and settings give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

logger = logging.getLogger("mixer.train")

MANIFEST = "tokenized.json"
FORMAT = "mixer-tokenized/1"
PACKINGS = ("bfd",)
#: conversations per Parquet shard (unpacked)
SHARD_ROWS = 20_000
#: tokens per packed shard: a packed row holds up to ``max_length`` tokens, so a shard holds
#: ``SHARD_TOKENS // max_length`` bins (2,048 at 8,192). Shards of 20,000 bins held up to 164 M tokens each, built
#: in memory one at a time: a packed full-V2 run peaked at 4.4 GiB with them (bench/RESULTS.md).
SHARD_TOKENS = 16 * 2**20


def shard_rows(max_length: int, pack: str | None) -> int:
    """Output rows per Parquet shard."""
    return max(1, SHARD_TOKENS // max_length) if pack else SHARD_ROWS


class TokenizedDataError(MixerError):
    """A tokenized folder is unreadable or was made with another tokenizer, template or length."""


def tokenizer_sha256(tokenizer: Any) -> str:
    """A hash of what turns text into ids: the fast tokenizer's full definition (model, vocabulary,
    merges, normalizer, pre-tokenizer, added tokens) and its bos/eos tokens, without the per-call
    padding/truncation state. Independent of the folder it was loaded from."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    backend.pop("padding", None)
    backend.pop("truncation", None)
    payload = {"backend": backend, "bos": tokenizer.bos_token, "eos": tokenizer.eos_token}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def template_sha256(tokenizer: Any) -> str:
    """A hash of the chat template the tokenizer renders with (the one the trainer resolved)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack items of ``lengths`` into bins of ``capacity``: longest first (ties: lower index first), each
    into the open bin with the least room that still fits it (ties: the bin opened first), else into a
    new bin. Returns the bins in the order they were opened, each the item indices in the order placed.

    A segment tree over the free room (0..capacity) finds the best bin in O(log capacity), so a V2-sized
    mixture packs in seconds. Items longer than ``capacity`` are an error (the rows are truncated first).
    """
    import heapq

    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    size = 1
    while size < capacity + 1:
        size *= 2
    tree = [0] * (2 * size)  # tree[size + room] = number of open bins with that much room
    by_room: dict[int, list[int]] = {}  # room -> heap of bin indices

    def change(room: int, delta: int) -> None:
        node = room + size
        while node:
            tree[node] += delta
            node //= 2

    def first_room_at_least(lo: int) -> int:
        node = lo + size
        if tree[node] > 0:
            return lo
        while node > 1:
            if node % 2 == 0 and tree[node + 1] > 0:
                node += 1
                while node < size:
                    node = 2 * node if tree[2 * node] > 0 else 2 * node + 1
                return node - size
            node //= 2
        return -1

    bins: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        if n > capacity or n < 1:
            raise ValueError(f"item {i} has length {n}; lengths must be in 1..{capacity}")
        room = first_room_at_least(n)
        if room < 0:
            bins.append([i])
            b, left = len(bins) - 1, capacity - n
        else:
            b = heapq.heappop(by_room[room])
            change(room, -1)
            bins[b].append(i)
            left = room - n
        heapq.heappush(by_room.setdefault(left, []), b)
        change(left, 1)
    return bins


def _trainer() -> Any:
    from types import SimpleNamespace

    from mixer.train.data import SFT_COLUMNS, _check_markers, _tokenize_row, load_parquet

    return SimpleNamespace(SFT_COLUMNS=SFT_COLUMNS, check_markers=_check_markers, tokenize_row=_tokenize_row,
                           load_parquet=load_parquet)


def _schema(packed: bool) -> Any:
    import pyarrow as pa

    common = [("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8()))]
    if packed:
        return pa.schema([*common, ("seq_lengths", pa.list_(pa.int32())), ("ids", pa.list_(pa.string()))])
    return pa.schema([*common, ("dataset", pa.string()), ("id", pa.string())])


def _tokenize_example(example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
    """One row through the trainer's row tokenisation, one token past ``max_length`` to tell a cut row."""
    from mixer.train.data import _tokenize_row

    out = _tokenize_row(example, tokenizer, max_length + 1, True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    return {"input_ids": ids[:max_length], "assistant_masks": mask[:max_length], "truncated": len(ids) > max_length,
            "n_loss": sum(mask[:max_length])}


def tokenize_rows(rows: Any, tokenizer: Any, max_length: int, num_proc: int | None = None
                  ) -> tuple[Any, Any, dict[str, dict[str, int]]]:
    """Each row through the trainer's row tokenisation (``tokenize_sft``'s ``datasets.map`` over the same row
    function, ``num_proc`` processes), truncated to ``max_length`` keeping the start; rows left with no loss
    token are dropped, as the trainer drops them, and counted. Returns the rows (:class:`TokenisedRows`: int32
    ids, int8 masks, the writer copies out one shard at a time), the row numbers of the rows kept, and
    per-source counts."""
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _trainer()
    t.check_markers(tokenizer)
    columns = rows.column_names
    kept_columns = [c for c in columns if c in ("dataset", "id")]
    features = datasets.Features({  # written as int32/int8 by the workers: no int64 copy to cast later
        **{c: rows.features[c] for c in kept_columns}, "input_ids": datasets.List(datasets.Value("int32")),
        "assistant_masks": datasets.List(datasets.Value("int8")), "truncated": datasets.Value("bool"),
        "n_loss": datasets.Value("int64")})
    pa.default_memory_pool().release_unused()  # what reading the build freed: the forked workers would copy it
    mapped = rows.map(_tokenize_example, fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
                      remove_columns=[c for c in columns if c not in kept_columns], num_proc=num_proc,
                      features=features, desc="Tokenising (chat template, assistant mask)")
    table = mapped.with_format("arrow")[:]
    n = table.num_rows
    sources = (pc.fill_null(table.column("dataset").cast(pa.string()), "(no source)") if "dataset" in columns
               else pa.array(["(no source)"] * n, pa.string()))
    ids = (pc.fill_null(table.column("id").cast(pa.string()), "") if "id" in columns else pa.array([""] * n))
    ids = pa.array([v or str(i) for i, v in enumerate(ids.to_pylist())], pa.string())
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)
    trainable = table.column("n_loss").to_numpy()
    truncated = table.column("truncated").to_numpy(zero_copy_only=False)
    keep = trainable > 0
    stats: dict[str, dict[str, int]] = {}
    for k, source in enumerate(sources.to_pylist()):
        s = stats.setdefault(source, {"records": 0, "kept": 0, "dropped_no_loss_token": 0, "truncated": 0,
                                      "total_tokens": 0, "trainable_tokens": 0})
        s["records"] += 1
        s["truncated"] += int(truncated[k])
        if keep[k]:
            s["kept"] += 1
            s["total_tokens"] += int(lengths[k])
            s["trainable_tokens"] += int(trainable[k])
        else:
            s["dropped_no_loss_token"] += 1
    files = [f["filename"] for f in mapped.cache_files]
    # where the map's files hold its rows as they are, the writer reads them from there (TokenisedRows)
    in_files = bool(files) and sum(_stream_rows(f) for f in files) == n
    held = None if in_files else table.select(["input_ids", "assistant_masks"])
    return TokenisedRows(files, held, lengths, sources, ids), np.flatnonzero(keep), dict(sorted(stats.items()))


def _stream_rows(path: str) -> int:
    """Rows in an Arrow stream file, from its batches' metadata (the bodies are not read)."""
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(source))


class TokenisedRows:
    """The tokenised rows for the writer: lengths, sources and ids in memory, ``input_ids`` and ``assistant_masks``
    copied out for the rows of one shard at a time (:meth:`take`).

    Those come from the map's Arrow cache files, read through as a stream (read, not memory-mapped), each
    batch's wanted rows taken and the batch let go. Through the datasets table the cache stays memory-mapped:
    a packed shard's rows lie all over it and the kernel maps pages around each one touched, so every shard
    made the whole cache resident (1.2 GiB of RssFile at full V2 scale, bench/RESULTS.md). Read as a stream,
    what is held is one batch and the shard. A map whose files do not hold its rows as they are (a dataset held
    in memory) is taken from its table (``held``)."""

    def __init__(self, files: list[str], held: Any, lengths: Any, sources: Any, ids: Any) -> None:
        self.files, self.held, self.lengths, self.sources, self.ids = files, held, lengths, sources, ids

    def take(self, rows: Any) -> Any:
        """The rows numbered ``rows``, in that order: input_ids, assistant_masks, dataset, id (one chunk each)."""
        import numpy as np
        import pyarrow as pa

        rows = np.asarray(rows, dtype=np.int64)
        tokens = take_rows(self.held, rows) if self.held is not None else self._take_from_files(rows)
        names = ["input_ids", "assistant_masks", "dataset", "id"]
        ids = take_rows(pa.table([self.sources, self.ids], names=names[2:]), rows)
        return pa.Table.from_arrays([*tokens.columns, *ids.columns], schema=_schema(False))

    def _take_from_files(self, rows: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        order = np.argsort(rows, kind="stable")
        wanted, pieces, start, done = rows[order], [], 0, len(rows) == 0
        for path in self.files:
            with pa.OSFile(path) as source:
                for batch in [] if done else pa.ipc.open_stream(source):
                    lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                    if hi > lo:
                        tokens = batch.select(["input_ids", "assistant_masks"])
                        pieces.append(tokens.take(pa.array(wanted[lo:hi] - start)))
                    start += batch.num_rows
                    done = hi == len(wanted)  # the rest of the files holds none of the rows
                    if done:
                        break
        gathered = pa.Table.from_batches(pieces, pa.schema(list(_schema(False))[:2]))
        return take_rows(gathered, np.argsort(order))


def output_shards(source: TokenisedRows, kept: Any, max_length: int, pack: str | None) -> tuple[int, Any]:
    """How many output rows there are, and the rows a shard at a time (:func:`shard_rows`): unpacked, the kept rows in
    order; packed, best-fit-decreasing bins of them (:func:`best_fit_decreasing`, over every kept length at
    once), each bin built by :func:`pack_rows`. Only one shard's rows are copied out of ``source`` at a time."""
    step = shard_rows(max_length, pack)
    if not pack:
        return len(kept), (source.take(kept[i:i + step]) for i in range(0, len(kept), step))
    bins = best_fit_decreasing(source.lengths[kept].tolist(), max_length)
    return len(bins), (pack_rows(source.take, [kept[b] for b in bins[i:i + step]])
                       for i in range(0, len(bins), step))


def take_rows(table: Any, rows: Any) -> Any:
    """``table.take(rows)``, each column one chunk, taken from each of its chunks apart. Arrow's own take on a
    chunked column (pyarrow 26) first concatenates the whole column, twice its size in Arrow's pool for any
    number of rows: every token of the build for each shard (Arrow's pool peaked at 1 GiB at full V2 scale)."""
    import numpy as np
    import pyarrow as pa

    rows = np.asarray(rows, dtype=np.int64)
    columns = []
    for column in table.columns:
        starts = np.cumsum([0, *(len(c) for c in column.chunks)])
        chunk_of = np.searchsorted(starts, rows, side="right") - 1
        by_chunk = np.argsort(chunk_of, kind="stable")
        grouped, bounds = rows[by_chunk], np.searchsorted(chunk_of[by_chunk], np.arange(column.num_chunks + 1))
        pieces = [column.chunk(c).take(pa.array(grouped[bounds[c]:bounds[c + 1]] - starts[c]))
                  for c in range(column.num_chunks) if bounds[c] < bounds[c + 1]]
        gathered = pa.concat_arrays(pieces) if pieces else pa.array([], column.type)
        columns.append(pa.chunked_array([gathered.take(pa.array(np.argsort(by_chunk)))], column.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def pack_rows(take: Any, bins: Sequence[Any]) -> Any:
    """One row per bin (row numbers; ``take(rows)`` gives those rows as a table, :meth:`TokenisedRows.take`): its
    conversations' tokens and masks concatenated in the order placed, their lengths and record ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    order = np.concatenate([np.asarray(b, dtype=np.int64) for b in bins]) if bins else np.empty(0, np.int64)
    taken = take(order)
    lengths = pc.list_value_length(taken.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    sizes = np.array([len(b) for b in bins], dtype=np.int64)
    member_offsets = np.concatenate([[0], np.cumsum(sizes)])
    token_offsets = np.concatenate([[0], np.cumsum(lengths)])[member_offsets]

    def regroup(column: str, offsets: Any) -> Any:
        values = taken.column(column).combine_chunks()
        flat = pc.list_flatten(values) if pa.types.is_list(values.type) else values
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat)

    seq_lengths = pa.ListArray.from_arrays(pa.array(member_offsets.astype(np.int32)),
                                           pa.array(lengths, pa.int32()))
    return pa.Table.from_arrays([regroup("input_ids", token_offsets), regroup("assistant_masks", token_offsets),
                                 seq_lengths, regroup("id", member_offsets)], schema=_schema(True))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_output(data: str | Path) -> Path:
    """Beside the build: ``OUT-tokenized`` for a folder, ``NAME-tokenized`` for a Parquet file."""
    p = Path(data)
    return p.with_name(f"{p.stem if p.is_file() else p.name}-tokenized")


def write_tokenized(data: str | Path, tokenizer: Any, out: str | Path, *, max_length: int, pack: str | None,
                    settings: dict[str, Any], overwrite: bool = False, workers: int | None = None) -> dict[str, Any]:
    """``mixer tokenize``: tokenize a build (and pack it) into ``out``; return the manifest written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixer.core.outdir import check_output_dir
    from mixer.train.data import resolve_parquet_files

    if max_length < 1:
        raise MixerError(f"--max-length must be positive, got {max_length}")
    if pack is not None and pack not in PACKINGS:
        raise MixerError(f"--pack {pack!r}: choose {', '.join(PACKINGS)}")
    out = Path(out)
    check_output_dir(out, marker=MANIFEST, overwrite=overwrite, what="tokenized output folder")
    inputs = resolve_parquet_files(data)
    t = _trainer()
    rows = t.load_parquet(data, t.SFT_COLUMNS)
    from mixer.train.accel.host import tokenise_processes

    tokenised, kept, stats = tokenize_rows(rows, tokenizer, max_length, tokenise_processes(workers, len(rows)))
    if len(kept) == 0:
        raise MixerError(f"{data}: no record has an assistant token within max_length={max_length}")
    n_rows, parts = output_shards(tokenised, kept, max_length, pack)
    schema = _schema(bool(pack))
    old = out / "data"
    if old.is_dir():  # an earlier output of ours (check_output_dir allowed it): its shards go
        for f in old.glob("train-*.parquet"):
            f.unlink()
    old.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, -(-n_rows // shard_rows(max_length, pack)))
    shards = []
    for k, part in enumerate(parts):
        name = f"data/train-{k:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(part, out / name, compression="zstd")
        shards.append({"file": name, "rows": part.num_rows, "sha256": _file_sha256(out / name)})
        del part
        pa.default_memory_pool().release_unused()  # Arrow's mimalloc otherwise keeps a shard's freed memory
    total = {key: sum(s[key] for s in stats.values()) for key in next(iter(stats.values()))}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "tokenizer": {"source": settings.get("tokenizer_source"), "sha256": tokenizer_sha256(tokenizer)},
        "chat_template": {"choice": settings.get("chat_template", "auto"), "sha256": template_sha256(tokenizer),
                          "text": tokenizer.chat_template},
        "max_length": max_length,
        "pack": pack,
        "assistant_only_loss": True,
        "input": {"path": str(data), "files": [{"file": Path(f).name, "sha256": _file_sha256(Path(f))}
                                               for f in inputs]},
        "columns": schema.names,
        "rows": n_rows,
        "shards": shards,
        "totals": total,
        "sources": stats,
    }
    if pack:
        manifest["packing"] = {"bins": n_rows, "fill": round(total["total_tokens"] / (n_rows * max_length), 4)}
    (out / "README.md").write_text(card_markdown(manifest), encoding="utf-8")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def card_markdown(manifest: dict[str, Any]) -> str:
    """The tokenize card: settings, hashes and trainable/total tokens per source."""
    lines = ["# Tokenized mixture", "",
             f"- input: `{manifest['input']['path']}`",
             f"- tokenizer sha256: `{manifest['tokenizer']['sha256']}` ({manifest['tokenizer']['source']})",
             f"- chat template sha256: `{manifest['chat_template']['sha256']}` ({manifest['chat_template']['choice']})",
             f"- max_length: {manifest['max_length']}; packing: {manifest['pack'] or 'none'}"
             + (f" ({manifest['packing']['bins']:,} bins, {manifest['packing']['fill']:.1%} full)"
                if manifest.get("packing") else ""),
             "", "| source | records | kept | dropped (no loss token) | truncated | total tokens | trainable tokens |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in [*manifest["sources"].items(), ("**total**", manifest["totals"])]:
        lines.append(f"| {name} | {s['records']:,} | {s['kept']:,} | {s['dropped_no_loss_token']:,} | "
                     f"{s['truncated']:,} | {s['total_tokens']:,} | {s['trainable_tokens']:,} |")
    return "\n".join(lines) + "\n"


def is_tokenized(path: str | Path | None) -> bool:
    """Whether ``path`` is a ``mixer tokenize`` output folder."""
    return path is not None and (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path) / MANIFEST
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizedDataError(f"{p}: cannot read the tokenized folder's manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TokenizedDataError(f"{p}: not a {FORMAT} manifest (format: {manifest.get('format')!r})"
                                 if isinstance(manifest, dict) else f"{p}: not a JSON object")
    return manifest


def check_compatible(path: str | Path, manifest: dict[str, Any], tokenizer: Any, max_length: int) -> None:
    """Refuse a folder made with another tokenizer or template (naming both hashes) or longer rows than
    the run allows."""
    ours_tok, ours_tmpl = tokenizer_sha256(tokenizer), template_sha256(tokenizer)
    theirs_tok, theirs_tmpl = manifest["tokenizer"]["sha256"], manifest["chat_template"]["sha256"]
    if ours_tok != theirs_tok:
        raise TokenizedDataError(
            f"{path} was tokenized with tokenizer sha256 {theirs_tok}, but this run's tokenizer "
            f"({manifest['tokenizer'].get('source')} then; now the run's model/tokenizer) is sha256 {ours_tok}; "
            "tokenize again with this run's tokenizer")
    if ours_tmpl != theirs_tmpl:
        raise TokenizedDataError(
            f"{path} was rendered with chat template sha256 {theirs_tmpl} "
            f"({manifest['chat_template'].get('choice')}), but this run's template is sha256 {ours_tmpl}; "
            "tokenize again with this run's chat_template")
    if manifest["max_length"] > max_length:
        raise TokenizedDataError(f"{path} holds rows of up to {manifest['max_length']} tokens, more than this run's "
                                 f"max_length {max_length}; tokenize again with --max-length {max_length}")


def read_rows(path: str | Path, max_rows: int | None = None) -> Any:
    """The rows of a tokenized folder as a ``datasets.Dataset`` the SFT trainer takes as is (``input_ids``,
    ``assistant_masks``, and ``seq_lengths`` when packed). Check them with :func:`check_for_training`."""
    import datasets

    manifest = read_manifest(path)
    files = [str(Path(path) / s["file"]) for s in manifest["shards"]]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise TokenizedDataError(f"{path}: shard(s) listed in {MANIFEST} are missing: {', '.join(missing)}")
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except Exception as e:  # noqa: BLE001 - pyarrow/datasets raise many types for a bad file
        raise TokenizedDataError(f"{path}: cannot read the tokenized shards: {e}") from e
    ds = ds.select_columns(["input_ids", "assistant_masks", *(["seq_lengths"] if manifest["pack"] else [])])
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    return ds


def trl_overrides(path: str | Path) -> dict[str, Any]:
    """The TRL config fields a tokenized folder needs: none for one row per conversation; for packed rows,
    no packing again and padding-free batches (positions restart at each ``seq_lengths`` boundary), with no
    ``max_length`` for TRL (the rows are within it, and TRL refuses it for unpacked padding-free rows)."""
    if not read_manifest(path)["pack"]:
        return {}
    return {"packing": False, "padding_free": True, "max_length": None}


def check_for_training(cfg: Any, tokenizer: Any) -> None:
    """The trainer's guard for ``cfg.data``, a tokenized folder: made with this run's tokenizer and template
    (:func:`check_compatible`), within its ``max_length``, and with assistant-only masks the run asks for."""
    if not cfg.assistant_only_loss:
        raise TokenizedDataError(f"{cfg.data} holds assistant-only loss masks; this run sets assistant_only_loss: "
                                 "false (train from the build instead)")
    manifest = read_manifest(cfg.data)
    check_compatible(cfg.data, manifest, tokenizer, cfg.max_length)
    if manifest["pack"] and cfg.batching == "padded":
        logger.warning("%s holds packed rows: they train padding-free (positions restart at each conversation), "
                       "not padded as batching says; on CUDA that needs a varlen attention kernel to be fast",
                       cfg.data)

