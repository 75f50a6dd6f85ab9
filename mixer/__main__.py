"""``python -m mixer``: the ``mixer`` command, for environments without the console script on PATH."""

from mixer.cli import main

main()
