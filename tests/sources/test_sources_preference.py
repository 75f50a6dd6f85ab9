"""Preference adapters (ultrafeedback, hh_rlhf): pair construction, the source's drop rules, bundled samples."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Record
from mixer.readers.base import ParseFailure
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UF_FILE = SAMPLES / "raw_train" / "ultrafeedback" / "train_prefs-00000-of-00001.parquet"
HH_DIR = SAMPLES / "raw_train" / "hh_rlhf"


def make_adapter(name: str, **options: Any) -> Adapter:
    cls = get_adapter(name)
    return cls(cls.Options(**options), SourceContext(name, 42))


def convert(name: str, raw: Any, path: str = "train_prefs-00000-of-00001.parquet", record: int = 0,
            **options: Any) -> list[Record | Dropped]:
    return list(make_adapter(name, **options).convert(raw, Location(path, record=record)))


def convert_one(name: str, raw: Any, **kwargs: Any) -> Record | Dropped:
    (out,) = convert(name, raw, **kwargs)
    return out


def read_all(name: str, path: Path, **options: Any) -> tuple[list[Record], list[Dropped]]:
    adapter = make_adapter(name, **options)
    records: list[Record] = []
    drops: list[Dropped] = []
    for item in adapter.read_file(path):
        assert not isinstance(item.value, ParseFailure), item.value
        for out in adapter.convert(item.value, item.location):
            (drops if isinstance(out, Dropped) else records).append(out)  # type: ignore[arg-type]
    return records, drops


def assert_preference_shape(record: Record) -> None:
    """The contract: prompt turns ending in a user turn, one chosen assistant reply, one rejected reply."""
    messages = record["messages"]
    assert messages[-1]["role"] == "assistant"
    assert messages[-2]["role"] == "user"
    rejected = record["rejected"]  # type: ignore[typeddict-item]
    assert len(rejected) == 1 and rejected[0]["role"] == "assistant"


# -- ultrafeedback: convert on dicts ------------------------------------------------------------

def uf_row(prompt: str = "Name a colour.", chosen: str = "Blue.", rejected: str = "Potato.",
           score_chosen: float = 8.0, score_rejected: float = 3.0, **overrides: Any) -> dict[str, Any]:
    base = {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
        "chosen": [{"content": prompt, "role": "user"}, {"content": chosen, "role": "assistant"}],
        "rejected": [{"content": prompt, "role": "user"}, {"content": rejected, "role": "assistant"}],
        "score_chosen": score_chosen,
        "score_rejected": score_rejected,
    }
    return {**base, **overrides}


def test_ultrafeedback_pair_is_prompt_plus_chosen_with_rejected_reply() -> None:
    row = uf_row()
    record = convert_one("ultrafeedback", row)
    assert record == {
        "dataset": "ultrafeedback",
        "id": f"ultrafeedback_{row['prompt_id']}",
        "messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Potato."}],
        "score_chosen": 8.0,
        "score_rejected": 3.0,
    }
    assert list(record) == ["dataset", "id", "messages", "rejected", "score_chosen", "score_rejected"]


def test_ultrafeedback_keeps_texts_exactly_as_published() -> None:
    record = convert_one("ultrafeedback", uf_row(prompt="  Cafe\u0301?\n", chosen=" Yes. ", rejected="no\n"))
    assert isinstance(record, dict)
    assert record["messages"][0]["content"] == "  Cafe\u0301?\n"
    assert record["messages"][1]["content"] == " Yes. "
    assert record["rejected"][0]["content"] == "no\n"  # type: ignore[typeddict-item]


def test_ultrafeedback_drops_ties_when_asked() -> None:
    out = convert_one("ultrafeedback", uf_row(score_chosen=8.5, score_rejected=8.5))
    assert isinstance(out, Dropped)
    assert (out.reason, out.dataset, out.stage) == ("tie", "ultrafeedback", "read")
    assert "8.5" in out.detail
    assert out.id.startswith("ultrafeedback_")


def test_ultrafeedback_keeps_ties_when_drop_ties_is_off() -> None:
    out = convert_one("ultrafeedback", uf_row(score_chosen=8.5, score_rejected=8.5), drop_ties=False)
    assert isinstance(out, dict)
    assert_preference_shape(out)


def test_ultrafeedback_integer_scores_are_accepted() -> None:
    out = convert_one("ultrafeedback", uf_row(score_chosen=7, score_rejected=7))
    assert isinstance(out, Dropped) and out.reason == "tie"


def test_ultrafeedback_identical_responses_are_dropped_even_without_tie_rule() -> None:
    out = convert_one("ultrafeedback", uf_row(chosen="Blue.", rejected="Blue.\n"), drop_ties=False)
    assert isinstance(out, Dropped) and out.reason == "chosen_equals_rejected"


def test_ultrafeedback_prompt_mismatch_is_dropped() -> None:
    row = uf_row()
    row["rejected"] = [{"content": "Name a fruit.", "role": "user"}, {"content": "Pear.", "role": "assistant"}]
    out = convert_one("ultrafeedback", row)
    assert isinstance(out, Dropped) and out.reason == "prompt_mismatch"


@pytest.mark.parametrize("side", ["chosen", "rejected"])
def test_ultrafeedback_na_placeholder_response_is_dropped(side: str) -> None:
    out = convert_one("ultrafeedback", uf_row(**{side: "N/A"}))
    assert isinstance(out, Dropped) and out.reason == "placeholder_response"
    assert side in out.detail


def test_ultrafeedback_empty_response_is_left_to_the_pipeline() -> None:
    """Empty replies are the pipeline's empty-turn rule's business, counted alike for all sources."""
    out = convert_one("ultrafeedback", uf_row(rejected=""))
    assert isinstance(out, dict)
    assert out["rejected"] == [{"role": "assistant", "content": ""}]  # type: ignore[typeddict-item]


def test_ultrafeedback_multi_turn_prompt_with_system_turn_is_kept() -> None:
    turns = [{"content": "Be brief.", "role": "system"}, {"content": "Hi", "role": "user"},
             {"content": "Hello!", "role": "assistant"}, {"content": "Name a colour.", "role": "user"}]
    row = uf_row(chosen=None, rejected=None)
    row["chosen"] = [*turns, {"content": "Blue.", "role": "assistant"}]
    row["rejected"] = [*turns, {"content": "Potato.", "role": "assistant"}]
    record = convert_one("ultrafeedback", row)
    assert isinstance(record, dict)
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert_preference_shape(record)


def test_ultrafeedback_source_column_is_carried_on_drops() -> None:
    out = convert_one("ultrafeedback", uf_row(score_chosen=5.0, score_rejected=5.0, source="evol_instruct"))
    assert isinstance(out, Dropped) and out.extra == {"source": "evol_instruct"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chosen": "Blue."}, "'chosen' must be a list"),
        ({"chosen": []}, "'chosen' is an empty list"),
        ({"rejected": [{"content": "Name a colour.", "role": "user"}]}, "'rejected': the last message"),
        ({"chosen": [{"content": "Blue.", "role": "assistant"}]}, "only the response"),
        ({"chosen": [{"content": "Q", "role": "user"}, {"content": "A", "role": "gpt"}]}, "found 'gpt'"),
        ({"chosen": [{"content": "Q", "role": "user"}, {"content": None, "role": "assistant"}]},
         "'content' must be a string"),
        ({"score_chosen": None}, "'score_chosen' must be a number"),
        ({"score_rejected": True}, "'score_rejected' must be a number"),
        ({"prompt_id": ""}, "'prompt_id' is empty"),
        ({"source": 3}, "'source' must be a string"),
    ],
)
def test_ultrafeedback_malformed_rows_raise_record_error_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        convert("ultrafeedback", {**uf_row(), **change})


def test_ultrafeedback_missing_column_is_named() -> None:
    row = uf_row()
    del row["score_rejected"]
    with pytest.raises(RecordError, match="missing required field 'score_rejected'"):
        convert("ultrafeedback", row)


# -- ultrafeedback: files -----------------------------------------------------------------------

def test_ultrafeedback_bundled_sample_records_and_drops() -> None:
    records, drops = read_all("ultrafeedback", UF_FILE)
    assert len(records) == 15
    assert Counter(d.reason for d in drops) == {"tie": 2, "chosen_equals_rejected": 1, "placeholder_response": 1,
                                                "prompt_mismatch": 1}
    for record in records:
        assert record["dataset"] == "ultrafeedback"
        assert_preference_shape(record)
    prompts = Counter(r["messages"][0]["content"] for r in records)
    assert prompts["Write a haiku about autumn rain."] == 2  # the repeated prompt is left to the pipeline's dedup
    assert max(len(r["messages"][-1]["content"]) for r in records) > 1500  # the long response
    assert any(r["rejected"][0]["content"].startswith("As an AI language model")  # type: ignore[typeddict-item]
               for r in records)


def test_ultrafeedback_bundled_sample_keeps_ties_without_drop_ties() -> None:
    records, drops = read_all("ultrafeedback", UF_FILE, drop_ties=False)
    assert len(records) == 17
    assert "tie" not in {d.reason for d in drops}


def test_ultrafeedback_reads_the_cleaned_variant_with_source_column(tmp_path: Path) -> None:
    table = pq.read_table(UF_FILE).slice(0, 3)
    table = table.append_column("source", pa.array(["sharegpt", "flan_v2_niv2", "evol_instruct"]))
    path = tmp_path / "train_prefs-00000-of-00001.parquet"
    pq.write_table(table, path)
    items = list(make_adapter("ultrafeedback").read_file(path))
    assert [item.value["source"] for item in items] == ["sharegpt", "flan_v2_niv2", "evol_instruct"]
    assert "messages" not in items[0].value  # only the needed columns are read


def test_ultrafeedback_h4_file_without_source_column_is_read() -> None:
    item = next(iter(make_adapter("ultrafeedback").read_file(UF_FILE)))
    assert set(item.value) == {"prompt", "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected"}


def test_ultrafeedback_file_missing_a_needed_column_is_an_input_error(tmp_path: Path) -> None:
    from mixer.core.errors import InputError

    path = tmp_path / "x.parquet"
    pq.write_table(pq.read_table(UF_FILE).drop_columns(["score_rejected"]), path)
    with pytest.raises(InputError, match="score_rejected"):
        list(make_adapter("ultrafeedback").read_file(path))


# -- hh_rlhf: convert on dicts ------------------------------------------------------------------

HH_PATH = "raw/hh_rlhf/helpful-base/train.jsonl.gz"


def hh(*turns: str) -> str:
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


def hh_convert(chosen: str, rejected: str, record: int = 3) -> list[Record | Dropped]:
    return convert("hh_rlhf", {"chosen": chosen, "rejected": rejected}, path=HH_PATH, record=record)


def hh_one(chosen: str, rejected: str) -> Record | Dropped:
    (out,) = hh_convert(chosen, rejected)
    return out


def test_hh_rlhf_prompt_is_common_prefix_up_to_last_assistant_turn() -> None:
    record = hh_one(hh("Hi", "Hello, how can I help?", "Name a colour.", "Blue."),
                    hh("Hi", "Hello, how can I help?", "Name a colour.", "Potato."))
    assert record == {
        "dataset": "hh_rlhf",
        "id": "hh_rlhf_helpful-base_3",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
        "rejected": [{"role": "assistant", "content": "Potato."}],
    }


def test_hh_rlhf_id_names_the_subset_folder_and_record() -> None:
    (out,) = convert("hh_rlhf", {"chosen": hh("Q", "A"), "rejected": hh("Q", "B")},
                     path="x/harmless-base/train.jsonl.gz", record=17)
    assert out["id"] == "hh_rlhf_harmless-base_17"  # type: ignore[index]


def test_hh_rlhf_pairs_diverging_earlier_are_dropped() -> None:
    out = hh_one(hh("Hi", "Hello!", "Name a colour.", "Blue."), hh("Hi", "Go away.", "Name a colour.", "Potato."))
    assert isinstance(out, Dropped)
    assert (out.reason, out.dataset, out.id, out.stage) == ("diverges_before_last_turn", "hh_rlhf",
                                                           "hh_rlhf_helpful-base_3", "read")


def test_hh_rlhf_rejected_with_more_turns_diverges() -> None:
    out = hh_one(hh("Name a colour.", "Blue."), hh("Name a colour.", "Why?", "Just do it.", "Potato."))
    assert isinstance(out, Dropped) and out.reason == "diverges_before_last_turn"


def test_hh_rlhf_chosen_with_more_turns_diverges() -> None:
    out = hh_one(hh("Name a colour.", "Why?", "Just do it.", "Blue."), hh("Name a colour.", "Potato."))
    assert isinstance(out, Dropped) and out.reason == "diverges_before_last_turn"


def test_hh_rlhf_assistant_turn_continued_after_human_turn_is_kept_as_is() -> None:
    chosen = hh("What noise did dinosaurs make?", "Nobody knows exactly, but scientists", "go on",
                "study their skulls to guess.", "ok thanks", "You're welcome!")
    rejected = hh("What noise did dinosaurs make?", "Nobody knows exactly, but scientists", "go on",
                  "study their skulls to guess.", "ok thanks", "Whatever.")
    record = hh_one(chosen, rejected)
    assert isinstance(record, dict)
    assert [m["content"] for m in record["messages"]] == [
        "What noise did dinosaurs make?", "Nobody knows exactly, but scientists", "go on",
        "study their skulls to guess.", "ok thanks", "You're welcome!"]


def test_hh_rlhf_consecutive_same_role_turns_are_not_merged() -> None:
    chosen = "\n\nHuman: one\n\nHuman: two\n\nAssistant: Blue."
    rejected = "\n\nHuman: one\n\nHuman: two\n\nAssistant: Potato."
    record = hh_one(chosen, rejected)
    assert isinstance(record, dict)
    assert [m["role"] for m in record["messages"]] == ["user", "user", "assistant"]


def test_hh_rlhf_only_the_single_space_after_the_marker_is_removed() -> None:
    record = hh_one("\n\nHuman:   spaced \n\nAssistant:  two spaces\n", "\n\nHuman:   spaced \n\nAssistant:No space")
    assert isinstance(record, dict)
    assert record["messages"] == [{"role": "user", "content": "  spaced "},
                                  {"role": "assistant", "content": " two spaces\n"}]
    assert record["rejected"] == [{"role": "assistant", "content": "No space"}]  # type: ignore[typeddict-item]


@pytest.mark.parametrize("lead", ["", "\n\n", "\n\n\n\n", " \n\n"])
def test_hh_rlhf_leading_whitespace_before_first_human_turn_is_accepted(lead: str) -> None:
    record = hh_one(f"{lead}Human: Q\n\nAssistant: A", f"{lead}Human: Q\n\nAssistant: B")
    assert isinstance(record, dict)
    assert record["messages"] == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


def test_hh_rlhf_transcript_not_starting_with_human_is_unparseable() -> None:
    out = hh_one("\n\nAssistant: Hello!\n\nHuman: Q\n\nAssistant: A",
                 "\n\nAssistant: Hello!\n\nHuman: Q\n\nAssistant: B")
    assert isinstance(out, Dropped) and out.reason == "unparseable_transcript"


def test_hh_rlhf_prompt_ending_with_an_assistant_turn_is_unparseable() -> None:
    prompt = "\n\nHuman: Q\n\nAssistant: part one"
    out = hh_one(f"{prompt}\n\nAssistant: A", f"{prompt}\n\nAssistant: B")
    assert isinstance(out, Dropped) and out.reason == "unparseable_transcript"


def test_hh_rlhf_transcript_without_assistant_turn_is_unparseable() -> None:
    out = hh_one("\n\nHuman: just a question", "\n\nHuman: just a question")
    assert isinstance(out, Dropped) and out.reason == "unparseable_transcript"


def test_hh_rlhf_transcript_ending_with_a_human_turn_is_unparseable() -> None:
    out = hh_one(hh("Q", "A", "and then?"), hh("Q", "B"))
    assert isinstance(out, Dropped) and out.reason == "unparseable_transcript"
    assert "chosen" in out.detail


def test_hh_rlhf_identical_final_responses_are_dropped() -> None:
    out = hh_one(hh("Q", "Same answer."), hh("Q", "Same answer. "))
    assert isinstance(out, Dropped) and out.reason == "chosen_equals_rejected"


def test_hh_rlhf_empty_final_response_is_left_to_the_pipeline() -> None:
    record = hh_one(hh("Q", "A"), "\n\nHuman: Q\n\nAssistant:")
    assert isinstance(record, dict)
    assert record["rejected"] == [{"role": "assistant", "content": ""}]  # type: ignore[typeddict-item]


def test_hh_rlhf_red_team_schema_raises_record_error() -> None:
    red_team = {"transcript": hh("Q", "A"), "min_harmlessness_score_transcript": 1.2, "rating": 0,
                "task_description": "t", "model_type": "plain lm", "num_params": "52B"}
    with pytest.raises(RecordError, match=r"\['chosen', 'rejected'\].*red-team-attempts"):
        convert("hh_rlhf", red_team, path=HH_PATH)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"chosen": hh("Q", "A")}, r"missing required field\(s\) \['rejected'\]"),
        ({"chosen": hh("Q", "A"), "rejected": None}, "'rejected' must be a string, found NoneType"),
        (["not", "an", "object"], "expected a JSON object, found list"),
    ],
)
def test_hh_rlhf_malformed_lines_raise_record_error(raw: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        convert("hh_rlhf", raw, path=HH_PATH)


# -- hh_rlhf: files -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subset", "n_records", "reasons"),
    [
        ("helpful-base", 8, {"diverges_before_last_turn": 1, "chosen_equals_rejected": 1}),
        ("harmless-base", 7, {"diverges_before_last_turn": 1, "chosen_equals_rejected": 1,
                              "unparseable_transcript": 1}),
    ],
)
def test_hh_rlhf_bundled_samples_records_and_drops(subset: str, n_records: int, reasons: dict[str, int]) -> None:
    records, drops = read_all("hh_rlhf", HH_DIR / subset / "train.jsonl.gz")
    assert len(records) == n_records
    assert Counter(d.reason for d in drops) == reasons
    for record in records:
        assert record["dataset"] == "hh_rlhf"
        assert record["id"].startswith(f"hh_rlhf_{subset}_")
        assert_preference_shape(record)
    assert len({r["id"] for r in records} | {d.id for d in drops}) == n_records + sum(reasons.values())
    assert max(len(r["messages"]) for r in records) >= 4  # multi-turn prompts are present


def test_hh_rlhf_bundled_helpful_sample_has_continued_assistant_turn() -> None:
    records, _ = read_all("hh_rlhf", HH_DIR / "helpful-base" / "train.jsonl.gz")
    sky = next(r for r in records if r["messages"][0]["content"] == "Why is the sky blue?")
    assert sky["messages"][2] == {"role": "user", "content": "go on"}
    assert sky["messages"][3]["content"].startswith("much more than the red light")


# -- the sample script ----------------------------------------------------------------------------

def test_preference_samples_are_reproducible_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("make_preference_samples", SAMPLES / "make_preference_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RAW", tmp_path)
    module.main()
    for rel in ("ultrafeedback/train_prefs-00000-of-00001.parquet", "hh_rlhf/helpful-base/train.jsonl.gz",
                "hh_rlhf/harmless-base/train.jsonl.gz"):
        assert (tmp_path / rel).read_bytes() == (SAMPLES / "raw_train" / rel).read_bytes(), rel


def test_hh_rlhf_sample_lines_have_only_chosen_and_rejected() -> None:
    import gzip

    with gzip.open(HH_DIR / "helpful-base" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert all(set(row) == {"chosen", "rejected"} for row in rows)



# -- preference (generic): ratings when the file has them -----------------------------------------

PAIR = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}]}


def test_preference_adapter_reads_scores_when_present_and_leaves_unrated_pairs_without() -> None:
    (rated,) = convert("preference", dict(PAIR, score_chosen=9, score_rejected=2.5), path="pairs.jsonl")
    assert (rated["score_chosen"], rated["score_rejected"]) == (9.0, 2.5)  # type: ignore[index]
    assert isinstance(rated["score_chosen"], float)  # type: ignore[index]
    for unrated in (PAIR, dict(PAIR, score_chosen=None, score_rejected=None)):
        (record,) = convert("preference", unrated, path="pairs.jsonl")
        assert "score_chosen" not in record and "score_rejected" not in record


def test_preference_adapter_takes_generate_rewards_as_scores_when_asked() -> None:
    raw = dict(PAIR, reward_chosen=1.25, reward_rejected=-0.5, score_chosen=7.0, score_rejected=1.0)
    (record,) = convert("preference", raw, path="pairs.parquet", scores="reward")
    assert (record["score_chosen"], record["score_rejected"]) == (1.25, -0.5)  # type: ignore[index]
    (record,) = convert("preference", raw, path="pairs.parquet")
    assert (record["score_chosen"], record["score_rejected"]) == (7.0, 1.0)  # type: ignore[index]


@pytest.mark.parametrize(("fields", "message"), [
    ({"score_chosen": 7.0}, "'score_rejected' is missing or null"),
    ({"score_chosen": None, "score_rejected": 3.0}, "'score_chosen' is missing or null"),
    ({"score_chosen": "7", "score_rejected": 3.0}, "'score_chosen' must be a finite number"),
    ({"score_chosen": 7.0, "score_rejected": True}, "'score_rejected' must be a finite number"),
    ({"score_chosen": float("nan"), "score_rejected": 3.0}, "'score_chosen' must be a finite number"),
])
def test_preference_adapter_rejects_half_or_malformed_ratings(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        convert("preference", dict(PAIR, **fields), path="pairs.jsonl")
