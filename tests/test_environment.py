"""The tests run in the package set they were recorded against, or fail saying so.

Pinned results (Parquet bytes in tests/data/output_hashes, token counts, trainer losses) depend on the
versions of pyarrow, tokenizers, transformers, torch, ... . ``pyproject.toml`` states ranges for users;
``.ci/constraints.txt`` is the one set CI installs, refreshed only on purpose
(``scripts/refresh_constraints.sh``). A test that skipped on another set would let the byte-identity
tests stop running silently on the next release, so this one fails instead, naming every difference.
"""

from __future__ import annotations

import re
from importlib import metadata

from conftest import ROOT
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = ROOT / ".ci" / "constraints.txt"


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, line in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert match, f"{LOCK.name}:{n}: not a 'name==version' pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_the_lock_pins_every_direct_dependency_of_mixer_and_its_test_extras() -> None:
    locked = _locked()
    requirement = re.compile(r"^([A-Za-z0-9._-]+)")
    wanted = set()
    for req in metadata.requires("mixer") or []:
        extra = re.search(r"extra == ['\"](\w+)['\"]", req)
        if extra and extra[1] not in {"train", "test"}:
            continue  # deepspeed, vllm, ray's own extra: not installed by CI
        wanted.add(canonicalize_name(requirement.match(req)[1]))
    missing = sorted(wanted - set(locked))
    assert not missing, f"{LOCK.name} pins none of {missing}: run scripts/refresh_constraints.sh"


def test_the_installed_packages_are_the_locked_ones() -> None:
    installed = _installed()
    differences = []
    for name, version in sorted(_locked().items()):
        have = installed.get(name)
        # torch's CPU wheel is 2.13.0+cpu: the local tag is not part of the pin
        if have is None or Version(have).public != Version(version).public:
            differences.append(f"{name} {have or 'not installed'} (locked {version})")
    assert not differences, (
        "this environment is not the one the pinned results were recorded in: "
        + "; ".join(differences)
        + ". Install with `pip install -c .ci/constraints.txt -e '.[train,test]'`, or refresh the lock on"
        " purpose with `bash scripts/refresh_constraints.sh` (and re-record any pinned output that moves)."
    )
