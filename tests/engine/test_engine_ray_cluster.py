"""The Ray engine on a two-node cluster on one machine (``ray.cluster_utils.Cluster``, one CPU per
node): the read units are spread over both nodes and the output is the local engine's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from helpers.hashes import output_hashes

from mixer.build import build
from mixer.engine import LocalEngine
from mixer.recipe.load import load_recipe

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' runs these tests")

from helpers.engines import force_units  # noqa: E402

from mixer.engine.ray_engine import RayEngine  # noqa: E402 - after the skip


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[RayEngine]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        yield RayEngine()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_read_units_run_on_both_nodes_of_a_two_node_cluster_and_the_output_is_unchanged(
        two_nodes: RayEngine, tmp_path: Path, monkeypatch) -> None:
    force_units(monkeypatch)
    monkeypatch.chdir(ROOT)
    recipe = "tests/data/v2-sample-near-decont.yaml"
    with LocalEngine(2) as local:
        expected = build(load_recipe(recipe, output=str(tmp_path / "local")), engine=local)
    assert two_nodes.parallelism == 2
    result = build(load_recipe(recipe, output=str(tmp_path / "ray")), engine=two_nodes, work_dir=tmp_path / "work")
    nodes = {node for (name, node), n in two_nodes.units_run.items() if name == "_read_task"}
    assert len(nodes) == 2, two_nodes.units_run
    assert output_hashes(result.out) == output_hashes(expected.out)
