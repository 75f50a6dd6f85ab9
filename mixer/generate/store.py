"""The output folder of ``mixer generate``: its file names, atomic writers and the resume protocol.

A run writes ``generate.json`` (the settings that decide the samples) before its first shard; a rerun with the
same settings resumes from the shards already written, a finished run (``card.json`` with the same pick
settings) is not redone, and a folder that is not a ``mixer generate`` output is never touched without
``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.outdir import check_not_an_input
from mixer.generate.config import GenerateConfig
from mixer.generate.prompts import Prompt

MANIFEST = "generate.json"
CARD = "card.json"
TIMINGS = "timings.json"
VERSIONS = "backend_versions.json"
SHARDS = "shards"
BEST_OF_N = "best_of_n"
BEST_VS_WORST = "best_vs_worst"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, **PARQUET_OPTIONS)
    os.replace(tmp, path)


def prompts_digest(prompts: list[Prompt]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in prompts:
        h.update(json.dumps([p.key, p.dataset, p.messages], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()



def prepare_output(cfg: GenerateConfig, manifest: dict[str, Any]) -> str:
    """Make ``OUT`` ready: ``new``, ``resume`` (same settings) or ``complete`` (nothing to do).

    An existing folder that is not a ``mixer generate`` output is never touched without ``--overwrite``;
    one generated with other settings is refused too (its shards would mix two runs).
    """
    out = Path(cfg.output)
    # the output folder may be replaced as a whole (--overwrite): it must hold none of the inputs
    inputs = [("--policy", cfg.policy), ("--reward-model", cfg.reward_model), ("--data", cfg.data),
              ("--recipe", cfg.recipe), ("--raw-dir", cfg.raw_dir), ("--chat-template", cfg.chat_template)]
    check_not_an_input(out, [(o, Path(p)) for o, p in inputs if p and Path(p).exists()], option="--output")
    if out.exists() and not out.is_dir():
        raise MixerError(f"--output {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if cfg.overwrite:
            shutil.rmtree(out)
        elif not (out / MANIFEST).is_file():
            raise MixerError(f"{out} exists and is not a mixer generate output; pass --overwrite to replace it "
                             "or choose another --output")
        else:
            try:
                old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise MixerError(f"{out / MANIFEST}: unreadable ({e}); pass --overwrite to start over") from None
            changed = _changed_keys(old, manifest)
            if changed and not any((out / SHARDS).glob("*.parquet")):
                # a run that stopped before its first shard (a mistyped or wrong model, say): no sample to
                # keep apart from the new settings', so it starts over
                write_json(out / MANIFEST, manifest)
                return "new"
            if changed:
                raise MixerError(f"{out} was generated with other settings ({', '.join(changed)} differ); resume "
                                 "with the same ones, pass --overwrite to start over, or choose another --output")
            card = out / CARD
            if card.is_file():
                try:
                    done = json.loads(card.read_text(encoding="utf-8")).get("settings", {}).get("assembly")
                except ValueError:
                    done = None
                if done == cfg.assembly_settings():
                    return "complete"
            return "resume"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MANIFEST, manifest)
    return "new"


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two manifests (``sampling.n``, ``prompts_digest``)."""
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed



def shard_path(out: Path, k: int) -> Path:
    return out / SHARDS / f"samples-{k:05d}.parquet"


def recorded_versions(out: Path) -> dict[str, str]:
    """Versions of the backend that sampled the shards, for a run whose shards were all done earlier."""
    path = out / VERSIONS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}



def digest_file(path: Path) -> dict[str, Any]:
    return {"path": str(path.relative_to(path.parents[2])), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": pq.ParquetFile(path).metadata.num_rows}
