"""The pinned hashes of the sample builds (``tests/data/output_hashes/``) and how a build is held to them.

Each pin has two parts, both recorded with ``bench/output_hashes.py`` from the same build:

- ``content``: what the writer was given (Parquet schema, row groups and rows read back; the card). It
  must match on every pyarrow: a difference is a change of mixer's output.
- ``files``: the bytes of every file. Parquet bytes carry the writer's version, so they are compared
  only under the pyarrow the pin names; on another pyarrow the check FAILS, naming both versions (it
  never skips: a silently skipped byte check is how byte identity stops being tested).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pyarrow
import pytest
from conftest import ROOT

HASHES = ROOT / "tests" / "data" / "output_hashes"

_spec = importlib.util.spec_from_file_location("output_hashes", ROOT / "bench" / "output_hashes.py")
assert _spec is not None and _spec.loader is not None
output_hashes_module: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(output_hashes_module)


def output_hashes(out: Path) -> dict[str, str]:
    """{path: sha256} of a build's files (``data/``, ``dropped/``, ``card.json``): for comparing two builds
    made in this environment."""
    return output_hashes_module.output_hashes(out)


def pinned(name: str) -> dict[str, Any]:
    return json.loads((HASHES / f"{name}.json").read_text(encoding="utf-8"))


def assert_pinned(out: Path, name: str) -> None:
    """The build in ``out`` has the content of pin ``name`` and, under the pin's pyarrow, its bytes."""
    doc = pinned(name)
    content = output_hashes_module.content_hashes(out)
    assert content == doc["content"], _differ(content, doc["content"], f"content of {name}")
    if doc["pyarrow"] != pyarrow.__version__:
        pytest.fail(f"{name}: the content matches the pin, but the file bytes were pinned under pyarrow "
                    f"{doc['pyarrow']} and this is pyarrow {pyarrow.__version__}; run the tests with "
                    f"pyarrow=={doc['pyarrow']} to check byte identity (or re-record every pin under the new "
                    "pyarrow with bench/output_hashes.py, in a commit that says why)")
    files = output_hashes(out)
    assert files == doc["files"], _differ(files, doc["files"], f"file bytes of {name}")


def _differ(got: dict[str, str], want: dict[str, str], what: str) -> str:
    names = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return f"{what} differ in: {', '.join(names)}"
