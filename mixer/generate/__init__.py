"""``mixer generate``: turn a trained policy and reward model back into data (rejection sampling).

Prompts come from a build or a recipe source (:mod:`mixer.generate.prompts`); a backend samples N replies
per prompt (:mod:`mixer.generate.backends`: transformers or vLLM); a reward model trained with ``mixer train
rm`` scores them; :mod:`mixer.generate.run` keeps the best as SFT data and best vs worst as preference pairs,
in a build folder with a card. Importing this package does not import torch.
"""

from __future__ import annotations

from mixer.generate.run import GenerateConfig, run_generate

__all__ = ["GenerateConfig", "run_generate"]
