"""Token counting (``count``: the tokenizer, batched and on workers) and its on-disk cache (``cache``)."""
