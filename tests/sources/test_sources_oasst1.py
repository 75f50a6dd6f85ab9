"""OASST1 tree walk: best-reply paths, deleted subtrees, prompter leaves, ids, and the sample export."""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.core.errors import Location, RecipeError, RecordError
from mixer.core.records import Dropped
from mixer.sources import SourceContext, get_adapter

SAMPLE = Path(__file__).parents[2] / "samples" / "raw_train" / "oasst1" / "2023-04-12_oasst_ready.trees.jsonl"
LOC = Location("trees.jsonl", line=1, record=0)
_ids = itertools.count()


def adapter(top_k_reply: int = 1) -> Any:
    cls = get_adapter("oasst1")
    return cls(cls.Options(top_k_reply=top_k_reply), SourceContext("oasst1", 42))


def node(role: str, text: str, *replies: dict[str, Any], quality: float | None = None,
         deleted: bool = False, labels: bool = True, mid: str | None = None) -> dict[str, Any]:
    """A node as the export writes it: null fields omitted, quality only when given."""
    n: dict[str, Any] = {"message_id": mid or f"m{next(_ids)}", "text": text, "role": role, "lang": "en",
                         "deleted": deleted, "replies": list(replies)}
    if labels:
        n["labels"] = {"spam": {"value": 0.0, "count": 3}}
        if quality is not None:
            n["labels"]["quality"] = {"value": quality, "count": 3}
    return n


def tree(root: dict[str, Any]) -> dict[str, Any]:
    return {"message_tree_id": root["message_id"], "tree_state": "ready_for_export", "prompt": root}


def convert(raw: Any, top_k_reply: int = 1) -> list[Any]:
    return list(adapter(top_k_reply).convert(raw, LOC))


def texts(record: dict[str, Any]) -> list[str]:
    return [m["content"] for m in record["messages"]]


def test_oasst1_is_registered_with_apache_licence_and_top_k_option() -> None:
    cls = get_adapter("oasst1")
    assert cls.name == "oasst1"
    assert cls.license == "Apache-2.0"
    assert cls.Options().top_k_reply == 1
    assert cls.description


def test_oasst_follows_highest_quality_reply_per_level() -> None:
    root = node("prompter", "Q1",
                node("assistant", "weak", quality=0.2),
                node("assistant", "best", node("prompter", "Q2",
                                               node("assistant", "meh", quality=0.4),
                                               node("assistant", "great", quality=0.9)), quality=0.8),
                node("assistant", "ok", quality=0.5))
    [record] = convert(tree(root))
    assert texts(record) == ["Q1", "best", "Q2", "great"]
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]
    assert record["dataset"] == "oasst1"


def test_oasst_ranks_prompter_replies_too() -> None:
    root = node("prompter", "Q", node("assistant", "A", node("prompter", "low", node("assistant", "x"),
                                                             quality=0.1),
                                      node("prompter", "high", node("assistant", "y"), quality=0.7)))
    [record] = convert(tree(root))
    assert texts(record) == ["Q", "A", "high", "y"]


def test_oasst_prompter_leaf_branch_emits_nothing() -> None:
    root = node("prompter", "Q", node("assistant", "best", node("prompter", "follow-up, never answered"),
                                      quality=0.9),
                node("assistant", "second", quality=0.5))
    out = convert(tree(root))
    assert len(out) == 1 and isinstance(out[0], Dropped)
    assert out[0].reason == "no_assistant_leaf"
    # with two replies per level the second-best (an assistant leaf) is emitted
    [record] = convert(tree(root), top_k_reply=2)
    assert texts(record) == ["Q", "second"]


def test_oasst_root_without_replies_emits_nothing() -> None:
    [dropped] = convert(tree(node("prompter", "nobody answered")))
    assert isinstance(dropped, Dropped) and dropped.reason == "no_assistant_leaf"


def test_oasst_skips_deleted_subtrees() -> None:
    root = node("prompter", "Q",
                node("assistant", "deleted but best", node("prompter", "Q2", node("assistant", "hidden")),
                     quality=1.0, deleted=True),
                node("assistant", "kept", quality=0.3))
    [record] = convert(tree(root))
    assert texts(record) == ["Q", "kept"]
    every = convert(tree(root), top_k_reply=0)
    assert [texts(r) for r in every] == [["Q", "kept"]]


def test_oasst_deleted_root_emits_nothing() -> None:
    [dropped] = convert(tree(node("prompter", "Q", node("assistant", "A"), deleted=True)))
    assert isinstance(dropped, Dropped)


def test_oasst_assistant_whose_replies_are_all_deleted_is_not_a_leaf() -> None:
    """open-instruct tests ``replies`` before removing deleted children; we keep that behaviour."""
    root = node("prompter", "Q", node("assistant", "A", node("prompter", "gone", deleted=True)))
    [dropped] = convert(tree(root))
    assert isinstance(dropped, Dropped)


def test_oasst_quality_ties_keep_file_order() -> None:
    root = node("prompter", "Q", node("assistant", "first", quality=0.5),
                node("assistant", "second", quality=0.5))
    [record] = convert(tree(root))
    assert texts(record) == ["Q", "first"]


def test_oasst_missing_labels_or_quality_count_as_zero() -> None:
    root = node("prompter", "Q", node("assistant", "no labels", labels=False),
                node("assistant", "labels without quality"),
                node("assistant", "scored", quality=0.01))
    [record] = convert(tree(root))
    assert texts(record) == ["Q", "scored"]
    root = node("prompter", "Q", node("assistant", "no labels", labels=False), node("assistant", "no quality"))
    [record] = convert(tree(root))
    assert texts(record) == ["Q", "no labels"]


def test_oasst_emits_one_conversation_per_assistant_leaf_with_leaf_ids() -> None:
    root = node("prompter", "Q",
                node("assistant", "A1", node("prompter", "Q2", node("assistant", "A2", mid="leaf-a2"),
                                             node("assistant", "A2b", mid="leaf-a2b")), quality=0.9),
                node("assistant", "B1", mid="leaf-b1", quality=0.5))
    records = convert(tree(root), top_k_reply=2)
    assert [r["id"] for r in records] == ["oasst1_leaf-a2", "oasst1_leaf-a2b", "oasst1_leaf-b1"]
    assert [texts(r) for r in records] == [["Q", "A1", "Q2", "A2"], ["Q", "A1", "Q2", "A2b"], ["Q", "B1"]]


def test_oasst_deep_tree_does_not_exhaust_recursion() -> None:
    depth = 5000
    leaf = node("assistant", f"a{depth}")
    current = leaf
    for i in range(depth - 1, 0, -1):
        current = node("prompter" if i % 2 else "assistant", f"t{i}", current)
    [record] = convert(tree(current))
    assert len(record["messages"]) == depth
    assert record["messages"][0]["role"] == "user"


@pytest.mark.parametrize("raw, needle", [
    ([], "JSON object"),
    ({"message_tree_id": "t"}, "'prompt'"),
    ({"prompt": {"message_id": "m", "role": "moderator", "text": "x"}}, "'role'"),
    ({"prompt": {"message_id": "m", "role": "prompter"}}, "'text'"),
    ({"prompt": {"message_id": "m", "role": "prompter", "text": 3}}, "'text'"),
    ({"prompt": {"message_id": "m", "role": "prompter", "text": "x", "replies": "none"}}, "'replies'"),
])
def test_oasst_malformed_trees_raise_record_error_naming_the_field(raw: Any, needle: str) -> None:
    with pytest.raises(RecordError, match=needle):
        convert(raw)


@pytest.mark.parametrize("raw, message", [
    ({"prompt": {"message_id": "r", "role": "prompter", "text": "q", "replies": ["an answer"]}},
     "message 'r': replies[0] must be a JSON object, found str"),
    ({"prompt": {"message_id": "r", "role": "prompter", "text": "q",
                 "replies": [{"message_id": "a", "role": "assistant", "text": None}]}},
     "message 'a': field 'text' must be a string, found NoneType"),
    ({"prompt": [{"message_id": "r"}]}, "field 'prompt' (the tree's root message) must be a JSON object, found list"),
    ({"message_id": "r", "parent_id": None, "role": "prompter", "text": "q"},
     "this line is one message, as in a message-list export (*.messages.jsonl): the adapter reads the trees export"),
])
def test_oasst_errors_say_which_message_and_what_the_line_is(raw: Any, message: str) -> None:
    """A tree holds many messages: the error names the one at fault (its field alone left the user to search the
    line), and a line of the message-list export is said to be one, not just 'missing prompt'."""
    with pytest.raises(RecordError) as e:
        convert(raw)
    assert message in str(e.value)


def test_oasst_negative_top_k_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="top_k_reply"):
        get_adapter("oasst1").Options(top_k_reply=-1)


# -- reference: open-instruct's recursive walk, restated independently -------------------------

def reference_walk(tree_: dict[str, Any], top_k: int | None) -> list[list[str]]:
    out: list[list[str]] = []

    def quality(n: dict[str, Any]) -> float:
        return ((n.get("labels") or {}).get("quality") or {}).get("value", 0.0)

    def visit(n: dict[str, Any], path: list[str]) -> None:
        if n.get("deleted"):
            return
        path = path + [n["text"]]
        replies = n.get("replies") or []
        if n["role"] == "assistant" and not replies:
            out.append(path)
            return
        alive = [c for c in replies if not c.get("deleted")]
        if top_k is not None:
            alive = sorted(alive, key=quality, reverse=True)[:top_k]
        for child in alive:
            visit(child, path)

    visit(tree_["prompt"], [])
    return out


@st.composite
def trees(draw: st.DrawFn, role: str = "prompter", depth: int = 0) -> dict[str, Any]:
    child_role = "assistant" if role == "prompter" else "prompter"
    n_children = draw(st.integers(0, 3 if depth < 4 else 0))
    children = [draw(trees(child_role, depth + 1)) for _ in range(n_children)]
    quality = draw(st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])))
    return node(role, f"{role}{next(_ids)}", *children, quality=quality,
                deleted=depth > 0 and draw(st.integers(0, 4)) == 0,
                labels=draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(root=trees(), top_k=st.sampled_from([0, 1, 2]))
def test_oasst_walk_matches_open_instruct_semantics_on_random_trees(root: dict[str, Any], top_k: int) -> None:
    expected = reference_walk(tree(root), None if top_k == 0 else top_k)
    got = [texts(r) for r in convert(tree(root), top_k_reply=top_k) if not isinstance(r, Dropped)]
    assert got == expected


# -- the bundled sample export -----------------------------------------------------------------

def read_sample(path: Path, top_k: int = 1) -> list[Any]:
    a = adapter(top_k)
    return [out for item in a.read_file(path) for out in a.convert(item.value, item.location)]


def test_oasst_sample_file_end_to_end() -> None:
    out = read_sample(SAMPLE)
    records = [r for r in out if not isinstance(r, Dropped)]
    dropped = [r for r in out if isinstance(r, Dropped)]
    assert len(records) == 8 and len(dropped) == 2
    assert {d.reason for d in dropped} == {"no_assistant_leaf"}
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids) and all(i.startswith("oasst1_") for i in ids)
    for r in records:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    # the deleted best reply in the German tree is skipped; the tied Russian replies keep file order
    german = next(r for r in records if "Ei kochen" in r["messages"][0]["content"])
    assert "6 Minuten" in german["messages"][1]["content"]
    russian = next(r for r in records if "serendipity" in r["messages"][0]["content"])
    assert russian["messages"][1]["content"].startswith("Точного")
    with open(SAMPLE, encoding="utf-8") as f:
        trees_ = [json.loads(line) for line in f]
    for t, top_k in itertools.product(trees_, (1, 2, None)):
        got = [texts(r) for r in adapter(top_k or 0).convert(t, LOC) if not isinstance(r, Dropped)]
        assert got == reference_walk(t, top_k)


def test_oasst_reads_gzipped_export(tmp_path: Path) -> None:
    gz = tmp_path / "2023-04-12_oasst_ready.trees.jsonl.gz"
    with open(SAMPLE, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert read_sample(gz) == read_sample(SAMPLE)
