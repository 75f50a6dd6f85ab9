"""The resume protocol best-of-N and every other method share (``store.open_shards``), without a model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest

from mixer.core.errors import MixerError
from mixer.generate.config import GenerateConfig
from mixer.generate.prompts import Prompt
from mixer.generate.store import CARD, MANIFEST, VERSIONS, open_shards, record_versions, shard_path

SCHEMA = pa.schema([("prompt_index", pa.int64())])
PROMPTS = [Prompt(f"k{i}", "d", f"r{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(7)]


def _cfg(out: Path, **kw: object) -> GenerateConfig:
    return GenerateConfig(**{"policy": "p", "reward_model": "r", "output": str(out), "data": "d", "shard_prompts": 3,
                             "name": "gen", **kw})


def _open(cfg: GenerateConfig, said: list[str]):  # noqa: ANN202 - the plan
    return open_shards(cfg, PROMPTS, cfg.sampling_identity(), said.append)


def test_a_new_run_writes_the_manifest_and_plans_every_shard(tmp_path: Path) -> None:
    said: list[str] = []
    plan = _open(_cfg(tmp_path / "out"), said)
    assert (plan.state, plan.n_shards, plan.todo, plan.prompts_done, said) == ("new", 3, [0, 1, 2], 0, [])
    assert [(k, first, [p.key for p in chunk]) for k, first, chunk in plan.pending()] == [
        (0, 0, ["k0", "k1", "k2"]), (1, 3, ["k3", "k4", "k5"]), (2, 6, ["k6"])]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["tool"] == "mixer generate" and manifest["prompts"] == 7


def test_a_rerun_plans_only_the_shards_not_written_and_says_so(tmp_path: Path) -> None:
    cfg, said = _cfg(tmp_path / "out"), []
    first = _open(cfg, said)
    first.write(1, [{"prompt_index": i} for i in range(3, 6)], SCHEMA)
    plan = _open(cfg, said)
    assert (plan.state, plan.todo, plan.prompts_done) == ("resume", [0, 2], 3)
    assert [first for _, first, _ in plan.pending()] == [0, 6]
    assert said == [f"resuming {tmp_path / 'out'}: 1 of 3 shard(s) already done"]


def test_a_finished_run_is_complete_only_for_the_same_pick_settings(tmp_path: Path) -> None:
    cfg, said = _cfg(tmp_path / "out"), []
    _open(cfg, said)
    card = {"settings": {"assembly": cfg.assembly_settings()}, "rows": 7}
    (tmp_path / "out" / CARD).write_text(json.dumps(card))
    plan = _open(cfg, said)
    assert plan.complete and plan.todo == [] and plan.finished_card() == card
    assert said == [f"{tmp_path / 'out'} is complete (same settings); nothing to do"]
    assert _open(_cfg(tmp_path / "out", min_reward_gap=0.5), said).state == "resume"  # re-picks the shards


def test_a_folder_of_other_settings_or_not_of_generate_is_refused(tmp_path: Path) -> None:
    _open(_cfg(tmp_path / "out"), []).write(0, [{"prompt_index": 0}], SCHEMA)
    with pytest.raises(MixerError, match=r"other settings \(sampling.seed differ\)"):
        _open(_cfg(tmp_path / "out", seed=1), [])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(MixerError, match="not a mixer generate output"):
        _open(_cfg(foreign), [])
    assert (foreign / "notes.txt").read_text() == "mine" and not shard_path(foreign, 0).exists()


def test_a_resume_under_other_versions_keeps_the_first_ones_and_warns(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    record_versions(tmp_path, {"torch": "1"})
    with caplog.at_level(logging.WARNING, logger="mixer.generate"):
        record_versions(tmp_path, {"torch": "2"})
    assert json.loads((tmp_path / VERSIONS).read_text()) == {"torch": "1"}
    assert "resuming with other package versions than the first shards" in caplog.text


@pytest.mark.parametrize(("method", "option", "key"), [("judge", "--rubric", "rubric"),
                                                       ("orca", "--system-messages", "system_messages"),
                                                       ("context-distill", "--preprompts", "preprompts")])
def test_overwrite_never_deletes_a_method_file_kept_in_the_output_folder(tmp_path: Path, method: str, option: str,
                                                                        key: str) -> None:
    # before, --overwrite replaced the folder after the method had read its file from it: the file was gone
    out = tmp_path / "out"
    _open(_cfg(out), []).write(0, [{"prompt_index": 0}], SCHEMA)
    (out / "texts.yaml").write_text("mine")
    cfg = _cfg(out, method=method, overwrite=True, reward_model=None, **{key: str(out / "texts.yaml")})
    with pytest.raises(MixerError, match=f"the output folder contains {option}"):
        _open(cfg, [])
    assert (out / "texts.yaml").read_text() == "mine" and shard_path(out, 0).exists()


def test_overwrite_never_deletes_the_prompt_files_a_recipe_named(tmp_path: Path) -> None:
    # a recipe's sources lie under its own raw_dir, which no option names: before, `--recipe r.yaml -o RAW_DIR
    # --overwrite` passed the input check and replaced the folder holding the prompts' files
    out = tmp_path / "raw"
    _open(_cfg(out), []).write(0, [{"prompt_index": 0}], SCHEMA)
    (out / "src").mkdir()
    (out / "src" / "data.jsonl").write_text("mine")
    cfg = _cfg(out, data=None, recipe=str(tmp_path / "r.yaml"), overwrite=True)
    with pytest.raises(MixerError, match="the output folder contains prompt file"):
        open_shards(cfg, PROMPTS, cfg.sampling_identity(), [].append, [str(out / "src" / "data.jsonl")])
    assert (out / "src" / "data.jsonl").read_text() == "mine"


def test_a_run_restarted_with_new_settings_before_its_first_shard_records_its_own_versions(tmp_path: Path) -> None:
    # the first run loaded vLLM, then stopped before a shard; the restart with --backend transformers took the
    # folder as new but kept vLLM's versions (and warned of a resume) until this was fixed
    out = tmp_path / "out"
    _open(_cfg(out, seed=1), [])
    record_versions(out, {"vllm": "0.9", "torch": "2"})
    assert _open(_cfg(out, seed=2), []).state == "new"
    record_versions(out, {"torch": "2", "transformers": "5"})
    assert json.loads((out / VERSIONS).read_text()) == {"torch": "2", "transformers": "5"}


def test_a_resume_compares_paths_resolved_not_as_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before, runs/sft typed in one folder and ../runs/sft in another were refused as other settings
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    (tmp_path / "runs" / "sft2").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    _open(_cfg(tmp_path / "out", policy="runs/sft"), []).write(0, [{"prompt_index": 0}], SCHEMA)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["sampling"]["policy"] == "runs/sft"  # recorded as typed, readable
    assert manifest["paths"]["policy"] == str((tmp_path / "runs" / "sft").resolve())
    monkeypatch.chdir(tmp_path / "work")
    assert _open(_cfg(tmp_path / "out", policy="../runs/sft"), []).state == "resume"
    with pytest.raises(MixerError, match=r"other settings \(sampling.policy differ\)"):
        _open(_cfg(tmp_path / "out", policy="../runs/sft2"), [])


def test_a_manifest_without_resolved_paths_still_resumes_as_typed(tmp_path: Path) -> None:
    # a run folder written before paths were recorded resumes with the same typed settings
    cfg = _cfg(tmp_path / "out")
    _open(cfg, []).write(0, [{"prompt_index": 0}], SCHEMA)
    path = tmp_path / "out" / MANIFEST
    old = json.loads(path.read_text())
    del old["paths"]
    path.write_text(json.dumps(old))
    assert _open(cfg, []).state == "resume"
