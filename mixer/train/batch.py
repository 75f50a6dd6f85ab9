"""Effective-batch arithmetic.

Recipes state the *effective* batch (the Tulu 2 paper's 128 for SFT, Zephyr's 32 for DPO) because that
is what the published learning rates were tuned for. The per-device batch is what fits in memory and
the world size is how many processes run, so gradient accumulation is what is left; it must be a whole
number or the run silently trains with a different batch than the recipe says.
"""

from __future__ import annotations

from mixer.errors import MixerError


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
