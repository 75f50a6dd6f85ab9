"""Reading built mixtures and turning conversations into training tokens.

SFT tokenisation happens here rather than inside TRL so that every batching mode (padding-free,
packed, padded) sees the same tokens and the same truncation: TRL refuses ``max_length`` with
padding-free batches that are not packed, so the examples are truncated before they reach it. The
loss mask comes from the chat template's ``{% generation %}`` spans via
``apply_chat_template(return_assistant_tokens_mask=True)`` (the mechanism TRL's
``assistant_only_loss`` uses); TRL turns the ``assistant_masks`` column into ``-100`` labels. A message
marked ``train: false`` (the per-message loss flag, e.g. Ghost Attention's earlier assistant turns) has its
span removed from the mask, so it is context only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

logger = logging.getLogger("mixer.train")

SFT_COLUMNS = ("messages",)
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
#: the columns that hold conversations (lists of {role, content} messages) when a method requires them
CONVERSATION_COLUMNS = ("messages", "prompt", "chosen", "rejected")


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
    rows_per_file = _rows_per_file(path, files)
    # an empty shard holds nothing to train on, and `datasets` cannot read one ("BatchSize must be greater than 0")
    files = [f for f in files if rows_per_file[f]]
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
    check_conversations(ds.data.table, [c for c in required if c in CONVERSATION_COLUMNS],
                        [(f, rows_per_file[f]) for f in files])
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    return ds


def _rows_per_file(path: str | Path, files: list[str]) -> dict[str, int]:
    """Each file's row count from its footer; a file that is not Parquet is named, and data without a single row
    is an error here rather than a `datasets` message about batch sizes."""
    import pyarrow.parquet as pq

    rows = {}
    for f in files:
        try:
            rows[f] = pq.read_metadata(f).num_rows
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError... for a bad file
            raise DataError(f"{f}: not a readable Parquet file: {e}") from e
    if not any(rows.values()):
        raise DataError(f"{path}: the data has no rows ({len(files)} Parquet file(s), all empty)")
    return rows


def check_conversations(table: Any, columns: list[str], files: list[tuple[str, int]]) -> None:
    """Raise ``DataError`` unless every cell of ``columns`` is a non-empty list of messages with a role and a
    content, naming the file and row of the first bad one and how many rows are bad. A hand-made Parquet file
    with strings or nulls there would otherwise fail deep inside the chat template (``'str' object has no
    attribute 'get'``) or, with a null content, look like a wrong loss mask."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def where(row: int) -> str:
        for name, n in files:
            if row < n:
                return f"{name}, row {row}"
            row -= n
        return f"row {row}"

    for col in columns:
        column = table.column(col).combine_chunks()
        kind = column.type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_struct(kind.value_type) \
                or {"role", "content"} - {f.name for f in kind.value_type}:
            raise DataError(f"{files[0][0]}: column {col!r} is {kind}, not a list of {{role, content}} messages "
                            "(the `mixer build` schema: list<struct<role: string, content: string>>)")
        problems = [("is null", pc.is_null(column)), ("is an empty list", pc.equal(pc.list_value_length(column), 0))]
        messages = pc.list_flatten(column)
        parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
        calls = ({f.name for f in kind.value_type} >= {"tool_calls"}
                 and pc.fill_null(pc.greater(pc.list_value_length(pc.struct_field(messages, "tool_calls")), 0), False))
        for field in ("role", "content"):
            bad = pc.is_null(pc.struct_field(messages, field))
            if field == "content" and calls is not False:  # an assistant turn that only calls a tool (OpenAI's form)
                bad = pc.and_(bad, pc.invert(calls))
            hit = np.zeros(len(column), dtype=bool)
            hit[parents[bad.to_numpy(zero_copy_only=False)]] = True
            problems.append((f"has a message with no {field}", pa.array(hit)))
        for what, mask in problems:
            n_bad = pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0
            if n_bad:
                first = pc.index(pc.fill_null(mask, False), True).as_py()
                raise DataError(f"{where(first)}: {col!r} {what}; {n_bad} row(s) of the data are like this, and a "
                                "conversation needs {role, content} messages. Fix or drop those rows")
        if col in ("messages", "chosen"):
            # replies that are all empty train the model to end its turn at once: legal, rarely meant (a build's
            # normalise drops empty turns; hand-made or converted data may hold them)
            assistant = pc.equal(pc.struct_field(messages, "role"), "assistant").to_numpy(zero_copy_only=False)
            content = pc.struct_field(messages, "content")
            # lengths only (no copy of the text, ~1 GB at Tulu V2's size); the few short replies are looked at
            length = pc.fill_null(pc.utf8_length(content), 0).to_numpy(zero_copy_only=False)
            spoken = assistant & (length > 0)
            short = np.flatnonzero(spoken & (length <= 64))
            blank = [i for i, text in zip(short, content.take(pa.array(short)).to_pylist(), strict=True)
                     if not text.strip()]
            spoken[np.asarray(blank, dtype=np.int64)] = False
            replies, said = np.zeros(len(column), dtype=bool), np.zeros(len(column), dtype=bool)
            replies[parents[assistant]] = True
            said[parents[spoken]] = True
            silent = np.flatnonzero(replies & ~said)
            if len(silent):
                logger.warning("%s: %d row(s) whose %r replies are all empty (first: %s): they teach the model to "
                               "end its turn at once; drop them from the data unless that is meant", files[0][0]
                               if len(files) == 1 else "the data", len(silent), col, where(int(silent[0])))


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
    mask = list(out["assistant_masks"]) if assistant_only_loss else [1] * len(out["input_ids"])
    if assistant_only_loss and any(m.get("train") is False for m in example["messages"]):
        mask = unmask_untrained(mask, example["messages"])
    ids = list(out["input_ids"])[:max_length]
    trainable = any(mask)  # before truncation: tells a reply cut off by max_length from no reply at all
    mask = mask[:max_length]
    return {"input_ids": ids, "assistant_masks": mask, "n_loss_tokens": sum(mask), "trainable": trainable}


def unmask_untrained(mask: list[int], messages: list[dict[str, Any]]) -> list[int]:
    """``mask`` with the spans of assistant messages marked ``train: false`` set to 0. The template marks one
    ``{% generation %}`` span per assistant message, in order, so the k-th run of 1s is the k-th assistant
    message; a template that marks them otherwise cannot be mapped, and that is an error, not a guess."""
    spans: list[tuple[int, int]] = []
    for i, bit in enumerate(mask):
        if bit and (i == 0 or not mask[i - 1]):
            spans.append((i, i + 1))
        elif bit:
            spans[-1] = (spans[-1][0], i + 1)
    replies = [m for m in messages if m["role"] == "assistant"]
    if len(spans) != len(replies):
        raise DataError(f"the chat template marks {len(spans)} assistant span(s) for {len(replies)} assistant "
                        "message(s); per-message `train` flags need one {% generation %} span per reply")
    out = list(mask)
    for (start, end), reply in zip(spans, replies, strict=True):
        if reply.get("train") is False:
            out[start:end] = [0] * (end - start)
    return out


def tokenize_sft(
    ds: Any, tokenizer: Any, max_length: int, assistant_only_loss: bool = True, num_proc: int | None = None
) -> Any:
    """``messages`` -> ``input_ids`` + ``assistant_masks``, truncated to ``max_length`` (keeping the start).

    Rows left with no loss token (an assistant turn wholly past ``max_length``) are dropped and counted
    in the log: they would only cost compute.
    """
    if assistant_only_loss:
        _check_markers(tokenizer)
    fn_kwargs = {"tokenizer": tokenizer, "max_length": max_length, "assistant_only_loss": assistant_only_loss}
    tokenized = ds.map(
        _tokenize_row,
        fn_kwargs=fn_kwargs,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        desc="Tokenising (chat template, assistant mask)",
        new_fingerprint=map_fingerprint(ds, fn_kwargs, _tokenize_row, unmask_untrained),
    )
    kept = tokenized.filter(lambda n: n > 0, input_columns="n_loss_tokens", num_proc=num_proc)
    reasons = drop_reasons(tokenized, max_length, assistant_only_loss)
    if reasons:
        logger.warning("dropped %d of %d row(s) with no token to train on: %s", len(tokenized) - len(kept),
                       len(tokenized), "; ".join(reasons))
    if len(kept) == 0:
        raise DataError(f"no row has a token to train on: {'; '.join(reasons)}")
    return kept.remove_columns(["n_loss_tokens", "trainable"])


def map_fingerprint(ds: Any, fn_kwargs: dict[str, Any], *functions: Any) -> str:
    """The cache key of a ``datasets.map`` over ``ds`` with ``functions`` (the mapped one and those it calls):
    their code, not only their names. ``datasets`` hashes a module's function by reference, so without this a
    newer mixer whose tokenisation changed would reuse the older one's cached rows (another mask, other
    columns) from the Hugging Face cache, silently."""
    import transformers
    from datasets.fingerprint import Hasher

    return Hasher.hash((ds._fingerprint, [_code_key(f.__code__) for f in functions], fn_kwargs,
                        transformers.__version__))


def _code_key(code: Any) -> tuple[Any, ...]:
    """A code object's bytecode, names and constants (nested code objects too): what changes when it is edited."""
    import types

    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return code.co_code, code.co_names, consts


def drop_reasons(tokenized: Any, max_length: int, assistant_only_loss: bool = True) -> list[str]:
    """Why rows of ``tokenized`` (``_tokenize_row``'s columns) carry no loss token, counted per reason: a reply
    that starts past ``max_length``, or no reply the template marks at all (roles other than ``assistant``,
    such as ShareGPT's ``gpt``, or every reply marked ``train: false``)."""
    import numpy as np

    n_loss = np.asarray(tokenized["n_loss_tokens"])
    trainable = np.asarray(tokenized["trainable"], dtype=bool)
    past = int(((n_loss == 0) & trainable).sum())
    none = int(((n_loss == 0) & ~trainable).sum())
    reasons = []
    if past:
        reasons.append(f"{past} whose {'assistant turns start' if assistant_only_loss else 'text starts'} past "
                       f"max_length={max_length}")
    if none:
        reasons.append(f"{none} with no assistant reply to learn from (no message with role 'assistant', "
                       "or every one marked train: false)")
    return reasons


def _check_markers(tokenizer: Any) -> None:
    """Fail early if the template marks no assistant token (a template without generation markers)."""
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = tokenizer.apply_chat_template(probe, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    if 1 not in out["assistant_masks"]:
        raise DataError(
            "the chat template marks no assistant token ({% generation %} markers missing); "
            "use chat_template: tulu or set assistant_only_loss: false"
        )
