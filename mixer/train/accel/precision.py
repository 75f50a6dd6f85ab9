"""One-process full fine-tuning: fp32 master weights, bf16 compute copies cast once per optimizer step.

Why. Full fine-tuning must keep fp32 master weights (bf16 weights lose most of AdamW's updates at
Tulu's learning rates; see :func:`mixer.train.accel.host.weights_dtype`). With autocast, those fp32
weights are cast to bf16 again in every forward and in every gradient-checkpoint recomputation (twice
per micro-batch, every micro-batch), and the fp32 embedding and RMSNorm weights keep the whole residual
stream in fp32. Profiled on one H200 (7B, 4k-token micro-batch; ``bench/RESULTS.md``), the casts and the
fp32 elementwise work were ~15 % of GPU time.

What. This keeps a bf16 copy of every trainable weight and refreshes it once per optimizer step (one
fused multi-tensor copy). The forward and backward compute with the copies; everything else the
Trainer does — the optimizer, gradient clipping, the gradient norm it logs, saving, resuming — sees the
fp32 master parameters and their fp32 gradients, unchanged. This is the semantics of FSDP2's
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` and of DeepSpeed's bf16 mode, which the
multi-GPU presets already use, brought to the one-process path that has neither.

How.
- A forward pre-hook on each module that owns trainable parameters puts the copies into the module's
  ``_parameters`` and a forward hook (always called, even when the forward raises) puts the masters
  back, so outside a forward the model holds its fp32 parameters. Gradient-checkpoint recomputation
  calls the module again, so it computes with the same copies as the first forward.
- Each copy is a leaf. A post-accumulate-grad hook adds its bf16 gradient into the master's fp32
  ``.grad`` and frees it: accumulation over micro-batches happens in fp32, and no bf16 gradient
  outlives its backward.
- The copies are refreshed after every optimizer step (a Trainer callback: fused AdamW updates the
  parameters without bumping their version counters, so a version check alone would miss it) and,
  as a safety net, whenever a master's version counter moved (``load_state_dict`` on resume).

Memory: 2 bytes per parameter for the copies, in exchange for autocast's per-forward cache of bf16
casts of the same weights (also 2 bytes per parameter at the end of a forward), and a bf16 rather than
fp32 residual stream.
"""

from __future__ import annotations

from typing import Any


class ComputeCopies:
    """bf16 compute copies of a model's trainable floating-point parameters (see the module docstring).

    Use :func:`attach_compute_copies` to install them on a Trainer; :meth:`remove` restores the model
    to plain fp32 parameters with no hooks.
    """

    def __init__(self, model: Any, dtype: Any) -> None:
        import torch

        self.dtype = dtype
        self.masters: list[Any] = []
        self.copies: list[Any] = []
        self._versions: list[int] = []
        self._index: dict[int, int] = {}  # id(master) -> position; tied weights share one copy
        self._handles: list[Any] = []
        self._owners: list[tuple[Any, list[tuple[str, int]]]] = []
        for module in model.modules():
            owned = []
            for name, param in module.named_parameters(recurse=False):
                if param is None or not param.requires_grad or not param.is_floating_point():
                    continue
                if param.dtype == dtype:  # already in the compute dtype: nothing to gain
                    continue
                owned.append((name, self._register(param, torch)))
            if owned:
                self._owners.append((module, owned))
                self._handles.append(module.register_forward_pre_hook(self._swap_in(owned)))
                self._handles.append(module.register_forward_hook(self._swap_out(owned), always_call=True))

    def _register(self, master: Any, torch: Any) -> int:
        key = id(master)
        if key in self._index:
            return self._index[key]
        copy = torch.nn.Parameter(master.detach().to(self.dtype), requires_grad=True)
        i = len(self.masters)
        self.masters.append(master)
        self.copies.append(copy)
        self._versions.append(master._version)
        self._index[key] = i
        self._handles.append(copy.register_post_accumulate_grad_hook(self._accumulate(i)))
        return i

    def __len__(self) -> int:
        return len(self.masters)

    # --- hooks -------------------------------------------------------------------------------------

    def _swap_in(self, owned: list[tuple[str, int]]) -> Any:
        def hook(module: Any, args: Any) -> None:
            for name, i in owned:
                master = self.masters[i]
                if master._version != self._versions[i]:  # changed in place since the last refresh
                    self._refresh_one(i)
                module._parameters[name] = self.copies[i]
        return hook

    def _swap_out(self, owned: list[tuple[str, int]]) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            for name, i in owned:
                module._parameters[name] = self.masters[i]
        return hook

    def _accumulate(self, i: int) -> Any:
        def hook(copy: Any) -> None:
            master = self.masters[i]
            if master.grad is None:
                master.grad = copy.grad.to(master.dtype)
            else:
                master.grad.add_(copy.grad)
            copy.grad = None
        return hook

    # --- refresh -----------------------------------------------------------------------------------

    def _refresh_one(self, i: int) -> None:
        import torch

        with torch.no_grad():
            self.copies[i].copy_(self.masters[i])
        self._versions[i] = self.masters[i]._version

    def refresh(self) -> None:
        """Cast every master into its copy (one fused multi-tensor copy where torch has it)."""
        import torch

        if not self.masters:
            return
        for copy, master in zip(self.copies, self.masters, strict=True):
            if copy.device != master.device:  # the model was moved after the copies were made
                copy.data = master.detach().to(self.dtype)  # same leaf, same gradient hook
        with torch.no_grad():
            try:
                torch._foreach_copy_(self.copies, self.masters)
            except (AttributeError, RuntimeError, NotImplementedError):  # older torch / mixed devices
                for copy, master in zip(self.copies, self.masters, strict=True):
                    copy.copy_(master)
        self._versions = [m._version for m in self.masters]

    def remove(self) -> None:
        """Drop the hooks and the copies; the model keeps its fp32 master parameters."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, owned in self._owners:
            for name, i in owned:
                module._parameters[name] = self.masters[i]
        self._owners.clear()
        self.copies.clear()

    def callback(self) -> Any:
        """A ``TrainerCallback`` that refreshes the copies after each optimizer step and at the start of
        training (after a checkpoint was loaded into the masters)."""
        from transformers import TrainerCallback

        copies = self

        class RefreshComputeCopies(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                copies.refresh()

            def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                copies.refresh()

        return RefreshComputeCopies()


def attach_compute_copies(trainer: Any, dtype_name: str = "bfloat16") -> ComputeCopies:
    """Install bf16 compute copies on ``trainer.model`` and the callback that keeps them fresh."""
    import torch

    copies = ComputeCopies(trainer.model, getattr(torch, dtype_name))
    trainer.add_callback(copies.callback())
    n = sum(m.numel() for m in copies.masters)
    from mixer.train.runlog import decide

    size = n * copies.copies[0].element_size() / 2**30 if copies.copies else 0.0
    decide("compute copies", f"{len(copies)} tensors, {size:.2f} GiB in {dtype_name}")
    return copies

