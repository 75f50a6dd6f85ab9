"""`mixer gatt` resumes as `mixer generate` does: shards of dialogues written whole, a rerun samples only the
missing ones and ends with the bytes of an unbroken run, a finished run is not redone, and a folder that is
not this run's is never touched without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.backends import StandInPolicy
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.generate.gatt import GattConfig, run_gatt

DIALOGUES = [{"id": f"d{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                          {"role": "assistant", "content": "old"},
                                          {"role": "user", "content": f"Follow-up {i}?"}]} for i in range(5)]


def _cfg(tmp_path: Path, out: str = "gatt", **changes: object) -> GattConfig:
    path = tmp_path / "d.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps(d) + "\n" for d in DIALOGUES), encoding="utf-8")
    return GattConfig(**{"policy": "unused", "dialogues": str(path), "output": str(tmp_path / out),
                         "shard_dialogues": 2, "name": "gatt", **changes})


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("data/train-00000-of-00001.parquet", "card.json",
                                                         "README.md")}


def test_an_interrupted_run_resumes_at_the_first_missing_shard_with_the_bytes_of_an_unbroken_run(
        tmp_path: Path) -> None:
    unbroken = _cfg(tmp_path, "unbroken")
    run_gatt(unbroken, backend=StandInPolicy(), say=lambda m: None)
    cfg = _cfg(tmp_path)
    with pytest.raises(RuntimeError):  # two calls (two turns) make shard 0; the third call dies
        run_gatt(cfg, backend=StandInPolicy(fail_after=2), say=lambda m: None)
    out = Path(cfg.output)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["gatt-00000.parquet"]
    assert not (out / "card.json").exists()  # not complete, so a rerun resumes
    said: list[str] = []
    again = StandInPolicy()
    card = run_gatt(cfg, backend=again, say=said.append)
    assert said == [f"resuming {out}: 1 of 3 shard(s) already done"]
    assert again.prompts == 3 * 2  # dialogues d2-d4, two turns each: d0 and d1 were not sampled again
    assert card["dialogues"]["read"] == card["dialogues"]["written"] == 5
    assert card["turns"]["generated"] == 10
    assert _outputs(out) == _outputs(Path(unbroken.output))


def test_a_finished_run_is_not_redone(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    first = run_gatt(cfg, backend=StandInPolicy(), say=lambda m: None)
    before = _outputs(Path(cfg.output))
    said: list[str] = []
    idle = StandInPolicy(fail_after=0)  # any call would fail
    assert run_gatt(cfg, backend=idle, say=said.append) == first
    assert said == [f"{cfg.output} is complete (same settings); nothing to do"] and idle.calls == 0
    assert _outputs(Path(cfg.output)) == before


def test_a_rerun_with_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    run_gatt(cfg, backend=StandInPolicy(), say=lambda m: None)
    before = _outputs(Path(cfg.output))
    with pytest.raises(MixerError, match=r"other settings \(sampling.seed differ\)"):
        run_gatt(_cfg(tmp_path, seed=7), backend=StandInPolicy(), say=lambda m: None)
    assert _outputs(Path(cfg.output)) == before
    replaced = run_gatt(_cfg(tmp_path, seed=7, overwrite=True), backend=StandInPolicy(), say=lambda m: None)
    assert replaced["settings"]["seed"] == 7


def test_a_resume_takes_paths_typed_from_another_folder_and_reassembles_for_keep_truncated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)
    run_gatt(cfg, backend=StandInPolicy(), say=lambda m: None)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    relative = GattConfig(**{**cfg.__dict__, "dialogues": "../d.jsonl", "output": "../gatt"})
    said: list[str] = []
    run_gatt(relative, backend=StandInPolicy(fail_after=0), say=said.append)  # the same run: nothing sampled
    assert said == ["../gatt is complete (same settings); nothing to do"]
    kept = run_gatt(GattConfig(**{**relative.__dict__, "keep_truncated": True}), backend=StandInPolicy(fail_after=0),
                    say=said.append)  # an assembly setting: the card is redone from the shards, no sampling
    assert kept["settings"]["keep_truncated"] is True and said[-1] == "resuming ../gatt: 3 of 3 shard(s) already done"


def test_a_folder_that_is_not_a_gatt_run_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "gatt"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    dialogues = _cfg(tmp_path).dialogues
    args = ["gatt", "--policy", str(tmp_path / "no-model"), "--dialogues", dialogues, "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "is not a mixer gatt output; pass --overwrite" in result.output
    assert (out / "notes.txt").read_text() == "mine\n"
    run_gatt(_cfg(tmp_path, overwrite=True), backend=StandInPolicy(), say=lambda m: None)
    assert not (out / "notes.txt").exists() and (out / "card.json").is_file()


def test_shard_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(MixerError, match="--shard-dialogues must be at least 1"):
        run_gatt(_cfg(tmp_path, shard_dialogues=0), backend=StandInPolicy(), say=lambda m: None)
    assert not (tmp_path / "gatt").exists()
