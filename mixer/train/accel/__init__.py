"""Mixer's own training pieces, the ones TRL does not have: what a run resolves on its host (:mod:`.host`),
the attention kernel and PyTorch's varlen FlashAttention (:mod:`.attention`), bf16 compute copies of fp32
master weights (:mod:`.precision`), model and tokenizer loading (:mod:`.modeling`), the effective-batch
arithmetic (:mod:`.batch`) and launching several processes through ``accelerate`` (:mod:`.launch`)."""
