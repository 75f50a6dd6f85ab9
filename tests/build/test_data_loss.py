"""Nothing of a user's is deleted by a build or a training run (issue 24, points 1-4), through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import flan_rows, write_jsonl
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()


def _recipe_in(folder: Path, **top: object) -> Path:
    """A recipe whose raw file and recipe file both live in ``folder`` (a user's project folder)."""
    write_jsonl(folder / "a.jsonl", flan_rows(12))
    data = {"name": "mine", "seed": 1, "raw_dir": str(folder), **top,
            "sources": [{"name": "flan_v2", "files": "a.jsonl"}]}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["project", "raw_file_parent_link", "inside"])
def test_build_refuses_an_output_folder_holding_its_inputs_even_with_overwrite(tmp_path: Path, where: str) -> None:
    project = tmp_path / "project"
    recipe = _recipe_in(project, output=str(tmp_path / "o"))
    before = {p.name: p.read_bytes() for p in project.iterdir()}
    if where == "project":
        out = project
    elif where == "raw_file_parent_link":  # the same folder through a symlink
        (tmp_path / "link").symlink_to(project)
        out = tmp_path / "link"
    else:  # an output folder named like a raw file: "lies inside" / "is" an input
        out = project / "a.jsonl"
    result = runner.invoke(app, ["build", str(recipe), "--out", str(out), "--overwrite", "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(out) in result.output and ("recipe" in result.output or "a.jsonl" in result.output)
    assert {p.name: p.read_bytes() for p in project.iterdir()} == before


def test_build_refuses_an_output_folder_that_is_the_cache_or_holds_a_benchmark(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_jsonl(tmp_path / "bench" / "b.jsonl", [{"question": "q"}])
    recipe = _recipe_in(project, output=str(tmp_path / "o"), decontaminate={
        "benchmarks": [{"name": "b", "files": [str(tmp_path / "bench" / "b.jsonl")], "field": "question"}]})
    cache = os.environ["MIXER_CACHE_DIR"]
    for out, named in ((cache, "cache"), (str(tmp_path / "bench"), "benchmark 'b'")):
        result = runner.invoke(app, ["build", str(recipe), "--out", out, "--overwrite", "-q"])
        assert result.exit_code == 2 and named in result.output, result.output
    assert (tmp_path / "bench" / "b.jsonl").exists() and Path(cache).is_dir()


def test_build_refuses_a_local_work_folder_as_output(tmp_path: Path) -> None:
    recipe = _recipe_in(tmp_path / "project", output=str(tmp_path / "o"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["build", str(recipe), "--out", str(tmp_path / "w"), "--work-dir",
                                 str(tmp_path / "w"), "--overwrite", "-q"])
    assert result.exit_code == 2 and "work folder" in result.output, result.output
    assert (tmp_path / "w" / "keep.txt").read_text() == "mine"


def test_build_beside_its_inputs_still_works(tmp_path: Path) -> None:
    recipe = _recipe_in(tmp_path / "project", output=str(tmp_path / "project" / "out"))
    result = runner.invoke(app, ["build", str(recipe), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "project" / "out" / "card.json").exists()


def test_two_recipes_without_output_write_two_folders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(12))
    for stem, top in (("first", {"name": "alpha"}), ("second", {})):
        data = {**top, "seed": 1, "raw_dir": "raw", "sources": [{"name": "flan_v2", "files": "a.jsonl"}]}
        (tmp_path / f"{stem}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        result = runner.invoke(app, ["build", f"{stem}.yaml", "-q"])
        assert result.exit_code == 0, result.output
    # the recipe's name, else the recipe file's stem
    assert json.loads((tmp_path / "out" / "alpha" / "card.json").read_text())["name"] == "alpha"
    assert json.loads((tmp_path / "out" / "second" / "card.json").read_text())["name"] == "second"
    assert not (tmp_path / "out" / "mixture").exists()


# --- training: the starting checkpoint and an earlier run are not a bin ----------------------------------


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.train.accel import launch as launch_mod

    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 1)


def _model_and_data(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "runs" / "X"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "mixer_train_config.yaml").write_text("trainer: sft\n")  # itself an earlier run
    data = tmp_path / "out" / "mix"
    data.mkdir(parents=True)
    (data / "card.json").write_text("{}")
    return model, data


@pytest.mark.parametrize("kind,config", [("sft", "tiny-cpu"), ("dpo", "tiny-cpu-dpo"), ("rm", "tiny-cpu-rm")])
@pytest.mark.parametrize("out_is", ["model", "model_parent", "inside_model", "data", "inside_data"])
def test_train_refuses_a_run_folder_over_its_model_or_data_even_with_overwrite(
        tmp_path: Path, one_gpu: None, kind: str, config: str, out_is: str) -> None:
    from mixer.train.cli import app as train_app

    model, data = _model_and_data(tmp_path)
    out = {"model": model, "model_parent": model.parent, "inside_model": model / "sub",
           "data": data, "inside_data": data / "run"}[out_is]
    result = runner.invoke(train_app, [kind, "-c", config, "--model", str(model), "--data", str(data), "-o", str(out),
                                       "--overwrite-output-dir", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(out) in result.output
    assert ("--model" if "model" in out_is else "--data") in result.output
    assert (model / "config.json").exists() and (data / "card.json").exists()


def test_train_replaces_an_earlier_run_only_when_asked_and_resumes_into_it(tmp_path: Path, one_gpu: None) -> None:
    from mixer.train.cli import app as train_app

    model, data = _model_and_data(tmp_path)
    earlier = tmp_path / "runs" / "sft"
    (earlier / "checkpoint-10").mkdir(parents=True)
    (earlier / "mixer_train_config.yaml").write_text("trainer: sft\n")
    args = ["sft", "-c", "tiny-cpu", "--model", str(model), "--data", str(data), "-o", str(earlier), "--dry-run"]
    refused = runner.invoke(train_app, args)
    assert refused.exit_code == 2 and "earlier run" in refused.output and "--overwrite-output-dir" in refused.output
    assert runner.invoke(train_app, [*args, "--overwrite-output-dir"]).exit_code == 0
    resumed = runner.invoke(train_app, [*args, "--set", "resume_from_checkpoint=last"])
    assert resumed.exit_code == 0, resumed.output
    fresh = runner.invoke(train_app, [*args[:8], str(tmp_path / "runs" / "new"), "--dry-run"])
    assert fresh.exit_code == 0, fresh.output


def test_merge_refuses_to_write_over_its_adapter(tmp_path: Path) -> None:
    from mixer.train.cli import app as train_app

    adapter = tmp_path / "runs" / "qlora"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "mixer_train_config.yaml").write_text("trainer: sft\n")
    result = runner.invoke(train_app, ["merge", "--model", str(adapter), "-o", str(adapter), "--overwrite-output-dir",
                                       "--dry-run"])
    assert result.exit_code == 2 and "--model" in result.output, result.output
    assert (adapter / "adapter_config.json").exists()


def test_generate_refuses_an_output_folder_over_its_policy_even_with_overwrite(tmp_path: Path) -> None:
    policy, reward = tmp_path / "runs" / "sft", tmp_path / "runs" / "rm"
    for folder in (policy, reward):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    for out in (policy, tmp_path / "runs"):
        result = runner.invoke(app, ["generate", "--policy", str(policy), "--reward-model", str(reward), "--data",
                                     str(tmp_path / "d"), "-o", str(out), "--overwrite"])
        assert result.exit_code == 2, result.output
        assert "--policy" in result.output or "--reward-model" in result.output
    assert (policy / "config.json").exists() and (reward / "config.json").exists()


# --- ids: (dataset, id) is unique within a build -----------------------------------------------------------


def _alpaca_rows(word: str, n: int = 3) -> list[dict[str, str]]:
    return [{"instruction": f"{word} task {i}: say {word} {i}", "input": "", "output": f"{word} {i}"} for i in range(n)]


def _build_with(tmp_path: Path, sources: list[dict[str, object]]) -> tuple[object, Path]:
    out = tmp_path / "out"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "ids", "seed": 1, "raw_dir": str(tmp_path / "raw"), "output": str(out),
                                      "sources": sources}), encoding="utf-8")
    return runner.invoke(app, ["build", str(recipe), "-q"]), out


def _ids(out: Path) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "data")
    return list(zip(table["dataset"].to_pylist(), table["id"].to_pylist(), strict=True))


def test_two_files_of_one_alpaca_source_get_distinct_ids(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "raw" / "first.jsonl", _alpaca_rows("apple"))
    write_jsonl(tmp_path / "raw" / "second.jsonl", _alpaca_rows("pear"))
    result, out = _build_with(tmp_path, [{"name": "alpaca", "files": ["first.jsonl", "second.jsonl"],
                                          "options": {"templates": "plain"}}])
    assert result.exit_code == 0, result.output
    ids = _ids(out)
    assert len(ids) == 6 == len(set(ids))
    assert ("alpaca", "alpaca_first_0") in ids and ("alpaca", "alpaca_second_0") in ids


def test_two_messages_sources_are_labelled_by_their_source_names_and_shown_by_them(tmp_path: Path) -> None:
    for name in ("chats", "support"):
        write_jsonl(tmp_path / "raw" / f"{name}.jsonl",
                    [{"messages": [{"role": "user", "content": f"{name} q{i}"},
                                   {"role": "assistant", "content": f"{name} a{i}"}]} for i in range(3)])
    result, out = _build_with(tmp_path, [{"name": n, "adapter": "messages", "files": f"{n}.jsonl"}
                                         for n in ("chats", "support")])
    assert result.exit_code == 0, result.output
    ids = _ids(out)
    assert {d for d, _ in ids} == {"chats", "support"} and ("chats", "chats_0") in ids and len(set(ids)) == 6
    show = runner.invoke(app, ["show", str(out), "-s", "support", "-n", "5"])
    assert show.exit_code == 0 and show.output.count("support ·") == 3 and "chats" not in show.output, show.output


def test_two_sources_of_one_adapter_get_distinct_ids_and_a_collision_is_an_error_naming_both(tmp_path: Path) -> None:
    import json as _json

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.json").write_text(_json.dumps(_alpaca_rows("apple")))
    (tmp_path / "raw" / "b.json").write_text(_json.dumps(_alpaca_rows("pear")))
    sources: list[dict[str, object]] = [{"name": "code_a", "adapter": "code_alpaca", "files": "a.json"},
                                        {"name": "code_b", "adapter": "code_alpaca", "files": "b.json"}]
    result, out = _build_with(tmp_path, sources)
    assert result.exit_code == 0, result.output
    ids = _ids(out)
    assert ("code_alpaca", "code_alpaca_code_a_0") in ids and ("code_alpaca", "code_alpaca_code_b_0") in ids
    assert len(set(ids)) == 6
    # one label given to both by hand: the same (dataset, id) twice, which the build refuses
    for s in sources:
        s["options"] = {"dataset": "code"}
    result, out = _build_with(tmp_path, sources)
    assert result.exit_code == 2, result.output
    assert "'code_a'" in result.output and "'code_b'" in result.output and "'code_0'" in result.output
    assert "Traceback" not in result.output and _ids(out) == ids  # the earlier build is kept


def test_a_messages_file_repeating_its_own_ids_is_refused_but_repeat_is_not_a_collision(tmp_path: Path) -> None:
    rows = [{"id": "same", "messages": [{"role": "user", "content": f"q{i}"},
                                        {"role": "assistant", "content": f"a{i}"}]} for i in range(2)]
    write_jsonl(tmp_path / "raw" / "m.jsonl", rows)
    result, _ = _build_with(tmp_path, [{"name": "mine", "adapter": "messages", "files": "m.jsonl"}])
    assert result.exit_code == 2 and "'same'" in result.output and "'mine'" in result.output, result.output
    write_jsonl(tmp_path / "raw" / "m.jsonl", rows[:1])
    repeated, out = _build_with(tmp_path, [{"name": "mine", "adapter": "messages", "files": "m.jsonl", "repeat": 3}])
    assert repeated.exit_code == 0, repeated.output
    assert _ids(out) == [("mine", "same")] * 3


def test_two_ultrafeedback_pairs_on_one_prompt_stop_the_build_naming_the_prompt_key(tmp_path: Path) -> None:
    """UltraFeedback's id is its prompt's hash (``prompt_id``, kept as published), and the bundled sample plants
    one prompt in two rows with different replies: under the default pair key both pairs stay and share an id.
    The build stops before writing and says how to keep one pair per prompt."""
    repo = Path(__file__).resolve().parents[2]
    recipe = yaml.safe_load((repo / "recipes" / "dpo-sample.yaml").read_text(encoding="utf-8"))
    recipe["dedup"] = {"exact": {"enabled": True}}  # the default pair key
    recipe["raw_dir"] = str(repo / "samples" / "raw_train")
    recipe["output"] = str(tmp_path / "out")
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = runner.invoke(app, ["build", str(path), "-q"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "'ultrafeedback'" in text and "preference_key: prompt" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()
