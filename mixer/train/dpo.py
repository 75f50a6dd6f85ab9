"""Direct preference optimisation with TRL's DPOTrainer on a conversational preference build.

The reference is a frozen copy of the starting model (TRL loads it from the same path), or the
adapter-disabled base when training LoRA; TRL tokenises ``prompt``/``chosen``/``rejected`` itself.
"""

from __future__ import annotations

from typing import Any

from mixer.train.config import RunConfig
from mixer.train.method import Method, say_dropped


def reference_dtype(cfg: RunConfig) -> str:
    """The dtype the frozen reference is loaded in: ``dtype`` when the policy computes in bf16 (the reference needs
    no fp32 master copy), float32 with ``bf16: false``, where the policy computes in fp32: a bf16 reference would
    then score the pairs differently from the policy it starts equal to (the loss would not start at ln 2, and every
    implicit reward would carry the bf16 rounding of the reference)."""
    return cfg.dtype if cfg.bf16 else "float32"


class DPO(Method):
    trainer = "DPOTrainer"

    def load(self, cfg: RunConfig) -> Any:
        from mixer.train.data import load_preference_dataset

        rows = load_preference_dataset(cfg.data, cfg.max_train_samples)
        self.n_rows = len(rows)
        return rows

    def trl_kwargs(self, cfg: RunConfig, n_rows: int) -> dict[str, Any]:
        # TRL loads the frozen reference from the same path with these
        return {} if cfg.use_peft else {"model_init_kwargs": {"dtype": reference_dtype(cfg)}}

    def ready(self, trainer: Any, cfg: RunConfig) -> None:
        from mixer.core.errors import MixerError
        from mixer.train.runlog import decide

        say_dropped(self.n_rows, trainer, "preference pair(s)", f"the prompt alone fills max_length={cfg.max_length} "
                    "tokens, leaving no reply token to learn from (TRL's DPOTrainer leaves them out)")
        if len(trainer.train_dataset) == 0:
            raise MixerError(f"no preference pair has a reply token within max_length={cfg.max_length}")

        if cfg.use_peft:
            decide("reference model", "the base model with the adapter switched off")
        else:
            decide("reference model", f"a frozen copy of --model in {reference_dtype(cfg)}",
                   "bf16: false, so it scores as the fp32 policy does" if not cfg.bf16 else "")
