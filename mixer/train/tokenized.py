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
from pathlib import Path
from typing import Any

from mixer.core.digest import file_sha256
from mixer.core.errors import MixerError
from mixer.train.packing import TokenisedRows, output_shards, row_schema, shard_rows, stream_rows

logger = logging.getLogger("mixer.train")

MANIFEST = "tokenized.json"
FORMAT = "mixer-tokenized/1"
PACKINGS = ("bfd",)
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


def _tokenize_example(example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
    """One row through the trainer's row tokenisation, one token past ``max_length`` to tell a cut row."""
    from mixer.train.data import _tokenize_row

    out = _tokenize_row(example, tokenizer, max_length + 1, True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    return {"input_ids": ids[:max_length], "assistant_masks": mask[:max_length], "truncated": len(ids) > max_length,
            "n_loss": sum(mask[:max_length]), "has_reply": out["trainable"]}


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

    from mixer.train.data import _check_markers, _tokenize_row, map_fingerprint, unmask_untrained

    _check_markers(tokenizer)
    columns = rows.column_names
    kept_columns = [c for c in columns if c in ("dataset", "id")]
    features = datasets.Features({  # written as int32/int8 by the workers: no int64 copy to cast later
        **{c: rows.features[c] for c in kept_columns}, "input_ids": datasets.List(datasets.Value("int32")),
        "assistant_masks": datasets.List(datasets.Value("int8")), "truncated": datasets.Value("bool"),
        "n_loss": datasets.Value("int64"), "has_reply": datasets.Value("bool")})
    pa.default_memory_pool().release_unused()  # what reading the build freed: the forked workers would copy it
    fn_kwargs = {"tokenizer": tokenizer, "max_length": max_length}
    mapped = rows.map(_tokenize_example, fn_kwargs=fn_kwargs,
                      remove_columns=[c for c in columns if c not in kept_columns], num_proc=num_proc,
                      features=features, desc="Tokenising (chat template, assistant mask)",
                      new_fingerprint=map_fingerprint(rows, fn_kwargs, _tokenize_example, _tokenize_row,
                                                      unmask_untrained))
    table = mapped.with_format("arrow")[:]
    n = table.num_rows
    sources = (pc.fill_null(table.column("dataset").cast(pa.string()), "(no source)") if "dataset" in columns
               else pa.array(["(no source)"] * n, pa.string()))
    ids = (pc.fill_null(table.column("id").cast(pa.string()), "") if "id" in columns else pa.array([""] * n))
    ids = pa.array([v or str(i) for i, v in enumerate(ids.to_pylist())], pa.string())
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)
    trainable = table.column("n_loss").to_numpy()
    truncated = table.column("truncated").to_numpy(zero_copy_only=False)
    has_reply = table.column("has_reply").to_numpy(zero_copy_only=False)
    keep = trainable > 0
    stats: dict[str, dict[str, int]] = {}
    for k, source in enumerate(sources.to_pylist()):
        s = stats.setdefault(source, {"records": 0, "kept": 0, "dropped_no_loss_token": 0,
                                      "dropped_past_max_length": 0, "dropped_no_reply": 0, "truncated": 0,
                                      "total_tokens": 0, "trainable_tokens": 0})
        s["records"] += 1
        s["truncated"] += int(truncated[k])
        if keep[k]:
            s["kept"] += 1
            s["total_tokens"] += int(lengths[k])
            s["trainable_tokens"] += int(trainable[k])
        else:  # the total, and why: every reply past max_length, or none the template marks (roles, train: false)
            s["dropped_no_loss_token"] += 1
            s["dropped_past_max_length" if has_reply[k] else "dropped_no_reply"] += 1
    files = [f["filename"] for f in mapped.cache_files]
    # where the map's files hold its rows as they are, the writer reads them from there (TokenisedRows)
    in_files = bool(files) and sum(stream_rows(f) for f in files) == n
    held = None if in_files else table.select(["input_ids", "assistant_masks"])
    return TokenisedRows(files, held, lengths, sources, ids), np.flatnonzero(keep), dict(sorted(stats.items()))


def default_output(data: str | Path) -> Path:
    """Beside the build: ``OUT-tokenized`` for a folder, ``NAME-tokenized`` for a Parquet file."""
    p = Path(data)
    return p.with_name(f"{p.stem if p.is_file() else p.name}-tokenized")


def write_tokenized(data: str | Path, tokenizer: Any, out: str | Path, *, max_length: int, pack: str | None,
                    settings: dict[str, Any], overwrite: bool = False, workers: int | None = None) -> dict[str, Any]:
    """``mixer tokenize``: tokenize a build (and pack it) into ``out``; return the manifest written."""
    from mixer.core.outdir import check_not_an_input, check_output_dir, staged_dir
    from mixer.train.data import resolve_parquet_files

    if max_length < 1:
        raise MixerError(f"--max-length must be positive, got {max_length}")
    if pack is not None and pack not in PACKINGS:
        raise MixerError(f"--pack {pack!r}: choose {', '.join(PACKINGS)}")
    out = Path(out)
    # before the marker check: `-o BUILD --overwrite` would otherwise delete the build's shards it reads
    check_not_an_input(out, [("the input build", Path(data))], option="--output")
    check_output_dir(out, marker=MANIFEST, overwrite=overwrite, what="tokenized output folder")
    inputs = resolve_parquet_files(data)
    from mixer.train.data import SFT_COLUMNS, load_parquet

    rows = load_parquet(data, SFT_COLUMNS)
    from mixer.train.accel.host import tokenise_processes

    tokenised, kept, stats = tokenize_rows(rows, tokenizer, max_length, tokenise_processes(workers, len(rows)))
    if len(kept) == 0:
        raise MixerError(f"{data}: no record has an assistant token within max_length={max_length}")
    n_rows, parts = output_shards(tokenised, kept, max_length, pack)
    n_shards = max(1, -(-n_rows // shard_rows(max_length, pack)))
    # written in a staging folder beside `out` and renamed into place when whole: a failure or Ctrl-C leaves
    # the earlier output as it was, never its manifest beside half of the new shards
    with staged_dir(out) as staging:
        (staging / "data").mkdir()
        manifest = _write_shards_and_manifest(staging, data, inputs, tokenizer, parts, n_rows, n_shards, stats,
                                              max_length=max_length, pack=pack, settings=settings)
    return manifest


def _write_shards_and_manifest(out: Path, data: str | Path, inputs: list[Any], tokenizer: Any, parts: Any,
                               n_rows: int, n_shards: int, stats: dict[str, dict[str, int]], *, max_length: int,
                               pack: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The shards, the card and the manifest of ``write_tokenized``, into the folder ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = row_schema(bool(pack)).names
    shards = []
    for k, part in enumerate(parts):
        name = f"data/train-{k:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(part, out / name, compression="zstd")
        shards.append({"file": name, "rows": part.num_rows, "sha256": file_sha256(out / name)})
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
        "input": {"path": str(data), "files": [{"file": Path(f).name, "sha256": file_sha256(Path(f))}
                                               for f in inputs]},
        "columns": columns,
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
             "", "| source | records | kept | dropped (no loss token) | of them: past max_length | of them: no "
             "assistant reply | truncated | total tokens | trainable tokens |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in [*manifest["sources"].items(), ("**total**", manifest["totals"])]:
        split = f"{s['dropped_past_max_length']:,} | {s['dropped_no_reply']:,}" if "dropped_no_reply" in s else "- | -"
        lines.append(f"| {name} | {s['records']:,} | {s['kept']:,} | {s['dropped_no_loss_token']:,} | {split} | "
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

