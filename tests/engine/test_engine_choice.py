"""``mixer build --engine``: local by default and without Ray; ray says which extra is missing."""

from __future__ import annotations

import sys

from conftest import SAMPLE_RECIPE
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def test_engine_ray_without_ray_installed_names_the_extra_and_exits_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` fails as if it were not installed
    result = runner.invoke(app, ["build", str(SAMPLE_RECIPE), "--quiet", "--engine", "ray",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_an_unknown_engine_an_address_without_ray_or_workers_with_ray_is_a_usage_error(tmp_path) -> None:
    unknown = runner.invoke(app, ["build", str(SAMPLE_RECIPE), "-q", "--engine", "spark", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "choose local or ray" in unknown.output
    address = runner.invoke(app, ["build", str(SAMPLE_RECIPE), "-q", "--address", "auto", "--out", str(tmp_path)])
    assert address.exit_code == 2 and "--address needs --engine ray" in address.output
    workers = runner.invoke(app, ["build", str(SAMPLE_RECIPE), "-q", "--engine", "ray", "--workers", "2",
                                  "--out", str(tmp_path)])
    assert workers.exit_code == 2 and "cluster has CPUs" in workers.output


def test_an_in_memory_mock_work_dir_is_refused_as_invisible_to_other_processes(tmp_path) -> None:
    result = runner.invoke(app, ["build", str(SAMPLE_RECIPE), "-q", "--work-dir", "mock:///bucket/work",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--work-dir mock:///bucket/work" in result.output and "one process's memory" in result.output
    assert not (tmp_path / "out").exists()
