"""SPIN, self-play fine-tuning (Chen et al. 2024, arXiv:2401.01335), as a resumable loop of DPO runs.

Iteration t takes the model of iteration t (``--model`` for t = 0), lets it answer every SFT prompt, and
pairs the gold answer (chosen) with its own (rejected); the model of iteration t+1 is trained on those
pairs with the SPIN loss against iteration t as the reference. With the logistic loss, SPIN's objective is
DPO's ``sigmoid`` loss with β = λ (the paper's Eq. 4.7 vs DPO), so each iteration is a ``mixer train dpo``
run whose starting model and reference are both the model of iteration t.

From iteration 1 on, the training data is iteration t-1's pairs and iteration t's (the paper, §6.1 of
arXiv v3: "we leverage the synthetic data from the most recent iteration and add to the newly generated
synthetic data, therefore resulting in a synthetic dataset size of 50k at iteration 0 and 100k at
iteration 1, 2 and 3"; the authors' configs/config_iter<t>.yaml mix SPIN_iter<t-1> and SPIN_iter<t>);
``previous_pairs=False`` trains on iteration t's pairs only.

``OUT/iter-<t>/`` holds ``pairs/`` (the iteration's own pairs: ``data/`` and ``card.json``), ``train/`` (the
pairs the model was trained on, with a ``card.json`` saying from which iterations and how many) and
``model/`` (iteration t+1's model). Each part is written in a staging folder and moved into place when
complete, so rerunning the same command resumes at the first missing part: a finished part is never redone.
The answers of a generation still under way are kept in shards (``pair-shards/``), so a stopped generation
resumes at its first missing shard too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.outdir import staged_dir
from mixer.core.records import MESSAGE_TYPE

PAIR_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()), ("prompt", pa.list_(MESSAGE_TYPE)),
                         ("chosen", pa.list_(MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE))])
SPIN_MARKER = "spin.json"
#: an iteration's answers as they are made (removed once its pairs are assembled), and prompts per shard
PAIR_SHARDS = "pair-shards"
SHARD_PROMPTS = 256


def read_gold(data: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """SFT rows as (prompt, gold answer): the conversation up to its last assistant turn, and that turn. A
    build without ``messages``, or a row without a final assistant answer, is an error naming the row."""
    from mixer.generate.prompts import build_files

    rows: list[dict[str, Any]] = []
    for path in build_files(data):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise MixerError(f"{path}: not a readable Parquet file ({e})") from None
        if "messages" not in table.column_names:
            raise MixerError(f"{path}: SPIN needs an SFT build with `messages` (gold answers); found columns "
                             f"{', '.join(table.column_names)}")
        for n, row in enumerate(table.select([c for c in ("id", "messages") if c in table.column_names]).to_pylist()):
            messages = row["messages"] or []
            if len(messages) < 2 or messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
                raise MixerError(f"{path}: row {n} ({row.get('id')}): SPIN needs a gold answer, a conversation "
                                 "that ends with a non-empty assistant turn")
            clean = [{"role": m["role"], "content": m["content"]} for m in messages]
            rows.append({"id": str(row.get("id") or f"row_{len(rows)}"), "prompt": clean[:-1], "gold": clean[-1]})
    if not rows:
        raise MixerError(f"{data}: no SFT row")
    return rows[:limit] if limit else rows


def _write_part(final: Path, table: pa.Table, card: dict[str, Any]) -> None:
    """``final/data`` + ``final/card.json``, written in a staging sibling that moves into place only when whole
    (:func:`~mixer.core.outdir.staged_dir`): a stopped iteration leaves no half-written part, and a rerun redoes
    just that part."""
    with staged_dir(final) as tmp:
        (tmp / "data").mkdir(parents=True)
        pq.write_table(table, tmp / "data" / "train-00000-of-00001.parquet", compression="zstd")
        (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def generate_pairs(model: str | Path, gold: list[dict[str, Any]], folder: Path, iteration: int,
                   sampling: Any, chat_template: str | None, seed: int, shard_prompts: int = SHARD_PROMPTS) -> None:
    """``folder/data`` + ``folder/card.json``: (gold, generated) pairs of one iteration.

    The answers are written as they are made, ``shard_prompts`` prompts a shard, under ``iter-<t>/pair-shards/``
    (each shard whole or absent), so a stopped generation resumes at its first missing shard instead of
    answering every prompt again; the part is assembled from the shards, which are removed once it is in
    place. A prompt's answer comes from its own seed; under sampling (temperature > 0) it also depends on the
    other prompts of its shard (one RNG stream per backend call), and the shards are the same on a resume."""
    from mixer.generate.backends import make_backend
    from mixer.generate.gatt_draw import dialogue_seed
    from mixer.generate.store import write_parquet

    shards = folder.parent / PAIR_SHARDS
    paths = [shards / f"pairs-{k:05d}.parquet" for k in range((len(gold) + shard_prompts - 1) // shard_prompts)]
    backend = None
    for k, path in enumerate(paths):
        if path.is_file():
            continue
        if backend is None:
            backend = make_backend("transformers", model, sampling, chat_template=chat_template, dtype="auto",
                                   seed=seed)
        chunk = gold[k * shard_prompts:(k + 1) * shard_prompts]
        answers = backend.generate([g["prompt"] for g in chunk],
                                   [dialogue_seed(seed + iteration, g["id"]) for g in chunk])
        write_parquet(path, [{"dataset": f"spin_iter{iteration}", "id": g["id"], "prompt": g["prompt"],
                              "chosen": [g["gold"]], "rejected": [{"role": "assistant", "content": a[0].text.strip()}]}
                             for g, a in zip(chunk, answers, strict=True)], PAIR_SCHEMA)
    table = pa.concat_tables([pq.read_table(path, schema=PAIR_SCHEMA) for path in paths]).combine_chunks()
    rows = table.select(["chosen", "rejected"]).to_pylist()
    same = sum(r["chosen"][0]["content"].strip() == r["rejected"][0]["content"] for r in rows)
    _write_part(folder, table, {"iteration": iteration, "generator": str(model), "prompts": len(gold),
                                "pairs": table.num_rows, "generated_equals_gold": same, "seed": seed})
    shutil.rmtree(shards)  # the part holds every row now


def write_training_pairs(out: Path, iteration: int, previous_pairs: bool) -> dict[str, Any]:
    """``OUT/iter-<t>/train``: the pairs iteration t trains on (iteration t-1's, then t's, when
    ``previous_pairs`` and t >= 1; else t's alone), with a card naming the iterations and their counts.
    Rows keep their ``dataset`` (``spin_iter<k>``) and ``id``, so (dataset, id) stays unique. Returns the card."""
    used = [iteration - 1, iteration] if previous_pairs and iteration >= 1 else [iteration]
    tables = []
    for k in used:
        folder = out / f"iter-{k}" / "pairs" / "data"
        if not folder.is_dir():
            raise MixerError(f"{folder}: iteration {k}'s pairs are missing; iteration {iteration} trains on them")
        tables.append(pq.read_table(sorted(folder.glob("*.parquet")), schema=PAIR_SCHEMA))
    card = {"iteration": iteration, "previous_pairs": previous_pairs,
            "pairs_from": {f"iter-{k}": t.num_rows for k, t in zip(used, tables, strict=True)},
            "pairs": sum(t.num_rows for t in tables)}
    _write_part(out / f"iter-{iteration}" / "train", pa.concat_tables(tables), card)
    return card


def run_spin(model: str, data: str, output: str, iterations: int, config: str | Path, sets: list[str],
             sampling: Any, chat_template: str | None = None, seed: int = 42, max_prompts: int | None = None,
             log: Callable[[str], None] = print, previous_pairs: bool = True) -> list[Path]:
    """Run (or resume) ``iterations`` SPIN iterations into ``output``; return the models, one per iteration.
    ``previous_pairs``: iteration t >= 1 also trains on iteration t-1's pairs (the paper's default)."""
    from mixer.core.outdir import check_not_an_input
    from mixer.generate.store import resolved_paths
    from mixer.train.config import load_config
    from mixer.train.trainer import run

    if iterations < 1:
        raise MixerError(f"--iterations must be at least 1, got {iterations}")
    if max_prompts is not None and max_prompts < 1:  # 0 would take every row, -1 all but the last
        raise MixerError(f"--max-prompts must be at least 1, got {max_prompts}")
    out = Path(output)
    check_not_an_input(out, [("--model", model), ("--data", data)], option="--output")
    settings = {"model": str(model), "data": str(data), "config": str(config), "set": list(sets), "seed": seed,
                "max_prompts": max_prompts, "previous_pairs": previous_pairs,
                "sampling": vars(sampling) if hasattr(sampling, "__dict__") else
                {k: getattr(sampling, k) for k in sampling.__dataclass_fields__}}
    # recorded as typed (readable); compared resolved, so runs/sft here and ../runs/sft elsewhere are one model
    settings["paths"] = resolved_paths({"model": str(model), "data": str(data), "config": str(config)},
                                       ("model", "data", "config"))
    marker = out / SPIN_MARKER
    if Path(model).exists():  # a folder that is not a model is named now, not after the run folder is made
        from mixer.generate.checks import check_policy_folder

        check_policy_folder(model, option="--model", chat_template=chat_template)
    restart = False
    if out.exists():
        if not marker.is_file():
            raise MixerError(f"{out}: exists and is not a `mixer spin` folder ({SPIN_MARKER} missing); pick another")
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise MixerError(f"{marker}: unreadable ({e}); pick another --output") from None
        if not isinstance(saved, dict):
            raise MixerError(f"{marker}: not a `mixer spin` settings object; pick another --output")
        saved.setdefault("previous_pairs", False)  # folders from before the option trained on their own pairs only
        # a run that stopped before its first part (a mistyped --model that failed to load, say) made nothing
        # to keep apart from new settings: it starts over with them, as `mixer generate` does
        done = [part for part in out.glob("iter-*/*")
                if part.name in ("pairs", "train", "model", PAIR_SHARDS) and part.is_dir()]
        changed = _changed_settings(saved, settings)
        restart = bool(changed) and not done
        if changed and not restart:
            raise MixerError(f"{out}: an earlier SPIN run with other settings ({', '.join(changed)}); pick another "
                             "folder to change them")
    gold = read_gold(data, max_prompts)  # before anything is written: a bad --data leaves no folder behind
    load_config("dpo", config, sets, model=str(model), data=str(data), output_dir=str(out / "probe"))  # config errors
    if not out.exists() or restart:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    models: list[Path] = []
    current: str | Path = model
    for t in range(iterations):
        folder = out / f"iter-{t}"
        folder.mkdir(exist_ok=True)
        if not (folder / "pairs").is_dir():
            log(f"iteration {t}: generating with {current}")
            generate_pairs(current, gold, folder / "pairs", t, sampling, chat_template, seed)
        if not (folder / "model").is_dir():
            if not (folder / "train").is_dir():
                card = write_training_pairs(out, t, previous_pairs)
                log(f"iteration {t}: training pairs " + ", ".join(f"{k}: {n}" for k, n in card["pairs_from"].items()))
            log(f"iteration {t}: training iteration {t + 1} against {current}")
            with staged_dir(folder / "model") as tmp:  # a stopped run leaves no half-trained model in place
                run(load_config("dpo", config, sets, model=str(current), data=str(folder / "train"),
                                output_dir=str(tmp)))
        else:
            log(f"iteration {t}: done earlier, kept")
        current = folder / "model"
        models.append(folder / "model")
    return models


def _changed_settings(saved: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The settings that differ between a run folder's ``spin.json`` and this run's: paths by their resolved
    form (``paths``); a ``spin.json`` written before ``paths`` was recorded compares them as typed."""
    if "paths" in saved:
        old, new = {**saved, **saved["paths"]}, {**settings, **settings["paths"]}
    else:
        old, new = saved, settings
    keys = (old.keys() | new.keys()) - {"paths"}
    return sorted(k for k in keys if old.get(k) != new.get(k))
