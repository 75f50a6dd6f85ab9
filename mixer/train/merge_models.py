"""``mixer train merge-models``: a weight-space merge of two fine-tuned models (SLERP or linear).

Thangarasa et al. 2024 merge models fine-tuned on different self-distilled sets. The merge itself is
mergekit's (LGPL-3.0; it installs beside the pinned trainer stack without changing torch, transformers
or pydantic), driven with a configuration built here:

- ``linear``: ``(1 - t) * A + t * B`` for every tensor (mergekit's ``linear`` with weights ``1 - t`` and
  ``t``, not renormalised);
- ``slerp``: spherical interpolation per tensor with ``A`` as the base at ``t = 0`` (mergekit's ``slerp``,
  which takes each tensor as one flat vector, interpolates along the great circle between the two
  tensors' directions, and falls back to linear interpolation where they are colinear, |cos| > 0.9995).

mixer checks the two folders first, so a folder that is not a model or two models of different shapes are
a clear message instead of an error deep inside mergekit; the output is written to a temporary sibling
folder and renamed into place, so a failed merge leaves nothing behind.

One library message is silenced during the merge: transformers 5's "`torch_dtype` is deprecated! Use `dtype`
instead!", said because mergekit (0.1.5, ``mergekit/merge.py``, ``_model_out_config``) sets the merged
config's ``torch_dtype``; mixer's own calls never name ``torch_dtype`` and the user can do nothing about it.
Every other record still reaches stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.core.outdir import staged_dir

METHODS = ("slerp", "linear")
REPORT_NAME = "merge_report.json"
#: (logger, exact message) of the one library record a merge drops; see the module's docstring
MERGEKIT_TORCH_DTYPE = ("transformers.configuration_utils", "`torch_dtype` is deprecated! Use `dtype` instead!")


def tensor_shapes(model_dir: str | Path, option: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a model folder's safetensors files (read from the headers only)."""
    from safetensors import safe_open

    p = Path(model_dir)
    if not (p / "config.json").is_file():
        raise MixerError(f"{option} {p}: not a model folder (no config.json)")
    files = sorted(p.glob("*.safetensors"))
    if not files:
        raise MixerError(f"{option} {p}: no *.safetensors weights in the folder (save it with save_pretrained)")
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                    shapes[name] = tuple(st.get_slice(name).get_shape())
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad header
            raise MixerError(f"{option} {f}: cannot read the weights: {e}") from e
    return shapes


def check_compatible(model_a: str | Path, model_b: str | Path) -> None:
    """Refuse two models that are not the same architecture with the same tensor names and shapes."""
    arch = []
    for option, path in (("A", model_a), ("B", model_b)):
        shapes = tensor_shapes(path, option)
        try:
            config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MixerError(f"{option} {path}/config.json: not a readable JSON config: {e}") from e
        arch.append((config.get("architectures"), shapes))
    (arch_a, shapes_a), (arch_b, shapes_b) = arch
    if arch_a != arch_b:
        raise MixerError(f"cannot merge {model_a} ({arch_a}) with {model_b} ({arch_b}): different architectures")
    only_a, only_b = sorted(set(shapes_a) - set(shapes_b)), sorted(set(shapes_b) - set(shapes_a))
    if only_a or only_b:
        raise MixerError(f"cannot merge {model_a} with {model_b}: different tensors (only in A: "
                         f"{', '.join(only_a[:3]) or '-'}; only in B: {', '.join(only_b[:3]) or '-'})")
    differ = [n for n in sorted(shapes_a) if shapes_a[n] != shapes_b[n]]
    if differ:
        n = differ[0]
        raise MixerError(f"cannot merge {model_a} with {model_b}: {len(differ)} tensor(s) differ in shape, e.g. "
                         f"{n} is {list(shapes_a[n])} in A and {list(shapes_b[n])} in B")


def merge_config(model_a: str, model_b: str, method: str, t: float) -> dict[str, Any]:
    """The mergekit configuration for a two-model merge at interpolation factor ``t`` (0 = A, 1 = B)."""
    if method not in METHODS:
        raise MixerError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if not 0.0 <= t <= 1.0:
        raise MixerError(f"--t {t}: the interpolation factor must lie in [0, 1]")
    if method == "linear":
        return {"merge_method": "linear", "dtype": "float32", "parameters": {"normalize": False},
                "models": [{"model": model_a, "parameters": {"weight": 1.0 - t}},
                           {"model": model_b, "parameters": {"weight": t}}]}
    return {"merge_method": "slerp", "dtype": "float32", "base_model": model_a, "parameters": {"t": t},
            "models": [{"model": model_a}, {"model": model_b}]}


def run_merge_models(model_a: str | Path, model_b: str | Path, method: str, t: float,
                     output_dir: str | Path) -> Path:
    """Check, merge with mergekit into a staging folder, add a report, rename into ``output_dir``."""
    try:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import run_merge
        from mergekit.options import MergeOptions
    except ImportError as e:
        raise MixerError("merging models needs mergekit: pip install mixer[train] (or pip install mergekit)") from e

    config = merge_config(str(model_a), str(model_b), method, t)
    check_compatible(model_a, model_b)
    out = Path(output_dir)
    with staged_dir(out) as staging:  # the CLI has checked out is empty or an earlier mixer output
        options = MergeOptions(copy_tokenizer=True, write_model_card=False, quiet=True, random_seed=0)
        with _without_mergekit_torch_dtype_notice():
            run_merge(MergeConfiguration.model_validate(config), str(staging), options=options)
        report = {"A": str(model_a), "B": str(model_b), "method": method, "t": t, "mergekit_config": config}
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return out


class _DropMessage(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


@contextmanager
def _without_mergekit_torch_dtype_notice() -> Iterator[None]:
    """For the block, drop the one record mergekit's ``config.torch_dtype = ...`` makes transformers log."""
    name, message = MERGEKIT_TORCH_DTYPE
    drop = _DropMessage(message)
    logging.getLogger(name).addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger(name).removeFilter(drop)
