"""The shipped recipes that mix GAtt dialogues and SPIN pairs (recipes/generated-gatt.yaml and
generated-spin.yaml) build from what `mixer gatt` and `mixer spin` write, every record accounted for: the
GAtt records keep their `train: false` turns and the SPIN pairs their gold (chosen) and generated (rejected)
answers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import mixer.generate.backends as backends
from mixer.build import build
from mixer.generate.backends import Completion
from mixer.generate.gatt import GattConfig, run_gatt
from mixer.generate.spin import generate_pairs
from mixer.recipe.load import load_recipe

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "recipes" / "v2-sample.yaml"


class Replies:
    def generate(self, prompts, seeds):  # noqa: ANN001, ANN202
        return [[Completion(f"My answer to: {p[-1]['content'][-40:]}", 6, "stop")] for p in prompts]


def test_generated_gatt_mixes_the_gatt_dialogues_into_the_sample_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sample = build(load_recipe(SAMPLE, output=str(out / "tulu-v2-sample")))
    dialogues = tmp_path / "dialogues.jsonl"
    dialogues.write_text("".join(json.dumps({"id": f"d{i}", "messages": [
        {"role": "user", "content": f"Plan a trip to city {i}."}, {"role": "assistant", "content": "-"},
        {"role": "user", "content": f"And what should I pack for city {i}?"}]}) + "\n" for i in range(3)))
    run_gatt(GattConfig(policy="unused", dialogues=str(dialogues), output=str(out / "gatt")), backend=Replies(),
             say=lambda m: None)
    mixed = build(load_recipe(REPO / "recipes" / "generated-gatt.yaml", raw_dir=str(out),
                              output=str(tmp_path / "mixed")))
    by_name = {s["name"]: s for s in mixed.card["sources"]}
    assert by_name["tulu_v2_sample"]["records_in"] == sample.card["totals"]["records"]
    assert by_name["gatt"]["records_in"] == by_name["gatt"]["selected"] == 3
    rows = pq.read_table(mixed.out / "data").to_pylist()
    gatt = [r for r in rows if r["dataset"] == "gatt"]
    assert len(gatt) == 3
    assert all([m["train"] for m in r["messages"] if m["role"] == "assistant"] == [False, None] for r in gatt)


def test_generated_spin_builds_an_iterations_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gold = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"Name prime number {i}."}],
             "gold": {"role": "assistant", "content": f"The answer is prime {i}."}} for i in range(4)]
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: Replies())
    spin = tmp_path / "spin"
    generate_pairs("policy", gold, spin / "iter-0" / "pairs", 0, None, None, 42)
    built = build(load_recipe(REPO / "recipes" / "generated-spin.yaml", raw_dir=str(spin),
                              output=str(tmp_path / "pairs")))
    (source,) = built.card["sources"]
    assert source["records_in"] == source["selected"] == 4
    rows = pq.read_table(built.out / "data").to_pylist()
    assert sorted(r["chosen"][-1]["content"] for r in rows) == sorted(g["gold"]["content"] for g in gold)
    assert all(r["rejected"][-1]["content"].startswith("My answer to:") for r in rows)
