"""``mixer generate``: turn a model back into data.

Prompts come from a build or a recipe source (:mod:`mixer.generate.prompts`); a backend generates
(:mod:`mixer.generate.backends`: transformers, with continuous batching where it has it, or vLLM). The default
method, best-of-N (:mod:`mixer.generate.run`), scores N replies per prompt with a reward model and keeps the best
as SFT data and best vs worst as preference pairs. ``--method`` picks the others, run by
:mod:`mixer.generate.job`: context distillation and self-data distillation (:mod:`mixer.generate.distill`),
Evol-Instruct and Orca (:mod:`mixer.generate.synth`), and an LLM judge that scores any SFT source
(:mod:`mixer.generate.judge`). Ghost Attention dialogues (:mod:`mixer.generate.gatt`, ``mixer gatt``) and
SPIN's self-play rounds (:mod:`mixer.generate.spin`, ``mixer spin``: pairs generated here, each round a
``mixer train dpo`` run) are commands of their own. Every run writes a folder with a card. Importing this
package does not import torch.
"""

from __future__ import annotations

from mixer.generate.run import GenerateConfig, run_generate

__all__ = ["GenerateConfig", "run_generate"]
