"""``mixer build`` that SIGKILLs itself at one named moment of the build, for tests/build/test_kill_and_race.py.

Usage: python tests/build/kill_runner.py MOMENT -- <mixer build arguments>. The moments name the functions
they hook; when the build's internals move, update MOMENTS (a missing hook fails loudly).
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from typing import Any

#: moment -> (module, attribute path, kill at the n-th call)
MOMENTS: dict[str, tuple[str, str, int]] = {
    "reading": ("mixer.sources.flan_v2", "FlanV2.convert", 5),
    "exact_dedup": ("mixer.stages.exact_dedup", "exact_dedup", 1),
    "near_dedup": ("mixer.stages.near_dedup", "near_dedup", 1),
    "selection": ("mixer.stages.select", "Selector.select", 3),
    "writing_read_cache_entry": ("mixer.stages.read_cache", "write_manifest", 2),
    "writing_token_cache": ("mixer.tokens.cache", "file_sha256", 1),
    "writing_shards": ("mixer.stages.write", "file_info", 1),
    "writing_card": ("mixer.build", "write_plots", 1),
}


def hook(moment: str) -> None:
    module_name, path, nth = MOMENTS[moment]
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)  # AttributeError: the hook target moved
    calls = [0]

    @functools.wraps(original)
    def killing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] >= nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, killing)


if __name__ == "__main__":
    moment, sep, *args = sys.argv[1:]
    assert sep == "--"
    hook(moment)
    from mixer.cli import app

    app(args=["build", *args], prog_name="mixer")
