"""`mixer tokenize`: best-fit-decreasing packing, the trainer's tokens written once, byte-identical reruns,
and `mixer train sft` training from the folder (and refusing one made with another tokenizer or template)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from template_fixtures import CHATML_FAMILY, CHATML_GENERATION, make_template_tokenizer
from train_fixtures import SFT_RECORDS, tiny_assets, write_sft_build
from typer.testing import CliRunner

from mixer.cli import app
from mixer.train.packing import best_fit_decreasing
from mixer.train.tokenized import MANIFEST

runner = CliRunner()


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_bfd_matches_a_hand_computed_packing() -> None:
    # longest first: 8 opens bin 0 (room 2); 6 opens bin 1 (room 4); 5 opens bin 2 (room 5); 4 -> bin 1 (room 4,
    # the least room that fits; now 0); 3 -> bin 2 (room 5 -> 2); 2 -> bins 0 and 2 both have room 2, the one
    # opened first wins: bin 0 (-> 0); 1 -> bin 2 (room 2 -> 1)
    assert best_fit_decreasing([5, 3, 8, 2, 6, 4, 1], 10) == [[2, 3], [4, 5], [0, 1, 6]]
    # equal lengths keep their order; an item of exactly the capacity fills a bin alone
    assert best_fit_decreasing([4, 10, 4, 4, 2], 10) == [[1], [0, 2, 4], [3]]
    assert best_fit_decreasing([], 10) == []


def test_bfd_places_every_item_once_within_capacity() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 512) for _ in range(3000)]
    bins = best_fit_decreasing(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    # best fit: no two bins could be merged into one
    loads = sorted(sum(lengths[i] for i in b) for b in bins)
    assert loads[0] + loads[1] > 512
    assert bins == best_fit_decreasing(lengths, 512)


def test_bfd_refuses_an_item_longer_than_a_bin() -> None:
    with pytest.raises(ValueError, match="lengths must be in 1..10"):
        best_fit_decreasing([3, 11], 10)


def _tokenize(data: Path, out: Path, *args: str, tok: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["tokenize", str(data), "--tokenizer", tok or str(tiny_assets().tokenizer),
                                 "--max-length", "64", "-o", str(out), *args])
    return result.exit_code, result.output


def _rows(out: Path) -> list[dict]:
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    rows: list[dict] = []
    for shard in manifest["shards"]:
        rows += pq.read_table(out / shard["file"]).to_pylist()
    return rows


def test_tokenize_writes_the_trainers_tokens_and_masks(tmp_path: Path) -> None:
    """Row for row what tokenize_sft gives the trainer: same ids, same mask, same truncation and drops."""
    from transformers import AutoTokenizer

    from mixer.train.data import SFT_COLUMNS, load_parquet, tokenize_sft

    a = tiny_assets()
    records = [*SFT_RECORDS, {"dataset": "long", "id": "long_0", "messages": [
        {"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "Too late."}]}]
    data = write_sft_build(tmp_path / "build", records)
    code, out = _tokenize(data, tmp_path / "tok")
    assert code == 0, out
    assert "dropped 1 with no loss token (1 past max_length), truncated 1" in out
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    expected = tokenize_sft(load_parquet(data, SFT_COLUMNS), tokenizer, 64)
    rows = _rows(tmp_path / "tok")
    assert [r["input_ids"] for r in rows] == expected["input_ids"]
    assert [r["assistant_masks"] for r in rows] == expected["assistant_masks"]
    assert [r["id"] for r in rows] == [r["id"] for r in SFT_RECORDS]
    manifest = json.loads((tmp_path / "tok" / MANIFEST).read_text(encoding="utf-8"))
    toy = manifest["sources"]["toy"]
    assert toy["records"] == 12 and toy["kept"] == 12
    assert toy["trainable_tokens"] == sum(sum(m) for m in expected["assistant_masks"])
    assert toy["total_tokens"] == sum(len(x) for x in expected["input_ids"])
    assert manifest["sources"]["long"] == {"records": 1, "kept": 0, "dropped_no_loss_token": 1,
                                           "dropped_past_max_length": 1, "dropped_no_reply": 0, "truncated": 1,
                                           "total_tokens": 0, "trainable_tokens": 0}
    card = (tmp_path / "tok" / "README.md").read_text(encoding="utf-8")
    assert f"| toy | 12 | 12 | 0 | 0 | 0 | 0 | {toy['total_tokens']:,} | {toy['trainable_tokens']:,} |" in card


def test_drops_say_whether_the_reply_was_past_max_length_or_never_there(tmp_path: Path) -> None:
    """ShareGPT's `gpt` role has no assistant marker: its rows were counted as 'no loss token' alone, which
    read as a max_length problem."""
    records = [*SFT_RECORDS[:2], {"dataset": "sharegpt", "id": "s_0", "messages": [
        {"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello."}]},
        {"dataset": "long", "id": "long_0", "messages": [
            {"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "Too late."}]}]
    code, out = _tokenize(write_sft_build(tmp_path / "build", records), tmp_path / "tok")
    assert code == 0, out
    assert "dropped 2 with no loss token (1 past max_length, 1 with no assistant reply)" in out
    totals = json.loads((tmp_path / "tok" / MANIFEST).read_text(encoding="utf-8"))["totals"]
    assert (totals["dropped_no_loss_token"], totals["dropped_past_max_length"], totals["dropped_no_reply"]) == (2, 1, 1)


def test_packed_rows_hold_the_same_sequences_with_their_boundaries(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    assert _tokenize(data, tmp_path / "flat")[0] == 0
    code, out = _tokenize(data, tmp_path / "packed", "--pack", "bfd")
    assert code == 0, out
    flat = _rows(tmp_path / "flat")
    packed = _rows(tmp_path / "packed")
    assert len(packed) < len(flat)
    pieces = []
    for row in packed:
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) == len(row["assistant_masks"]) <= 64
        start = 0
        for n, rid in zip(row["seq_lengths"], row["ids"], strict=True):
            pieces.append((rid, row["input_ids"][start:start + n], row["assistant_masks"][start:start + n]))
            start += n
    assert sorted(pieces) == sorted((r["id"], r["input_ids"], r["assistant_masks"]) for r in flat)
    # the bins are best_fit_decreasing's over the conversation lengths
    bins = best_fit_decreasing([len(r["input_ids"]) for r in flat], 64)
    assert [row["ids"] for row in packed] == [[flat[i]["id"] for i in b] for b in bins]
    manifest = json.loads((tmp_path / "packed" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["pack"] == "bfd" and manifest["packing"]["bins"] == len(packed)


def test_reruns_are_byte_identical_whatever_the_process_count(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    for out, workers in (("a", "1"), ("b", "1"), ("c", "2")):
        assert _tokenize(data, tmp_path / out, "--pack", "bfd", "--workers", workers)[0] == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    for other in ("b", "c"):
        assert files == sorted(p.relative_to(tmp_path / other) for p in (tmp_path / other).rglob("*") if p.is_file())
        for f in files:
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / other / f).read_bytes(), (other, f)
    before = {f: (tmp_path / "a" / f).read_bytes() for f in files}
    assert _tokenize(data, tmp_path / "a", "--pack", "bfd")[0] == 0  # into its own earlier output: allowed
    assert {f: (tmp_path / "a" / f).read_bytes() for f in files} == before


def test_a_users_folder_is_not_written_into(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    code, out = _tokenize(data, mine)
    assert code == 2 and "--overwrite" in out, out
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["the build itself", "a folder holding the build", "inside the build"])
def test_an_output_folder_that_overlaps_the_input_build_is_refused_even_with_overwrite(tmp_path: Path,
                                                                                       where: str) -> None:
    """`-o` on the build (or around or inside it) would delete the build's own Parquet shards and replace its
    card: refused, exit 2, whatever --overwrite says, and the build is left byte for byte."""
    data = write_sft_build(tmp_path / "work" / "build")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    out = {"the build itself": data, "a folder holding the build": tmp_path / "work",
           "inside the build": data / "tok"}[where]
    code, output = _tokenize(data, out, "--overwrite")
    assert code == 2 and "the output folder" in output and str(data) in output, output
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not (data / MANIFEST).exists() and not (data / "tok").exists()


def test_a_tokenize_that_fails_while_writing_leaves_the_earlier_output_whole(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards, card and manifest are written in a staging folder and renamed into place: a rerun that fails
    after its first shard leaves the earlier output's manifest with its own shards, and no staging folder."""
    import pyarrow.parquet as pq_module

    data = write_sft_build(tmp_path / "build")
    out = tmp_path / "tok"
    assert _tokenize(data, out)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq_module, "write_table", disk_full)
    code, output = _tokenize(data, out, "--pack", "bfd")
    assert code != 0, output
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "tok"]


def test_overwrite_replaces_a_users_folder_as_its_help_says(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    code, output = _tokenize(data, mine, "--overwrite")
    assert code == 0, output
    assert sorted(p.name for p in mine.iterdir()) == ["README.md", "data", MANIFEST]


def test_bad_pack_and_missing_tokenizer_are_exit_2(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    code, out = _tokenize(data, tmp_path / "x", "--pack", "greedy")
    assert code == 2 and "--pack 'greedy': choose bfd" in out
    result = runner.invoke(app, ["tokenize", str(data), "--max-length", "64"])
    assert result.exit_code == 2 and "give --model PATH or --tokenizer PATH" in result.output


# --- mixer train sft from a tokenized folder -------------------------------------------------------------------

def _train(tmp_path: Path, data: Path, *sets: str) -> object:
    from mixer.train.cli import app as train_app

    a = tiny_assets()
    return runner.invoke(train_app, ["sft", "--config", "tiny-cpu", "--model", str(a.model), "--data", str(data),
                                     "--output-dir", str(tmp_path / "run"), "--set", "max_steps=1",
                                     "--set", "max_length=64", *[x for s in sets for x in ("--set", s)]])


@pytest.mark.parametrize("pack", [[], ["--pack", "bfd"]], ids=["flat", "packed"])
def test_train_sft_trains_one_step_from_a_tokenized_folder(tmp_path: Path, pack: list[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import mixer.train.data as data_module

    data = write_sft_build(tmp_path / "build")
    assert _tokenize(data, tmp_path / "tok", *pack)[0] == 0

    def no_tokenizing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the trainer tokenized again")

    monkeypatch.setattr(data_module, "tokenize_sft", no_tokenizing)
    monkeypatch.setattr(data_module, "_tokenize_row", no_tokenizing)
    result = _train(tmp_path, tmp_path / "tok", *(["batching=packed"] if pack else []))
    assert result.exit_code == 0, result.output
    assert "trained sft" in result.output
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics)


def test_train_sft_packed_folder_batches_restart_positions(tmp_path: Path) -> None:
    from mixer.train.config import load_config
    from mixer.train.trainer import build_trainer

    data = write_sft_build(tmp_path / "build")
    assert _tokenize(data, tmp_path / "tok", "--pack", "bfd")[0] == 0
    a = tiny_assets()
    cfg = load_config("sft", "tiny-cpu", ["max_length=64", "batching=packed"], model=str(a.model),
                      data=str(tmp_path / "tok"), output_dir=str(tmp_path / "run"))
    trainer = build_trainer(cfg)
    assert trainer.args.packing is False and trainer.args.padding_free is True
    row = next(r for r in trainer.train_dataset if len(r["seq_lengths"]) > 1)
    batch = trainer.data_collator([row])
    starts = (batch["position_ids"][0] == 0).sum().item()
    assert starts == len(row["seq_lengths"]) > 1


def test_train_sft_refuses_a_folder_from_another_tokenizer(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    other = make_template_tokenizer(tmp_path / "other-tok", CHATML_GENERATION, CHATML_FAMILY)
    assert _tokenize(data, tmp_path / "tok", tok=str(other))[0] == 0
    manifest = json.loads((tmp_path / "tok" / MANIFEST).read_text(encoding="utf-8"))
    result = _train(tmp_path, tmp_path / "tok")
    assert result.exit_code == 2, result.output
    assert manifest["tokenizer"]["sha256"] in result.output
    assert "this run's tokenizer" in result.output and "Traceback" not in result.output
    from transformers import AutoTokenizer

    from mixer.train.tokenized import tokenizer_sha256

    ours = AutoTokenizer.from_pretrained(tiny_assets().model)
    assert tokenizer_sha256(ours) in result.output


def test_train_sft_refuses_a_folder_rendered_with_another_template(tmp_path: Path) -> None:
    data = write_sft_build(tmp_path / "build")
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML_GENERATION, encoding="utf-8")
    code, out = _tokenize(data, tmp_path / "tok", "--chat-template", str(template))
    assert code == 0, out
    result = _train(tmp_path, tmp_path / "tok")  # the run's chat_template: auto -> the tokenizer's Tulu template
    assert result.exit_code == 2, result.output
    assert "chat template sha256" in result.output and "this run's template is sha256" in result.output


def test_train_sft_refuses_a_wrong_template_before_training(tmp_path: Path) -> None:
    from template_fixtures import BROKEN_EOS_OUTSIDE

    template = tmp_path / "broken.jinja"
    template.write_text(BROKEN_EOS_OUTSIDE, encoding="utf-8")
    result = _train(tmp_path, tiny_assets().sft_data, f"chat_template={template}")
    assert result.exit_code == 2, result.output
    assert "loss mask is wrong for 12 of 12 sampled records" in result.output
    assert "should carry loss" in result.output and "check_template=false" in result.output
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    skipped = _train(tmp_path, tiny_assets().sft_data, f"chat_template={template}", "check_template=false")
    assert skipped.exit_code == 0, skipped.output


def test_take_rows_gives_arrow_take_s_rows_in_the_asked_order_one_chunk_per_column() -> None:
    import pyarrow as pa

    from mixer.train.packing import take_rows

    ids = pa.chunked_array([[[1], [2, 2]], [[3, 3, 3]], [[4], [5], [6]]], pa.list_(pa.int32()))
    names = pa.chunked_array([["a", "b"], ["c"], ["d", "e", "f"]])
    table = pa.table({"input_ids": ids, "id": names})
    rows = [5, 0, 2, 2, 4, 1]
    got = take_rows(table, rows)
    assert got.to_pylist() == table.take(pa.array(rows)).to_pylist()
    assert [c.num_chunks for c in got.columns] == [1, 1] and got.schema == table.schema
    assert take_rows(table, []).num_rows == 0


def test_a_shard_s_rows_read_from_the_cache_files_equal_those_taken_from_the_table(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa

    from mixer.train.packing import TokenisedRows, row_schema, stream_rows

    schema = pa.schema(list(row_schema(False))[:2])
    rows = [{"input_ids": [i] * (i % 3 + 1), "assistant_masks": [i % 2] * (i % 3 + 1)} for i in range(10)]
    table = pa.Table.from_pylist(rows, schema)
    files = []
    for part, (lo, hi) in enumerate(((0, 6), (6, 10))):  # two cache files of two batches each, as a map writes
        path = tmp_path / f"cache-{part}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for a, b in ((lo, (lo + hi) // 2), ((lo + hi) // 2, hi)):
                writer.write_batch(table.slice(a, b - a).to_batches()[0])
        files.append(str(path))
    assert sum(stream_rows(f) for f in files) == 10
    lengths = np.array([len(r["input_ids"]) for r in rows])
    sources, ids = pa.array(["s"] * 10), pa.array([f"r{i}" for i in range(10)])
    from_files = TokenisedRows(files, None, lengths, sources, ids)
    from_table = TokenisedRows([], table, lengths, sources, ids)
    want = [7, 1, 9, 0, 4, 4]
    assert from_files.take(want).to_pylist() == from_table.take(want).to_pylist()
    assert [r["id"] for r in from_files.take(want).to_pylist()] == [f"r{i}" for i in want]
    assert from_files.take(want).column("input_ids").to_pylist() == [rows[i]["input_ids"] for i in want]
