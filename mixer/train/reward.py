"""Reward-model data and scoring, shared by ``mixer train rm`` (held-out accuracy) and ``mixer generate``.

A reward model here is ``AutoModelForSequenceClassification`` with one label on top of the base model, as
TRL's ``RewardTrainer`` builds it: the conversation is rendered with the chat template, and the score is the
head's output at the last non-padding token. :class:`RewardScorer` scores exactly that way, so the rewards
``mixer generate`` ranks completions by are the ones the model was trained to order.

The margin (Llama 2, Touvron et al. 2023, §3.2.2) needs a graded preference per pair. Llama 2's annotators
rated on four levels and Table 28's "Margin Small" maps them to 1, 2/3, 1/3 and 0. UltraFeedback rates each
response 1-10 instead, so the gap of the two ratings is mapped linearly: ``m = min(gap / full_gap, 1)``; with
the default ``full_gap = 3`` gaps of 0, 1, 2 and 3+ points reproduce the four Llama 2 values.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.core.records import SCORE_FIELDS
from mixer.train.data import DataError, is_messages, load_preference_dataset

logger = logging.getLogger("mixer.train")


def margin_from_scores(score_chosen: float, score_rejected: float, full_gap: float = 3.0) -> float:
    """Llama 2's margin for one pair from its two ratings: 0 for no gap, 1 from ``full_gap`` points up.

    A negative gap (the "chosen" side rated lower, which a binarisation should not produce) gets 0: the
    margin only ever asks for *more* separation, never for the reverse order.
    """
    if full_gap <= 0:
        raise ValueError(f"full_gap must be positive, got {full_gap}")
    gap = float(score_chosen) - float(score_rejected)
    return min(max(gap, 0.0) / full_gap, 1.0)


def load_reward_dataset(path: str | Path, max_rows: int | None = None, *, margin: bool = False,
                        full_gap: float = 3.0) -> Any:
    """Pairs for ``RewardTrainer``: ``chosen``/``rejected`` (and ``prompt`` when separate), plus ``margin``.

    Reads a preference build (``prompt`` ending with a user turn, one-message ``chosen``/``rejected``, and
    the ratings of the pairs whose source has them) or the UltraFeedback binarized file itself (string
    ``prompt``, whole conversations in ``chosen``/``rejected``). ``margin`` needs the ratings in
    ``score_chosen``/``score_rejected``: pairs without them (null, e.g. HH-RLHF's in a mixed build) get
    margin 0, the plain ranking loss, and a warning counts them; data where no pair is rated is an error
    rather than a run that silently trains without the margin it was asked for.
    """
    ds = load_preference_dataset(path, max_rows, implicit_prompt=True, also=(*SCORE_FIELDS, "dataset"))
    keep = [c for c in ds.column_names if c not in (*SCORE_FIELDS, "dataset")]
    if not margin:
        return ds.select_columns(keep)
    missing = [c for c in SCORE_FIELDS if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{path}: margin: true needs the ratings of each pair ({', '.join(SCORE_FIELDS)}); missing "
            f"{', '.join(missing)}. A `mixer build` of rated pairs (UltraFeedback) keeps them: rebuild a preference "
            "build made before it did, point --data at the UltraFeedback binarized Parquet, or set margin: false"
        )
    rated = _rated(ds)
    n_rated = sum(rated)
    if n_rated == 0:
        raise DataError(
            f"{path}: margin: true, but no pair carries scores: {' and '.join(SCORE_FIELDS)} are null in all "
            f"{len(ds):,} pairs (sources such as HH-RLHF have no ratings). Build from a rated source "
            "(UltraFeedback) or set margin: false"
        )
    if n_rated < len(ds):
        where = ""
        if "dataset" in ds.column_names:
            names = Counter(d for d, ok in zip(ds["dataset"], rated, strict=True) if not ok)
            where = " (" + ", ".join(f"{name}: {n:,}" for name, n in sorted(names.items())) + ")"
        logger.warning("margin: true: %s of %s pairs carry no scores%s and get margin 0 (the plain ranking loss); "
                       "the other %s get min(gap / %g, 1) from their ratings",
                       f"{len(ds) - n_rated:,}", f"{len(ds):,}", where, f"{n_rated:,}", full_gap)

    def row_margin(c: float | None, r: float | None) -> dict[str, float]:
        return {"margin": 0.0 if c is None or r is None else margin_from_scores(c, r, full_gap)}

    ds = ds.map(row_margin, input_columns=list(SCORE_FIELDS), desc="Margins from rating gaps")
    return ds.select_columns([*keep, "margin"])


def _rated(ds: Any) -> list[bool]:
    """Per pair, whether both of its ratings are set (read as Arrow columns, through any row selection)."""
    import pyarrow.compute as pc

    table = ds.select_columns(list(SCORE_FIELDS)).with_format("arrow")[:]
    both = pc.and_(pc.is_valid(table.column(SCORE_FIELDS[0])), pc.is_valid(table.column(SCORE_FIELDS[1])))
    return both.to_pylist()


def split_eval(ds: Any, eval_size: float, seed: int) -> tuple[Any, Any | None]:
    """A seeded held-out split: ``eval_size`` is a fraction (< 1) or a count of pairs; 0 keeps everything."""
    if eval_size <= 0:
        return ds, None
    n_eval = int(eval_size) if eval_size >= 1 else max(1, round(len(ds) * eval_size))
    if n_eval >= len(ds):
        raise DataError(f"eval_size {eval_size:g} leaves no training pairs out of {len(ds)}")
    parts = ds.train_test_split(test_size=n_eval, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def conversations(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The two whole conversations a pair compares (prompt + reply, or the implicit-prompt form as is)."""
    prompt = row.get("prompt") if is_messages(row.get("prompt")) else []
    return [*prompt, *row["chosen"]], [*prompt, *row["rejected"]]


class RewardScorer:
    """Scores whole conversations with a trained reward model (one scalar each), in batches, without grad.

    ``model``/``tokenizer`` may be passed in (the model just trained); else both are loaded from
    ``model_dir``, whose tokenizer must carry the chat template the model was trained with.
    """

    def __init__(self, model_dir: str | Path | None = None, *, model: Any = None, tokenizer: Any = None,
                 batch_size: int = 8, dtype: str = "auto", device: str | None = None) -> None:
        import torch

        if model is None or tokenizer is None:
            if model_dir is None:
                raise ValueError("RewardScorer needs model_dir, or both model and tokenizer")
            model, tokenizer = load_reward_model(model_dir, dtype=dtype, device=device)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self._torch = torch

    def encode(self, conv: list[dict[str, str]]) -> list[int]:
        """A conversation's token ids, through the tokenizer's chat template (what the reward model reads)."""
        return list(self.tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])

    def score(self, convs: list[list[dict[str, str]]]) -> list[float]:
        """One reward per conversation, in order; padding on the right, as the trainer's collator pads."""
        return self.score_ids([self.encode(c) for c in convs])

    def score_ids(self, encoded: list[list[int]]) -> list[float]:
        """One reward per already-encoded conversation (:meth:`encode`), in order."""
        torch = self._torch
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(encoded), self.batch_size):
                ids = encoded[start:start + self.batch_size]
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
                mask = torch.zeros((len(ids), width), dtype=torch.long)
                for i, x in enumerate(ids):
                    input_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
                    mask[i, :len(x)] = 1
                with torch.no_grad():
                    logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                        use_cache=False).logits
                out += [float(v) for v in logits[:, 0].float().cpu().tolist()]
        finally:
            self.model.train(was_training)
        return out


def scoring_dtype(dtype: str, device: str) -> str:
    """The dtype a reward model scores in: ``auto`` is bf16 on a GPU, fp32 on CPU; a named dtype as given."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def load_reward_model(model_dir: str | Path, *, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """A saved reward model (sequence classification, one label) and its tokenizer, ready to score.

    ``dtype``: ``auto`` is bf16 on a GPU (a 7B reward model in fp32 would take 28 GB beside the policy) and
    fp32 on CPU, as ``mixer generate --dtype auto`` loads the policy.

    Fails clearly when the folder is not a one-label classifier (a policy given as ``--reward-model``) or its
    tokenizer has no chat template (the conversation could not be rendered as in training).
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise MixerError(f"cannot load a reward model from {model_dir}: {e}") from e
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "num_labels", None) != 1 or not any(a.endswith("ForSequenceClassification") for a in archs):
        raise MixerError(f"{model_dir} is not a reward model (a one-label *ForSequenceClassification; found "
                         f"{', '.join(archs) or 'no architecture'}): train one with `mixer train rm`")
    if not isinstance(tokenizer.chat_template, str) or not tokenizer.chat_template:
        raise MixerError(f"{model_dir}: the tokenizer has no chat template, so conversations cannot be rendered "
                         "the way the reward model was trained")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=scoring_dtype(dtype, device))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def pairwise_accuracy(scorer: RewardScorer, pairs: Any, max_length: int | None = None) -> dict[str, float | None]:
    """Held-out pairwise accuracy: the share of pairs whose chosen side scores strictly higher (a tie is wrong),
    plus the mean reward gap; what Llama 2 reports for its reward models (Table 7).

    ``max_length``: pairs with a side longer than this many tokens are left out and counted
    (``eval_pairs_over_max_length``), as training leaves them out: the model never saw such lengths, and
    one very long pair could exhaust the memory the training run fitted in.
    """
    encoded = [(scorer.encode(chosen), scorer.encode(rejected)) for chosen, rejected in map(conversations, pairs)]
    kept = [pair for pair in encoded if max_length is None or max(map(len, pair)) <= max_length]
    result: dict[str, float | None] = {"eval_pairs": len(kept), "eval_pairs_over_max_length": len(encoded) - len(kept)}
    if not kept:  # None, not NaN: rm_eval.json stays standard JSON
        return {**result, "eval_pairwise_accuracy": None, "eval_mean_reward_gap": None}
    r_chosen = scorer.score_ids([c for c, _ in kept])
    r_rejected = scorer.score_ids([r for _, r in kept])
    gaps = [c - r for c, r in zip(r_chosen, r_rejected, strict=True)]
    correct = sum(g > 0 for g in gaps)
    return {
        **result,
        "eval_pairwise_accuracy": correct / len(gaps),
        "eval_mean_reward_gap": math.fsum(gaps) / len(gaps),
    }
