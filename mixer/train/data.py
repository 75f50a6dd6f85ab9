"""Reading built mixtures and turning conversations into training tokens.

SFT tokenisation happens here rather than inside TRL so that every batching mode (padding-free,
packed, padded) sees the same tokens and the same truncation: TRL refuses ``max_length`` with
padding-free batches that are not packed, so the examples are truncated before they reach it. The
loss mask comes from the chat template's ``{% generation %}`` spans via
``apply_chat_template(return_assistant_tokens_mask=True)`` (the mechanism TRL's
``assistant_only_loss`` uses); TRL turns the ``assistant_masks`` column into ``-100`` labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

logger = logging.getLogger("mixer.train")

SFT_COLUMNS = ("messages",)
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


class DataError(MixerError):
    """The training data is missing or not in the format the trainer expects."""


def resolve_parquet_files(path: str | Path) -> list[str]:
    """The Parquet files of a build: ``OUT/data/*.parquet``, a directory of Parquet, or one file."""
    p = Path(path)
    if p.is_file():
        if p.suffix != ".parquet":
            raise DataError(f"{p}: expected a .parquet file or a `mixer build` output directory")
        return [str(p)]
    if not p.is_dir():
        raise DataError(f"training data {p} does not exist")
    for folder in (p / "data", p):
        files = sorted(str(f) for f in folder.glob("*.parquet"))
        if files:
            return files
    raise DataError(f"{p}: no Parquet files in {p / 'data'} or {p}; run `mixer build` first")


def load_parquet(path: str | Path, required: tuple[str, ...], max_rows: int | None = None) -> Any:
    """A ``datasets.Dataset`` of the build's Parquet shards, checked to have the ``required`` columns."""
    import datasets

    files = resolve_parquet_files(path)
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except Exception as e:  # noqa: BLE001 - pyarrow/datasets raise many types for a bad file
        raise DataError(f"{path}: cannot read Parquet: {e}") from e
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(ds.column_names)}); "
            f"expected {'a preference build' if 'chosen' in required else 'a V2 SFT build'}"
        )
    if len(ds) == 0:
        raise DataError(f"{path}: the data has no rows")
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    return ds


def is_messages(value: Any) -> bool:
    """Whether a cell holds a conversation: a non-empty list of ``{role, content}`` messages."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def load_preference_dataset(path: str | Path, max_rows: int | None = None, *, implicit_prompt: bool = False,
                            also: tuple[str, ...] = ()) -> Any:
    """Preference rows in TRL's conversational form: ``prompt`` ends with a user turn, ``chosen`` and
    ``rejected`` hold the assistant reply; only these columns are kept. ``implicit_prompt``: also take
    whole conversations in ``chosen``/``rejected`` with no conversational ``prompt`` (UltraFeedback binarized's
    own layout, which ``RewardTrainer`` reads; ``DPOTrainer`` wants the prompt apart). ``also``: further
    columns kept where the data has them."""
    ds = load_parquet(path, ("chosen", "rejected") if implicit_prompt else PREFERENCE_COLUMNS, max_rows)
    first = ds[0]
    explicit = "prompt" in ds.column_names and is_messages(first["prompt"])
    for col in PREFERENCE_COLUMNS if explicit or not implicit_prompt else ("chosen", "rejected"):
        if not is_messages(first[col]):
            raise DataError(f"{path}: column {col!r} must be a list of {{role, content}} messages")
    if explicit:
        if first["prompt"][-1]["role"] != "user":
            raise DataError(f"{path}: `prompt` must end with a user turn (row 0 ends with "
                            f"{first['prompt'][-1]['role']})")
        keep = list(PREFERENCE_COLUMNS)
    elif first["chosen"][0]["role"] == "assistant":
        raise DataError(f"{path}: `chosen` holds only the reply and there is no conversational `prompt` "
                        "column; expected a preference build or whole conversations")
    else:
        keep = ["chosen", "rejected"]
    return ds.select_columns(keep + [c for c in also if c in ds.column_names])


def _tokenize_row(
    example: dict[str, Any], tokenizer: Any, max_length: int, assistant_only_loss: bool
) -> dict[str, Any]:
    out = tokenizer.apply_chat_template(
        example["messages"],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=assistant_only_loss,
    )
    ids = list(out["input_ids"])[:max_length]
    mask = list(out["assistant_masks"])[:max_length] if assistant_only_loss else [1] * len(ids)
    return {"input_ids": ids, "assistant_masks": mask, "n_loss_tokens": sum(mask)}


def tokenize_sft(
    ds: Any, tokenizer: Any, max_length: int, assistant_only_loss: bool = True, num_proc: int | None = None
) -> Any:
    """``messages`` -> ``input_ids`` + ``assistant_masks``, truncated to ``max_length`` (keeping the start).

    Rows left with no loss token (an assistant turn wholly past ``max_length``) are dropped and counted
    in the log: they would only cost compute.
    """
    if assistant_only_loss:
        _check_markers(tokenizer)
    tokenized = ds.map(
        _tokenize_row,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "assistant_only_loss": assistant_only_loss},
        remove_columns=ds.column_names,
        num_proc=num_proc,
        desc="Tokenising (chat template, assistant mask)",
    )
    kept = tokenized.filter(lambda n: n > 0, input_columns="n_loss_tokens", num_proc=num_proc)
    if len(kept) < len(tokenized):
        logger.warning("dropped %d row(s) with no assistant token within max_length=%d",
                       len(tokenized) - len(kept), max_length)
    if len(kept) == 0:
        raise DataError(f"no row has an assistant token within max_length={max_length}")
    return kept.remove_columns(["n_loss_tokens"])


def _check_markers(tokenizer: Any) -> None:
    """Fail early if the template marks no assistant token (a template without generation markers)."""
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = tokenizer.apply_chat_template(probe, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    if 1 not in out["assistant_masks"]:
        raise DataError(
            "the chat template marks no assistant token ({% generation %} markers missing); "
            "use chat_template: tulu or set assistant_only_loss: false"
        )
