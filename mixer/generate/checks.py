"""Cheap checks of the model folders a run names, before its output folder is made.

Loading a model takes seconds to minutes and fails deep inside transformers; these read only ``config.json``
and the file list, so a typo, an empty folder or a policy passed as the reward model is refused with the
option and the path, and no output folder is left behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _config(option: str, folder: str | Path) -> dict[str, Any]:
    path = Path(folder)
    if not path.is_dir():
        raise MixerError(f"{option} {folder}: no such model folder")
    config = path / "config.json"
    if not config.is_file():
        raise MixerError(f"{option} {folder}: not a model folder (no config.json); give a saved transformers model")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MixerError(f"{option} {config}: unreadable model config ({e})") from None
    if not isinstance(data, dict):
        raise MixerError(f"{option} {config}: not a model config (a JSON object)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise MixerError(f"{option} {folder}: the model folder has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    return data


def check_policy_folder(folder: str | Path, option: str = "--policy", chat_template: str | None = None) -> None:
    """A folder that looks like a causal LM with its tokenizer (its config and tokenizer files are there), and a
    chat template to prompt it with: ``chat_template`` (``tulu`` or a file), else the folder's own."""
    _config(option, folder)
    if chat_template:
        if chat_template != "tulu" and not Path(chat_template).is_file():
            raise MixerError(f"--chat-template must be `tulu` or a .jinja file; {chat_template!r} is neither")
        return
    path = Path(folder)
    if any((path / name).is_file() for name in ("chat_template.jinja", "chat_template.json")):
        return
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if not (isinstance(config, dict) and config.get("chat_template")):
        raise MixerError(f"{folder}: the model folder has no chat template (tokenizer_config.json / "
                         "chat_template.jinja) and none is configured: pass --chat-template tulu or a .jinja file")


def check_reward_folder(folder: str | Path, option: str = "--reward-model") -> None:
    """A folder that holds a one-label sequence classifier, as ``mixer train rm`` writes."""
    data = _config(option, folder)
    archs = data.get("architectures") or []
    labels = data.get("num_labels", len(data.get("id2label") or {}) or None)
    if labels != 1 or not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise MixerError(f"{option} {folder} is not a reward model (a one-label *ForSequenceClassification; found "
                         f"{', '.join(map(str, archs)) or 'no architecture'}): train one with `mixer train rm`")


def load_yaml_file(option: str, path: str | Path) -> Any:
    """A user's YAML (or JSON) file of texts, parsed; a missing or unparsable file is an error naming it."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MixerError(f"{option} {path}: no such file")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise MixerError(f"{option} {path}: not a readable YAML/JSON file ({str(e).splitlines()[0]})") from None
