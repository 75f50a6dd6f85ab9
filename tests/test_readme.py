"""The README a new user reads (issue 24, point 18): the two set-up lines first, the user's sections before
the internals, every docs/ link resolving, and every command it shows one that exists."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_every_build_the_readme_diffs_is_one_it_shows_how_to_make() -> None:
    # `mixer diff out/mix-a out/mix-b` named builds no command made: a newcomer got "no such folder"
    made = {"out/tulu-v2-sample"} | set(re.findall(r"mixer build \S+.*?--out (\S+)", README))
    diffed = re.findall(r"mixer diff (\S+) (\S+)", README)
    assert diffed
    for a, b in diffed:
        assert {a, b} <= made, f"mixer diff {a} {b}: the README makes only {sorted(made)}"


def test_the_readme_says_where_relative_recipe_paths_start_and_that_tokenize_needs_max_length() -> None:
    from mixer.recipe.load import relative_raw_dir_hint

    assert "relative to the folder mixer runs in" in relative_raw_dir_hint(Path("no/such"))
    assert "A relative `raw_dir` or `output` is taken from the folder mixer runs in" in README
    assert "`--max-length` is required" in README
    result = CliRunner().invoke(app, ["tokenize", "out/tulu-v2-sample"])
    assert result.exit_code == 2 and "--max-length" in result.output
