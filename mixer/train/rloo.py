"""On-policy RL with a reward model: TRL's RLOOTrainer (REINFORCE leave-one-out, Ahmadian et al. 2024).

Llama 2 (Touvron et al. 2023, §3.2.3) tunes its chat models with PPO against its reward models, penalised by
the KL divergence from the SFT model. TRL 1.16 no longer ships PPO; its maintained on-policy trainers that take
a reward model are RLOO and GRPO. RLOO keeps what matters here: samples from the current policy, a reward
model's score, a KL penalty (``beta``) against the frozen starting model as reference, and no value network:
each of ``num_generations`` completions is baselined by the mean reward of the others. The prompts come from
a built mixture: a preference build's ``prompt`` column, or an SFT build's conversations up to their last
assistant turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixer.train.config import RunConfig
from mixer.train.data import DataError, is_messages, load_parquet
from mixer.train.method import Method


def load_prompt_dataset(path: str | Path, max_rows: int | None = None) -> Any:
    """``prompt`` rows (conversations ending with a user turn) from a preference or an SFT build."""
    import datasets

    ds = load_parquet(path, (), max_rows)
    if "prompt" in ds.column_names and is_messages(ds[0]["prompt"]):
        prompts = load_parquet(path, ("prompt",), max_rows)["prompt"]  # checked: every row a conversation
    elif "messages" in ds.column_names:
        ds = load_parquet(path, ("messages",), max_rows)
        prompts = []
        for i, messages in enumerate(ds["messages"]):
            last = max((j for j, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
            prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
            if not prompt or prompt[-1]["role"] != "user":
                raise DataError(f"{path}: record {i} ({ds[i].get('id', '?')}) has no user turn before its last "
                                "assistant turn, so it gives no prompt")
            prompts.append(prompt)
    else:
        raise DataError(f"{path}: RLOO takes prompts from a `messages` (SFT) or `prompt` (preference) column; "
                        f"found {', '.join(ds.column_names)}")
    return datasets.Dataset.from_dict({"prompt": prompts})


class RLOO(Method):
    """Prompts from a build, completions from the policy, rewards from ``reward_model``, KL to the start."""

    trainer = "RLOOTrainer"

    def load(self, cfg: RunConfig) -> Any:
        from mixer.core.errors import MixerError

        reward = cfg.reward_model
        if not reward:
            raise MixerError("rloo needs reward_model: a `mixer train rm` output folder (--set reward_model=DIR)")
        if not (Path(reward) / "config.json").is_file():
            raise MixerError(f"reward_model {reward}: not a model folder (no config.json); train one with "
                             "`mixer train rm`")
        return load_prompt_dataset(cfg.data, cfg.max_train_samples)

    def trainer_kwargs(self, cfg: RunConfig) -> dict[str, Any]:
        # TRL loads a path as AutoModelForSequenceClassification(num_labels=1) with its own tokenizer
        return {"reward_funcs": str(cfg.reward_model)}
