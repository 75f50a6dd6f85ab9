"""Reading a user's YAML file: the text and its data, or an error that names the file, in the caller's class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixer.core.errors import MixerError, RecipeError
from mixer.core.yamlio import read_yaml_file


def test_a_yaml_file_gives_its_exact_text_and_its_data(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes("name: café\nsources: [a, b]\n".encode())
    text, data = read_yaml_file(path)
    assert text == "name: café\nsources: [a, b]\n"
    assert data == {"name": "café", "sources": ["a", "b"]}


def test_a_byte_that_is_not_utf8_is_named_with_its_file_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"seed: 1\nname: caf\xe9\n")  # Latin-1 e-acute
    with pytest.raises(RecipeError) as info:
        read_yaml_file(path, error=RecipeError)
    assert str(info.value) == f"{path}: line 2: not UTF-8 text (byte 0xe9 at offset 17)"


def test_a_yaml_syntax_error_names_the_file_and_keeps_the_parsers_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("seed: 1\nsources: [\n")

    class OwnError(MixerError):
        pass

    with pytest.raises(OwnError) as info:
        read_yaml_file(str(path), error=OwnError)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: ") and "line 3" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_key_given_twice_is_refused_by_default_and_the_callers_loader_is_used_when_given(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("take: 5\ntake: 10\n")
    with pytest.raises(MixerError, match=r"(?s)r.yaml: not valid YAML: key 'take' is given twice.*line 2"):
        read_yaml_file(path)
    assert read_yaml_file(path, loader=yaml.SafeLoader)[1] == {"take": 10}


def test_an_empty_file_is_empty_text_and_no_data(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("")
    assert read_yaml_file(path) == ("", None)


def test_a_yaml_errors_location_names_the_file_not_a_unicode_string(tmp_path: Path) -> None:
    # PyYAML, parsing text, located the error `in "<unicode string>", line 3`: the location names the file
    path = tmp_path / "r.yaml"
    path.write_text("seed: 1\nsources:\n  - name: a\n   files: x\n")
    with pytest.raises(MixerError) as bad:
        read_yaml_file(path)
    twice = tmp_path / "twice.yaml"
    twice.write_text("take: 5\ntake: 10\n")
    with pytest.raises(MixerError) as repeated:
        read_yaml_file(twice)
    for info, p, line in ((bad, path, 4), (repeated, twice, 2)):
        message = str(info.value)
        assert "<unicode string>" not in message, message
        assert f'in "{p}", line {line}' in message, message
