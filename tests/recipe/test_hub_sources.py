"""Sources on the Hugging Face Hub (``{hf: org/name, revision, path | config/split}``), fetched through
huggingface_hub from a fake Hub on 127.0.0.1 (``tests/helpers/fake_hub.py``): no network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from helpers.fake_hub import FakeHub
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.digest import file_sha256
from mixer.core.errors import RecipeError
from mixer.recipe.load import parse_recipe

runner = CliRunner()
REPO = "org/chats"
CARD = b"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
# chats
"""


def _chats(prefix: str, n: int) -> bytes:
    rows = [{"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"{prefix} question {i}?"},
                                                 {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


FILES = {"README.md": CARD, "data/train-00000.jsonl": _chats("a", 3), "data/train-00001.jsonl": _chats("b", 2),
         "other/notes.jsonl": _chats("z", 1)}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        # each build reads its sources (`--no-read-cache` would set it for the rest of the session)
        monkeypatch.setenv("MIXER_READ_CACHE", "0")
        yield fake


def _recipe(tmp_path: Path, entry: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "hub", "seed": 1, "raw_dir": str(tmp_path / "raw"), "output": str(tmp_path / "out"),
        "sources": [{"name": "chats", "adapter": "messages", "files": [entry]}]}, sort_keys=False))
    return path


def _build(recipe: Path, *extra: str) -> Any:
    return runner.invoke(app, ["build", str(recipe), "--quiet", *extra])


def test_hub_source_pinned_to_a_commit_builds_with_revision_and_file_hashes_in_the_card(
        hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    result = _build(_recipe(tmp_path, {"hf": REPO, "revision": commit, "path": "data/*.jsonl"}))
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["totals"]["records"] == 5
    (entry,) = card["hub"]
    assert entry["repo"] == REPO and entry["revision"] == commit and entry["commit"] == commit
    assert entry["pinned_revision"] is True
    assert [(f["path"], f["sha256"]) for f in entry["files"]] == [
        (name, _sha(FILES[name])) for name in ("data/train-00000.jsonl", "data/train-00001.jsonl")]
    # the source's files are named on the Hub, never by a path of this machine's cache
    assert [f["path"] for f in card["sources"][0]["files"]] == [
        f"hf://datasets/{REPO}@{commit}/data/train-0000{i}.jsonl" for i in (0, 1)]
    assert str(tmp_path / "hf-cache") not in (tmp_path / "out" / "README.md").read_text()
    assert commit in (tmp_path / "out" / "README.md").read_text()
    assert card["warnings"] == []


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_config_and_split_take_the_files_the_dataset_card_lists(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    result = _build(_recipe(tmp_path, {"hf": REPO, "revision": commit, "config": "default", "split": "train"}))
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert [f["path"] for f in card["hub"][0]["files"]] == ["data/train-00000.jsonl", "data/train-00001.jsonl"]
    assert card["totals"]["records"] == 5  # other/notes.jsonl is not in the train split


def test_an_unpinned_revision_warns_naming_the_commit_it_resolved_to(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    result = runner.invoke(app, ["build", str(_recipe(tmp_path, {"hf": REPO, "path": "data/*.jsonl"}))])
    assert result.exit_code == 0, result.output
    assert "not pinned" in result.output and commit in result.output
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["hub"][0]["revision"] == "main" and card["hub"][0]["pinned_revision"] is False
    assert any(commit in w and "not pinned" in w for w in card["warnings"])


def test_a_file_changed_under_the_same_revision_name_is_refused_as_a_pin_mismatch(
        hub: FakeHub, tmp_path: Path) -> None:
    hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "revision": "main", "path": "data/*.jsonl"})
    pinned = runner.invoke(app, ["pin", str(recipe)])
    assert pinned.exit_code == 0, pinned.output
    text = recipe.read_text()
    first = _sha(FILES["data/train-00000.jsonl"])
    assert first in text and "revision: main" not in text  # the branch became the commit it names now
    assert _build(recipe).exit_code == 0

    # someone re-uploads one file; the recipe's revision name (the old commit) no longer matters: move the
    # recipe back to the branch name, as a user who wrote `revision: main` with pins would have it
    recipe.write_text(recipe.read_text().replace(yaml.safe_load(text)["sources"][0]["files"][0]["revision"],
                                                 "main"))
    hub.push(REPO, {**FILES, "data/train-00000.jsonl": _chats("a", 4)})
    result = _build(recipe, "--overwrite")
    assert result.exit_code == 2
    assert "pin mismatch for data/train-00000.jsonl" in result.output and first in result.output
    assert "Traceback" not in result.output


def test_mixer_pin_on_a_single_hub_file_writes_one_digest_and_the_commit(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "path": "data/train-00001.jsonl"})
    result = runner.invoke(app, ["pin", str(recipe)])
    assert result.exit_code == 0, result.output
    entry = yaml.safe_load(recipe.read_text())["sources"][0]["files"][0]
    assert entry == {"hf": REPO, "path": "data/train-00001.jsonl", "sha256": _sha(FILES["data/train-00001.jsonl"]),
                     "revision": commit}
    pinned = recipe.read_text()
    again = runner.invoke(app, ["pin", str(recipe)])
    assert again.exit_code == 0 and recipe.read_text() == pinned  # already pinned: the file is left as it is
    assert "(unchanged)" in again.output


def test_an_unknown_revision_is_exit_2_with_a_message_naming_it(hub: FakeHub, tmp_path: Path) -> None:
    hub.push(REPO, FILES)
    result = _build(_recipe(tmp_path, {"hf": REPO, "revision": "v9.9", "path": "data/*.jsonl"}))
    assert result.exit_code == 2
    assert "revision 'v9.9' does not exist in dataset org/chats" in result.output
    assert "Traceback" not in result.output
    unknown_repo = _build(_recipe(tmp_path, {"hf": "org/nope", "path": "data/*.jsonl"}))
    assert unknown_repo.exit_code == 2 and "dataset repo org/nope not found" in unknown_repo.output


def test_a_glob_that_matches_nothing_is_exit_2(hub: FakeHub, tmp_path: Path) -> None:
    hub.push(REPO, FILES)
    result = _build(_recipe(tmp_path, {"hf": REPO, "path": "data/*.parquet"}))
    assert result.exit_code == 2 and "matches 'data/*.parquet'" in result.output


def test_offline_with_the_files_cached_builds_without_asking_the_hub(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "path": "data/*.jsonl"})
    assert runner.invoke(app, ["fetch", str(recipe)]).exit_code == 0
    assert runner.invoke(app, ["pin", str(recipe)]).exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked = len(hub.requests)
    result = _build(recipe)
    assert result.exit_code == 0, result.output
    assert len(hub.requests) == asked  # nothing asked of the Hub
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["totals"]["records"] == 5 and len(card["hub"][0]["files"]) == 2


def test_offline_with_a_branch_name_uses_the_commit_the_cache_recorded(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "revision": "main", "path": "data/train-00000.jsonl"})
    assert runner.invoke(app, ["fetch", str(recipe)]).exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _build(recipe)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "card.json").read_text())["hub"][0]["commit"] == commit


def test_offline_without_the_files_cached_says_what_is_missing(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = hub.push(REPO, FILES)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    by_branch = _build(_recipe(tmp_path, {"hf": REPO, "path": "data/*.jsonl"}))
    assert by_branch.exit_code == 2
    assert "HF_HUB_OFFLINE is set" in by_branch.output and "never fetched" in by_branch.output
    by_commit = _build(_recipe(tmp_path, {"hf": REPO, "revision": commit, "path": "data/train-00000.jsonl"}))
    assert by_commit.exit_code == 2
    assert "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache" in by_commit.output
    assert "mixer fetch" in by_commit.output and "Traceback" not in by_commit.output
    glob_at_commit = _build(_recipe(tmp_path, {"hf": REPO, "revision": commit, "path": "data/*.jsonl"}))
    assert glob_at_commit.exit_code == 2
    assert "no file matching 'data/*.jsonl'" in glob_at_commit.output and "is in the Hugging Face cache" in \
        glob_at_commit.output
    assert hub.requests == []


@pytest.mark.parametrize(("entry", "message"), [
    ({"hf": REPO}, "needs path:"),
    ({"hf": REPO, "path": "a.jsonl", "split": "train"}, "not both"),
    ({"hf": "chats", "path": "a.jsonl"}, "org/name"),
    ({"hf": REPO, "path": "data/*.jsonl", "sha256": "0" * 64}, "one digest pins one file"),
    ({"hf": REPO, "path": "data/*.jsonl", "sha256": {"data/a.jsonl": "xyz"}}, "64 lowercase hex"),
    ({"hf": REPO, "path": "a.jsonl", "revison": "main"}, "did you mean 'revision'"),
    ({"path": "a.jsonl", "revision": "main"}, "go with hf"),
])
def test_a_malformed_hub_entry_is_a_recipe_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        parse_recipe({"sources": [{"name": "chats", "adapter": "messages", "files": [entry]}]})


def test_a_hub_source_without_path_is_exit_2_at_the_cli(tmp_path: Path) -> None:
    result = _build(_recipe(tmp_path, {"hf": REPO, "revision": "main"}))
    assert result.exit_code == 2 and "a hf source file needs path:" in result.output


def test_validate_checks_hub_entries_and_accepts_them_offline_as_structure(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "revision": commit, "split": "train"})
    online = runner.invoke(app, ["validate", str(recipe)])
    assert online.exit_code == 0, online.output
    assert "not fetched yet" in online.output
    bad = runner.invoke(app, ["validate", str(_recipe(tmp_path, {"hf": REPO, "revision": "nope", "split": "train"}))])
    assert bad.exit_code == 2 and "revision 'nope' does not exist" in bad.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = runner.invoke(app, ["validate", str(_recipe(tmp_path, {"hf": REPO, "split": "train"}))])
    assert offline.exit_code == 0, offline.output
    assert "not checked" in offline.output


def test_shipped_tulu3_sft_recipe_validates_offline_as_structure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    recipe = ROOT / "recipes" / "tulu3-sft.yaml"
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(recipe.read_text())
    assert all(f.get("hf") for s in data["sources"] for f in s["files"])
    assert "UNVERIFIED" in recipe.read_text()


def test_fetched_hub_files_hash_as_the_card_says(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "revision": commit, "path": "data/train-00000.jsonl"})
    assert runner.invoke(app, ["fetch", str(recipe)]).exit_code == 0
    cached = next((tmp_path / "hf-cache").rglob("train-00000.jsonl"))
    assert file_sha256(cached) == _sha(FILES["data/train-00000.jsonl"])


def test_fetch_keeps_cached_hub_files_and_force_downloads_them_again(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.push(REPO, FILES)
    recipe = _recipe(tmp_path, {"hf": REPO, "revision": commit, "path": "data/train-00000.jsonl"})
    assert runner.invoke(app, ["fetch", str(recipe)]).exit_code == 0
    gets = [r for r in hub.requests if r.startswith("GET /datasets/")]
    assert runner.invoke(app, ["fetch", str(recipe)]).exit_code == 0
    assert [r for r in hub.requests if r.startswith("GET /datasets/")] == gets  # served by the cache
    assert runner.invoke(app, ["fetch", str(recipe), "--force"]).exit_code == 0
    assert len([r for r in hub.requests if r.startswith("GET /datasets/")]) == len(gets) + 1
