"""A work folder in an object store (``--work-dir s3://bucket/prefix?...``, ``mixer.core.workstore``),
against moto's S3 server on this machine (no network): the same bytes and card as a local build on
both engines, the prefix left exactly as it was, and a clear exit 2 for a URI that cannot work.

The credentials are environment variables set before the module's Ray instance starts, so its
workers inherit them, as the nodes of a cluster would have their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, SAMPLE_RECIPE
from helpers.hashes import output_hashes

from mixer.build import build
from mixer.core.workstore import RemotePath, npy_rows, open_output, work_path
from mixer.engine import LocalEngine
from mixer.recipe.load import load_recipe

moto_server = pytest.importorskip("moto.server", reason="moto is not installed: pip install -e '.[test]'")

BUCKET = "mixer-work"
#: an object that was in the bucket before any build: no build may touch it
THEIRS = "shared/keep.txt"
RECIPE = "tests/data/v2-sample-near-decont.yaml"


@dataclass
class S3:
    endpoint: str  #: host:port of the moto server
    client: Any  #: boto3's client, to list the raw keys (pyarrow's listing hides folder markers)

    def uri(self, prefix: str, bucket: str = BUCKET) -> str:
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"

    def keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
            client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key=THEIRS, Body=b"not the build's")
            yield S3(f"{host}:{port}", client)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def ray_engine(s3: S3) -> Iterator[Any]:
    """A Ray instance started after the credentials are in the environment (its workers inherit it)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    from mixer.engine.ray_engine import RayEngine

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield RayEngine()
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The recipe built on the local engine with a local work folder: what every other build must give."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        with LocalEngine(2) as local:
            return build(load_recipe(RECIPE, output=str(tmp_path_factory.mktemp("local") / "out")), engine=local)


@pytest.mark.parametrize(("engine_kind", "prefix"), [("local", "fresh/work"), ("ray", "shared/ray/work")])
def test_an_s3_work_dir_gives_the_local_bytes_and_card_and_leaves_the_prefix_as_it_was(
        engine_kind: str, prefix: str, s3: S3, local_build: Any, tmp_path: Path, monkeypatch, request) -> None:
    from helpers.engines import force_units
    from helpers.near import split_tiny

    force_units(monkeypatch)  # every stage's work as units, exact dedup and LSH as group-bys
    large = split_tiny(monkeypatch, max_members=1)  # LSH bands in partitions, every bucket in chunks
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(RECIPE, output=str(tmp_path / "out"))
    before = s3.keys()
    work = s3.uri(prefix)  # a prefix that does not exist yet (for ray: in a folder holding another's file)
    if engine_kind == "ray":
        engine = request.getfixturevalue("ray_engine")
        engine.units_run.clear()
        result = build(recipe, engine=engine, work_dir=work)
        assert {"_read_task", "partition_hashes", "partition_duplicates", "sign_rows_to_part", "band_keys_unit",
                "band_partition_pairs", "bucket_chunk_pairs"} <= {name for name, _ in engine.units_run}
    else:
        with LocalEngine(2) as local:
            result = build(recipe, engine=local, work_dir=work)
    assert output_hashes(result.out) == output_hashes(local_build.out)
    assert result.card["sources"] == local_build.card["sources"]
    assert result.card["near_dedup"] == local_build.card["near_dedup"]
    assert large  # near dedup's buckets did go through chunk units
    # nothing of the build's is left and nothing else is deleted; only where the work folder was inside a
    # folder that existed before ("shared", which holds another's file) does pyarrow leave that folder's
    # empty marker object (it keeps a folder visible after deleting in it; mixer.core.workstore.OwnFolder)
    marker = {"shared/"} if prefix.startswith("shared/") else set()
    assert s3.keys() == sorted(set(before) | marker)
    assert THEIRS in before


@pytest.mark.parametrize(("where", "says"), [
    ("s3://mixer-work/x?bogus=1", "pyarrow cannot open this URI"),
    ("s3://mixer-work/x?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1", "cannot reach the work folder"),
    ("{missing_bucket}", "bucket 'no-such-bucket' does not exist"),
], ids=["unknown-option", "unreachable-endpoint", "missing-bucket"])
def test_a_work_dir_uri_that_cannot_work_exits_2_naming_it(where: str, says: str, s3: S3, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mixer.cli import app

    where = where.format(missing_bucket=s3.uri("work", bucket="no-such-bucket"))
    result = CliRunner().invoke(app, ["build", str(SAMPLE_RECIPE), "-q", "--work-dir", where,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"--work-dir {where}" in " ".join(result.output.split()) and says in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_remote_npy_rows_reads_the_rows_and_ranges_asked_for(s3: S3, monkeypatch) -> None:
    import mixer.core.workstore

    folder = work_path(s3.uri("npy-rows"))
    assert isinstance(folder, RemotePath)
    array = np.arange(40 * 3, dtype=np.uint32).reshape(40, 3)
    with open_output(folder / "a.npy") as f:
        np.save(f, array)
    rows = np.array([0, 1, 2, 7, 20, 21, 39])
    np.testing.assert_array_equal(npy_rows(folder / "a.npy", rows), array[rows])
    # rows up to 3 apart read together, no request over 8 rows: spans merged and cut
    monkeypatch.setattr(mixer.core.workstore, "GAP_BYTES", 3 * 12)
    monkeypatch.setattr(mixer.core.workstore, "SPAN_BYTES", 8 * 12)
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = np.unique(rng.integers(0, 40, size=int(rng.integers(1, 30))))
        np.testing.assert_array_equal(npy_rows(folder / "a.npy", rows), array[rows])
    np.testing.assert_array_equal(npy_rows(folder / "a.npy", slice(5, 17)), array[5:17])
    np.testing.assert_array_equal(npy_rows(folder / "a.npy", slice(5, 5)), array[5:5])
    s3.client.delete_object(Bucket=BUCKET, Key="npy-rows/a.npy")


def test_with_an_s3_work_dir_a_rebuild_signs_no_row_the_local_signature_cache_holds(
        s3: S3, local_build: Any, tmp_path: Path, monkeypatch) -> None:
    """The read cache (and the signature blocks in it) stays a local path while the work folder is in
    the store: a build in units signs into both, and a rebuild signs nothing and gives the same bytes."""
    import mixer.stages.near_dedup

    monkeypatch.setattr(mixer.stages.near_dedup, "BAND_UNITS_MIN_ROWS", 0)
    monkeypatch.setattr(mixer.stages.near_dedup, "CHUNK_ROWS", 8)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    signed = []
    with LocalEngine(2) as local:
        for run in ("cold", "warm"):
            result = build(load_recipe(RECIPE, output=str(tmp_path / run)), engine=local,
                           work_dir=s3.uri("cached/work"))
            assert output_hashes(result.out) == \
                output_hashes(local_build.out)
            signed.append(result.timings["near_dedup_signed_rows"])
    assert signed[0] > 0 and signed[1] == 0
    assert not [k for k in s3.keys() if k.startswith("cached/")]
