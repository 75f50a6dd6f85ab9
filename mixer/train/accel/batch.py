"""Effective-batch arithmetic.

Recipes state the *effective* batch (the Tulu 2 paper's 128 for SFT, Zephyr's 32 for DPO) because that
is what the published learning rates were tuned for. The per-device batch is what fits in memory and
the world size is how many processes run, so gradient accumulation is what is left; it must be a whole
number or the run silently trains with a different batch than the recipe says.
"""

from __future__ import annotations

from mixer.core.errors import MixerError


class BatchError(MixerError):
    """The effective batch cannot be split over this per-device batch and world size."""


def gradient_accumulation_steps(effective_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Accumulation steps so that per-device batch x accumulation x world size == effective batch.

    Raises ``BatchError`` (a ``MixerError``) when any number is not positive or the division is not exact,
    with the nearest valid per-device batch sizes in the message so the user can fix the recipe.
    """
    for name, value in (
        ("effective_batch_size", effective_batch_size),
        ("per_device_train_batch_size", per_device_batch_size),
        ("world size", world_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BatchError(f"{name} must be a positive integer, got {value!r}")
    per_step = per_device_batch_size * world_size
    steps, rest = divmod(effective_batch_size, per_step)
    if rest or steps == 0:
        valid = [b for b in range(1, effective_batch_size + 1) if effective_batch_size % (b * world_size) == 0]
        hint = f"; per-device batch sizes that work with {world_size} process(es): {valid}" if valid else ""
        raise BatchError(
            f"effective batch {effective_batch_size} is not a multiple of per-device batch {per_device_batch_size}"
            f" x world size {world_size} = {per_step}{hint}"
        )
    return steps


#: Tokens per micro-batch below which a GPU step is launch-bound (measured on one H200, 7B, in
#: bench/RESULTS.md: ~2,600-token padding-free micro-batches reached 22.7 % MFU, 16k-token packed ones
#: 34.7 %; the GPU idled 30-55 % of a small step waiting for kernel launches).
SMALL_MICRO_BATCH_TOKENS = 8192


def larger_micro_batch_hint(mean_tokens: float, per_device_batch_size: int, effective_batch_size: int,
                            world_size: int, target_tokens: int = 16384) -> str | None:
    """A hint when micro-batches of ``per_device_batch_size`` examples hold fewer than
    ``SMALL_MICRO_BATCH_TOKENS`` tokens on average, naming the per-device batch that comes closest to
    ``target_tokens`` while still dividing the effective batch (so the examples per optimizer step, and
    with them the learning-rate schedule, stay what the recipe says). None when nothing would help."""
    if mean_tokens <= 0 or mean_tokens * per_device_batch_size >= SMALL_MICRO_BATCH_TOKENS:
        return None
    per_process = effective_batch_size // world_size
    fitting = [b for b in range(per_device_batch_size + 1, per_process + 1)
               if per_process % b == 0 and b * mean_tokens <= target_tokens]
    if not fitting:
        return None
    better = max(fitting)
    return (f"micro-batches of {per_device_batch_size} example(s) hold ~{mean_tokens * per_device_batch_size:,.0f} "
            f"tokens on average: a GPU step this small waits on kernel launches. per_device_train_batch_size="
            f"{better} (~{mean_tokens * better:,.0f} tokens) keeps {effective_batch_size} examples per optimizer step "
            f"(accumulation {per_process // better}) if it fits in memory; batching: packed fills bins of max_length")
