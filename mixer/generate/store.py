"""The output folder of ``mixer generate``: its file names, atomic writers and the resume protocol.

A run writes ``generate.json`` (the settings that decide the samples) before its first shard; a rerun with the
same settings resumes from the shards already written, a finished run (``card.json`` with the same pick
settings) is not redone, and a folder that is not a ``mixer generate`` output is never touched without
``--overwrite``. Best-of-N (:mod:`mixer.generate.run`) and every other method (:mod:`mixer.generate.job`) go
through :func:`open_shards` and :func:`record_versions`, so the protocol and its messages exist once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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

logger = logging.getLogger("mixer.generate")


def write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a sibling then a rename): a stopped run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


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


def prepare_output(cfg: GenerateConfig, manifest: dict[str, Any], files: Sequence[str] = ()) -> str:
    """Make ``OUT`` ready: ``new``, ``resume`` (same settings) or ``complete`` (nothing to do).

    An existing folder that is not a ``mixer generate`` output is never touched without ``--overwrite``;
    one generated with other settings is refused too (its shards would mix two runs). ``files``: the files the
    prompts were read from (a recipe's sources live under its own ``raw_dir``, which no option names): ``OUT``
    may hold none of them, ``--overwrite`` or not.
    """
    out = Path(cfg.output)
    # the output folder may be replaced as a whole (--overwrite): it must hold none of the inputs
    options = [("--policy", cfg.policy), ("--reward-model", cfg.reward_model), ("--data", cfg.data),
               ("--recipe", cfg.recipe), ("--raw-dir", cfg.raw_dir), ("--chat-template", cfg.chat_template),
               ("--preprompts", cfg.preprompts), ("--system-messages", cfg.system_messages), ("--rubric", cfg.rubric)]
    read = [("prompt file", Path(f)) for f in files]
    check_not_an_input(out, [(o, Path(p)) for o, p in options if p and Path(p).exists()] + read, option="--output")

    def finished(card: dict[str, Any]) -> bool:
        return card.get("settings", {}).get("assembly") == cfg.assembly_settings()

    return ready_run_folder(out, manifest, overwrite=cfg.overwrite, marker=MANIFEST, tool="mixer generate",
                            finished=finished)


def ready_run_folder(out: Path, manifest: dict[str, Any], *, overwrite: bool, marker: str, tool: str,
                     finished: Callable[[dict[str, Any]], bool]) -> str:
    """The resume protocol of a run folder written shard by shard (``mixer generate``, ``mixer gatt``):
    ``new``, ``resume`` (the ``marker`` manifest is this run's) or ``complete`` (``card.json`` exists and
    ``finished(card)`` says it is this run's). A folder without ``marker`` is never touched without
    ``overwrite``; one made with other settings is refused (its shards would mix two runs), unless it stopped
    before its first shard. The caller has checked that ``out`` holds none of the run's inputs."""
    if out.exists() and not out.is_dir():
        raise MixerError(f"--output {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not (out / marker).is_file():
            raise MixerError(f"{out} exists and is not a {tool} output; pass --overwrite to replace it "
                             "or choose another --output")
        else:
            try:
                old = json.loads((out / marker).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise MixerError(f"{out / marker}: unreadable ({e}); pass --overwrite to start over") from None
            changed = _changed_keys(*_comparable(old, manifest))
            if changed and not any((out / SHARDS).glob("*.parquet")):
                # a run that stopped before its first shard (a mistyped or wrong model, say): no sample to
                # keep apart from the new settings', so it starts over, without the versions of the backend it
                # loaded (another backend's would be kept as this run's, with a warning about a resume)
                (out / VERSIONS).unlink(missing_ok=True)
                write_json(out / marker, manifest)
                return "new"
            if changed:
                raise MixerError(f"{out} was generated with other settings ({', '.join(changed)} differ); resume "
                                 "with the same ones, pass --overwrite to start over, or choose another --output")
            card = out / CARD
            if card.is_file():
                try:
                    done = finished(json.loads(card.read_text(encoding="utf-8")))
                except (ValueError, AttributeError):
                    done = False
                if done:
                    return "complete"
            return "resume"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / marker, manifest)
    return "new"


#: the settings that name files or folders: compared resolved on resume, recorded as typed
PATH_SETTINGS = ("policy", "reward_model", "data", "recipe", "raw_dir", "chat_template")


def resolved_paths(sampling: dict[str, Any], keys: Sequence[str] = PATH_SETTINGS) -> dict[str, str]:
    """The path settings (``keys``) of ``sampling`` that name something that exists, resolved: ``runs/sft``
    typed in one folder and ``../runs/sft`` in another are the same model (a hub id or ``tulu`` stays as typed)."""
    return {k: str(Path(v).resolve()) if Path(v).exists() else v
            for k in keys if isinstance(v := sampling.get(k), str)}


def _comparable(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two manifests as a resume compares them: the path settings by their resolved form (``paths``). A
    manifest written before ``paths`` was recorded is compared as typed, as it was then."""
    if "paths" not in old:
        return old, {k: v for k, v in new.items() if k != "paths"}

    def swap(m: dict[str, Any]) -> dict[str, Any]:
        paths = m.get("paths", {})
        sampling = {**m.get("sampling", {}), **paths}
        return {**{k: v for k, v in m.items() if k != "paths"}, "sampling": sampling}

    return swap(old), swap(new)


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


@dataclass(frozen=True)
class ShardPlan:
    """Where a run stands once :func:`open_shards` has made its output folder ready: the shards still to make.

    A shard holds ``shard_prompts`` consecutive prompts and is written whole and atomically, so a shard file
    that exists is done; a rerun makes only the missing ones and ends with the same bytes as a run that was
    never interrupted. The caller only makes each shard's rows (:meth:`pending`, :meth:`write`).
    """

    out: Path
    #: ``new``, ``resume`` or ``complete`` (see :func:`prepare_output`)
    state: str
    prompts: list[Prompt]
    shard_prompts: int
    n_shards: int
    #: the shards no earlier run wrote, fixed when the plan is made
    todo: list[int]

    @property
    def complete(self) -> bool:
        """A finished run with the same settings: nothing to sample, nothing to assemble again."""
        return self.state == "complete"

    @property
    def prompts_done(self) -> int:
        """Prompts an earlier run already sampled (the shards not in :attr:`todo`)."""
        return len(self.prompts) - sum(len(self.chunk(k)) for k in self.todo)

    def chunk(self, k: int) -> list[Prompt]:
        return self.prompts[k * self.shard_prompts:(k + 1) * self.shard_prompts]

    def pending(self) -> Iterator[tuple[int, int, list[Prompt]]]:
        """``(shard number, index of its first prompt, its prompts)`` for each shard still to make, in order."""
        for k in self.todo:
            yield k, k * self.shard_prompts, self.chunk(k)

    def write(self, k: int, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        """Write shard ``k`` atomically: from here on a rerun skips it."""
        write_parquet(shard_path(self.out, k), rows, schema)

    def finished_card(self) -> dict[str, Any]:
        """The card of the finished run (for :attr:`complete`), returned as if the run had just made it."""
        return json.loads((self.out / CARD).read_text(encoding="utf-8"))


def open_shards(cfg: GenerateConfig, prompts: list[Prompt], sampling: dict[str, Any],
                say: Callable[[str], None], inputs: Sequence[str] = ()) -> ShardPlan:
    """Write or check the manifest (``sampling``: every setting that decides a shard's rows; the prompts by
    count and digest), make ``OUT`` ready (:func:`prepare_output`) and say whether the run is complete or how
    far an earlier one got. Callers read and check every input first, so bad input leaves no folder behind;
    ``inputs``: the files the prompts came from (:attr:`PromptSet.inputs`), which ``OUT`` may not hold."""
    manifest = {"tool": "mixer generate", "sampling": sampling, "prompts": len(prompts),
                "prompts_digest": prompts_digest(prompts), "paths": resolved_paths(sampling)}
    state = prepare_output(cfg, manifest, inputs)
    out = Path(cfg.output)
    n_shards = (len(prompts) + cfg.shard_prompts - 1) // cfg.shard_prompts
    if state == "complete":
        say(f"{out} is complete (same settings); nothing to do")
        return ShardPlan(out, state, prompts, cfg.shard_prompts, n_shards, [])
    todo = [k for k in range(n_shards) if not shard_path(out, k).is_file()]
    if state == "resume":
        say(f"resuming {out}: {n_shards - len(todo)} of {n_shards} shard(s) already done")
    return ShardPlan(out, state, prompts, cfg.shard_prompts, n_shards, todo)


def record_versions(out: Path, versions: dict[str, str]) -> None:
    """Keep the versions of the backend that samples the shards; a resumed run under other versions keeps the
    first ones (they made the earlier shards) and warns, since its bytes may then differ from an unbroken run."""
    recorded = recorded_versions(out)
    if recorded and recorded != versions:
        logger.warning("resuming with other package versions than the first shards: %s, now %s", recorded,
                       versions)
    else:
        write_json(out / VERSIONS, versions)


def shard_path(out: Path, k: int) -> Path:
    return out / SHARDS / f"samples-{k:05d}.parquet"


def recorded_versions(out: Path) -> dict[str, str]:
    """Versions of the backend that sampled the shards, for a run whose shards were all done earlier."""
    path = out / VERSIONS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def digest_file(path: Path) -> dict[str, Any]:
    return {"path": str(path.relative_to(path.parents[2])), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": pq.ParquetFile(path).metadata.num_rows}
