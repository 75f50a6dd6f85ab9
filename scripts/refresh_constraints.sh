#!/usr/bin/env bash
# Re-record .ci/constraints.txt, the exact package set CI tests (and the README's test line installs) with.
#
# Why a lock: pyproject.toml states ranges (pyarrow>=15, trl>=0.24, ...) for users, and the byte-identity
# tests pin Parquet bytes that depend on the writer's version. Without a lock, the next release of any
# dependency changes what CI tests without a commit saying so. Refresh on purpose, in its own commit:
#
#   bash scripts/refresh_constraints.sh      # a fresh venv, the open ranges resolved today, frozen
#   pytest -q                                # if pinned output hashes moved, re-record them deliberately
#                                            # (python bench/output_hashes.py ...) in the same commit
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
# torch first, as the CPU build (see the README), then everything the tests need, unconstrained
pip install -q torch==2.13.0
pip install -q -e '.[train,test]'
{
    echo "# The package set CI installs with (pip install -c .ci/constraints.txt ...)."
    echo "# Recorded by scripts/refresh_constraints.sh on $(date -u +%Y-%m-%d), Python $(python -c 'import platform; print(platform.python_version())'), $(uname -m)."
    echo "# Do not edit by hand; tests/test_environment.py fails when the installed set differs."
    # the local-version tag of torch's CPU wheel (+cpu) is left out: '==2.13.0' admits it and the CUDA build
    pip freeze --exclude-editable | sed -E 's/\+cpu$//' | LC_ALL=C sort -f
} > .ci/constraints.txt
echo "wrote .ci/constraints.txt ($(grep -vc '^#' .ci/constraints.txt) packages)"
# TRL's config fields as the locked trl/transformers declare them (what `mixer train --dry-run` reads)
python -m mixer.train.trl_fields
rm -rf "$(dirname "$venv")"
