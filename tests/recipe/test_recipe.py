from __future__ import annotations

from pathlib import Path

import pytest

from mixer.core.errors import RecipeError
from mixer.recipe.load import load_recipe, parse_recipe, resolve_files

ROOT = Path(__file__).resolve().parents[2]


def _one(**source: object) -> dict:
    return {"name": "t", "sources": [{"name": "flan_v2", "files": "f.jsonl", **source}]}


def test_shipped_recipes_parse() -> None:
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.sources, path


def test_unknown_top_level_key_names_key_and_lists_valid_ones() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe({**_one(), "sead": 3})
    assert "'sead'" in str(e.value) and "seed" in str(e.value) and "sources" in str(e.value)


def test_unknown_source_key_names_the_source() -> None:
    with pytest.raises(RecipeError, match=r"sources\[0\] \(flan_v2\): unknown key\(s\) 'tak'"):
        parse_recipe(_one(tak=3))


def test_a_near_miss_key_is_answered_with_the_key_meant() -> None:
    with pytest.raises(RecipeError, match=r"'tkae' \(did you mean 'take'\?\)"):
        parse_recipe(_one(tkae=3))
    with pytest.raises(RecipeError) as e:
        parse_recipe({**_one(), "zzzz": 1})  # nothing close: no guess
    assert "did you mean" not in str(e.value)


def test_wrong_type_names_key_path_and_expected_type() -> None:
    with pytest.raises(RecipeError, match=r"sources\[0\] \(flan_v2\)\.repeat: expected an integer"):
        parse_recipe(_one(repeat="ten"))


def test_unknown_adapter_lists_valid_adapters() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe(_one(adapter="flan_v3"))
    assert "unknown adapter 'flan_v3'" in str(e.value) and "flan_v2" in str(e.value)


def test_unknown_adapter_option_lists_valid_options() -> None:
    with pytest.raises(RecipeError, match=r"options: unknown key\(s\) 'colour'"):
        parse_recipe(_one(options={"colour": "red"}))


def test_take_accepts_all_count_or_fraction_and_rejects_bad_fraction() -> None:
    assert parse_recipe(_one(take="all")).sources[0].take == "all"
    assert parse_recipe(_one(take=5)).sources[0].take == 5
    assert parse_recipe(_one(take=0.5)).sources[0].take == 0.5
    with pytest.raises(RecipeError, match="fraction"):
        parse_recipe(_one(take=1.5))
    with pytest.raises(RecipeError, match="take"):
        parse_recipe(_one(take="most"))


def test_duplicate_source_names_are_rejected() -> None:
    data = {"sources": [{"name": "flan_v2", "files": "a"}, {"name": "flan_v2", "files": "b"}]}
    with pytest.raises(RecipeError, match="duplicate source name"):
        parse_recipe(data)


def test_source_seed_depends_only_on_recipe_seed_and_source_name() -> None:
    a = parse_recipe({"seed": 1, "sources": [{"name": "flan_v2", "files": "a"},
                                              {"name": "x", "adapter": "flan_v2", "files": "b"}]})
    b = parse_recipe({"seed": 1, "sources": [{"name": "x", "adapter": "flan_v2", "files": "b"},
                                              {"name": "flan_v2", "files": "a"}]})
    assert a.source_seed("flan_v2") == b.source_seed("flan_v2")
    assert a.source_seed("flan_v2") != a.source_seed("x")


def test_missing_file_error_names_path_and_fetch_hint(tmp_path: Path) -> None:
    recipe = parse_recipe({"raw_dir": str(tmp_path), "sources": [
        {"name": "flan_v2", "files": [{"path": "flan/x.jsonl", "url": "https://example.org/x.jsonl"}]}]})
    with pytest.raises(RecipeError) as e:
        resolve_files(recipe, recipe.sources[0])
    assert "flan/x.jsonl" in str(e.value) and "mixer fetch" in str(e.value)


def test_a_missing_relative_raw_dir_says_it_is_read_from_the_current_folder(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`cd recipes && mixer build v2-sample.yaml`: raw_dir samples/raw_train is read from the current folder, so
    every file is missing; the error says so instead of leaving the user to check each file."""
    monkeypatch.chdir(tmp_path)
    recipe = parse_recipe({"raw_dir": "samples/raw_train", "sources": [
        {"name": "flan_v2", "files": "flan/x.jsonl"}, {"name": "cot", "files": "cot/*.jsonl"}]})
    for source in recipe.sources:
        with pytest.raises(RecipeError) as e:
            resolve_files(recipe, source)
        assert "raw_dir 'samples/raw_train' is relative to the folder mixer runs in" in str(e.value)
        assert str(tmp_path) in str(e.value) and "--raw-dir" in str(e.value)
    (tmp_path / "samples" / "raw_train").mkdir(parents=True)  # the folder is there: only the file is missing
    with pytest.raises(RecipeError) as e:
        resolve_files(recipe, recipe.sources[0])
    assert "file not found: samples/raw_train/flan/x.jsonl" in str(e.value) and "relative" not in str(e.value)


def test_globs_expand_sorted_and_empty_glob_is_an_error(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl"):
        (tmp_path / name).write_text("{}\n")
    recipe = parse_recipe({"raw_dir": str(tmp_path), "sources": [{"name": "flan_v2", "files": "*.jsonl"}]})
    assert [p.name for p in resolve_files(recipe, recipe.sources[0])] == ["a.jsonl", "b.jsonl"]
    recipe = parse_recipe({"raw_dir": str(tmp_path), "sources": [{"name": "flan_v2", "files": "*.parquet"}]})
    with pytest.raises(RecipeError, match="no file matches"):
        resolve_files(recipe, recipe.sources[0])


def test_a_folder_named_as_a_file_is_a_recipe_error_and_globs_skip_folders(tmp_path: Path) -> None:
    """A folder where a file is expected used to reach the build's hashing as an IsADirectoryError traceback."""
    (tmp_path / "flan" / "x.jsonl").mkdir(parents=True)
    (tmp_path / "flan" / "a.jsonl").write_text("{}\n")
    recipe = parse_recipe({"raw_dir": str(tmp_path), "sources": [{"name": "flan_v2", "files": "flan/x.jsonl"}]})
    with pytest.raises(RecipeError, match=r"source 'flan_v2': .*flan/x\.jsonl is a folder, not a file"):
        resolve_files(recipe, recipe.sources[0])
    recipe = parse_recipe({"raw_dir": str(tmp_path), "sources": [{"name": "flan_v2", "files": "flan/*.jsonl"}]})
    assert [p.name for p in resolve_files(recipe, recipe.sources[0])] == ["a.jsonl"]
    (tmp_path / "flan" / "a.jsonl").unlink()
    with pytest.raises(RecipeError, match="no file matches"):
        resolve_files(recipe, recipe.sources[0])


def test_invalid_yaml_is_a_recipe_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("sources: [\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_a_recipe_that_is_not_utf8_is_a_recipe_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"seed: 1\nsources: []  # caf\xe9\n")
    with pytest.raises(RecipeError, match=r"r.yaml: line 2: not UTF-8 text \(byte 0xe9 at offset 26\)$"):
        load_recipe(path)


def test_a_folder_given_as_the_recipe_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="is a folder, not a recipe file"):
        load_recipe(tmp_path)


@pytest.mark.parametrize(("top", "message"), [
    ({"max_tokens": 0}, r"max_tokens: must be >= 1 \(or null: no limit\), found 0"),
    ({"max_tokens": -5}, "max_tokens: must be >= 1"),
    ({"filters": {"min_turns": -1}}, "filters.min_turns: must be >= 0"),
    ({"filters": {"min_turns": 3, "max_turns": 1}}, r"min_turns \(3\) is greater than max_turns \(1\)"),
    ({"output_options": {"row_group_rows": 0}}, "output_options.row_group_rows: must be >= 1, found 0"),
    ({"output_options": {"shard_max_bytes": -1}}, "output_options.shard_max_bytes: must be >= 1"),
])
def test_integers_out_of_range_are_recipe_errors(top: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe({**_one(), **top})


def test_an_option_for_an_adapter_without_options_says_it_takes_none() -> None:
    with pytest.raises(RecipeError, match=r"sources\[0\] \(lima\)\.options: unknown key\(s\) 'foo'; it takes no keys"):
        parse_recipe({"name": "t", "sources": [{"name": "lima", "files": "f.jsonl", "options": {"foo": 1}}]})


def test_a_key_given_twice_is_a_recipe_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nsources:\n  - name: flan_v2\n    files: f.jsonl\n    take: 5\n    take: 10\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "key 'take' is given twice" in str(e.value) and "line 6" in str(e.value)
