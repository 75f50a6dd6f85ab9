"""OpenAssistant OASST1 message trees (``2023-04-12_oasst_ready.trees.jsonl``), see SOURCES.md 2.3.

Each line is one tree: ``{"message_tree_id", "tree_state", "prompt": <node>}`` where a node has
``message_id``, ``role`` ("prompter" | "assistant"), ``text``, ``deleted``, ``labels`` and
``replies`` (child nodes). Null fields are omitted in the export, so every field is read with
``.get``.

The walk reproduces open-instruct's ``convert_oasst1_data`` (scripts/data/sft_v1_v2/
reformat_datasets.py, Tulu V2 uses ``top_k_reply=1``):

- a deleted node is skipped with its whole subtree; deleted children are removed *before* ranking;
- at every level (below prompter and assistant nodes alike) only the ``top_k_reply`` children with
  the highest ``labels.quality.value`` are followed (missing quality counts 0.0); open-instruct
  uses ``sorted(..., reverse=True)[:k]``, which is stable, so ties keep the file order;
- a conversation is emitted at every *assistant* leaf reached; a branch ending in a prompter leaf
  emits nothing. A leaf is a node whose ``replies`` list is empty in the file: an assistant node
  whose replies are all deleted is not a leaf and emits nothing, as in open-instruct (the
  ready-for-export file has no deleted nodes, so this only matters for other exports).

Deviations, on purpose: open-instruct numbers conversations with a running counter
(``oasst1_<n>``); we use the leaf's ``message_id`` (``oasst1_<message_id>``) so ids do not depend on
which trees were read before. A node without ``labels`` makes open-instruct raise ``KeyError``; we
treat it as quality 0.0. ``top_k_reply: 0`` means "follow every reply" (open-instruct's ``None``).
The walk is iterative, so very deep trees cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mixer.core.errors import Location, RecipeError, RecordError
from mixer.core.records import Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_str

#: OASST role -> canonical role
ROLE_MAP = {"prompter": "user", "assistant": "assistant"}


def reply_quality(node: dict[str, Any]) -> float:
    """``labels.quality.value``, 0.0 when labels or quality are absent (as open-instruct defaults)."""
    labels = node.get("labels") or {}
    quality = labels.get("quality") if isinstance(labels, dict) else None
    value = quality.get("value") if isinstance(quality, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _children(node: dict[str, Any]) -> list[Any]:
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        raise RecordError(
            f"message {node.get('message_id')!r}: field 'replies' must be a list, "
            f"found {type(replies).__name__}"
        )
    return replies


def best_replies(node: dict[str, Any], top_k: int) -> list[dict[str, Any]]:
    """The non-deleted replies to follow, best first; ``top_k <= 0`` keeps all in file order."""
    alive = []
    for i, child in enumerate(_children(node)):
        if not isinstance(child, dict):
            raise RecordError(f"message {node.get('message_id')!r}: replies[{i}] must be a JSON object, "
                              f"found {type(child).__name__}")
        alive.append(child)
    alive = [child for child in alive if not child.get("deleted", False)]
    if top_k <= 0:
        return alive
    # sorted() is stable, so equal qualities keep their file order, as in open-instruct
    return sorted(alive, key=reply_quality, reverse=True)[:top_k]


# A conversation prefix as a linked list (message, parent link): sharing prefixes keeps the walk
# linear in the tree size however deep it is; the list is materialised only at a leaf.
_Path = tuple[Message, "_Path"] | None


def _unroll(path: _Path) -> list[Message]:
    messages: list[Message] = []
    while path is not None:
        message, path = path
        messages.append(message)
    messages.reverse()
    return messages


def walk_tree(root: dict[str, Any], top_k: int) -> Iterator[tuple[str, list[Message]]]:
    """Yield ``(leaf message_id, messages)`` for every assistant leaf reached, in DFS order."""
    stack: list[tuple[dict[str, Any], _Path]] = [(root, None)]
    while stack:
        node, prefix = stack.pop()
        if node.get("deleted", False):
            continue
        role = node.get("role")
        if role not in ROLE_MAP:
            raise RecordError(
                f"message {node.get('message_id')!r}: field 'role' must be 'prompter' or "
                f"'assistant', found {role!r}"
            )
        try:
            text = require_str(node, "text")
        except RecordError as e:
            raise RecordError(f"message {node.get('message_id')!r}: {e}") from None
        path: _Path = (msg(ROLE_MAP[role], text), prefix)
        if role == "assistant" and not _children(node):
            yield str(node.get("message_id", "")), _unroll(path)
            continue
        # push in reverse so the best reply is walked first (open-instruct's recursion order)
        for child in reversed(best_replies(node, top_k)):
            stack.append((child, path))


@dataclass(frozen=True)
class Oasst1Options:
    #: follow only the k best replies (by labels.quality) at each level; 0 follows all replies
    top_k_reply: int = 1

    def __post_init__(self) -> None:
        if self.top_k_reply < 0:
            raise RecipeError(f"option top_k_reply must be >= 0 (0 = all replies), found {self.top_k_reply}")


@register
class Oasst1(Adapter):
    name = "oasst1"
    description = "OASST1 message trees JSONL (.jsonl or .jsonl.gz), one tree per line; best-reply paths"
    license = "Apache-2.0"
    Options = Oasst1Options

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        tree = require_dict(raw)
        if "prompt" not in tree:
            hint = ""
            if "message_id" in tree and "role" in tree:
                hint = ("; this line is one message, as in a message-list export (*.messages.jsonl): the "
                        "adapter reads the trees export, 2023-04-12_oasst_ready.trees.jsonl, one tree per line")
            raise RecordError(f"missing required field 'prompt' (fields present: {sorted(tree)}){hint}")
        if not isinstance(tree["prompt"], dict):
            raise RecordError(f"field 'prompt' (the tree's root message) must be a JSON object, "
                              f"found {type(tree['prompt']).__name__}")
        root = tree["prompt"]
        emitted = False
        for leaf_id, messages in walk_tree(root, self.options.top_k_reply):
            if not leaf_id:
                raise RecordError("an assistant leaf has no 'message_id'; cannot build a stable id")
            emitted = True
            yield make_record("oasst1", f"oasst1_{leaf_id}", messages)
        if not emitted:
            tree_id = tree.get("message_tree_id") or root.get("message_id") or location.record
            yield Dropped(
                reason="no_assistant_leaf",
                dataset="oasst1",
                id=f"oasst1_{tree_id}",
                detail="the followed branches end in prompter messages or deleted nodes",
            )
