"""The README a new user reads (issue 24, point 18): the two set-up lines first, the user's sections before
the internals, every docs/ link resolving, and every command it shows one that exists."""

from __future__ import annotations

import re

from conftest import ROOT
from typer.testing import CliRunner

from mixer.cli import app

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_set_up_lines() -> None:
    assert README.splitlines()[:5] == [
        "# mixer", "", "```bash", "pip install -e . && mixer build recipes/v2-sample.yaml",
        "pip install -c .ci/constraints.txt torch==2.13.0 && pip install -c .ci/constraints.txt -e '.[train,test]' "
        "&& pytest -q"]


def test_the_users_sections_come_first_and_the_python_version_is_stated() -> None:
    sections = re.findall(r"^## (.+)$", README, re.M)
    assert sections[:4] == ["Quick start", "Your own data", "Training (CPU and GPU)",
                            "From model back to data: reward models and rejection sampling"]
    intro = README.split("## Quick start")[0]
    assert "Python 3.11 or newer" in intro


def test_internals_live_in_docs_and_every_link_resolves() -> None:
    for section in ("Speed and memory", "Running on a Ray cluster", "Reliability"):
        assert f"## {section}" not in README
    links = re.findall(r"\]\((docs/[^)#]+)\)", README)
    assert {"docs/internals.md", "docs/performance.md", "docs/ray.md", "docs/reliability.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name}: {target}"


def test_every_mixer_command_in_the_readme_exists() -> None:
    runner = CliRunner()
    commands = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S):
        for line in block.splitlines():
            for m in re.finditer(r"(?:^|&& |\| )mixer ((?:train |dev )?[a-z-]+)", line.strip()):
                commands.add(m.group(1))
    assert {"build", "dev tiny-model", "train sft", "generate", "validate"} <= commands
    for command in sorted(commands):
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, f"mixer {command}: {result.output[-300:]}"
