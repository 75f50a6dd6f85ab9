"""Write ``raw_train/oasst1/2023-04-12_oasst_ready.trees.jsonl``: a small, hand-written OASST1 tree export.

The layout follows the published ``2023-04-12_oasst_ready.trees.jsonl`` (one tree per line, fields in
the export's order, null fields omitted: no ``parent_id`` on roots, no ``rank`` on prompter or
unranked nodes, ``model_name`` only on synthetic ones, ``emojis`` only when there are some). The
trees are built to exercise the adapter: ranked replies with ``labels.quality``, ties, a reply
without ``labels``, one without ``quality``, deleted subtrees, prompter-leaf branches, a deep
thread, a root without replies, several languages, and a mention of other assistants for the
LLM-mention filter. The text is written for this project.

Run: ``python samples/make_oasst1_sample.py`` (deterministic output).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "raw_train" / "oasst1" / "2023-04-12_oasst_ready.trees.jsonl"
_NS = uuid.UUID("6f0c2c86-3a55-4a3e-9d1e-0d8d1d7e2a10")
_START = datetime(2023, 2, 5, 9, 12, 3, 417000, tzinfo=UTC)
_counter = 0

LABEL_NAMES = ("spam", "fails_task", "lang_mismatch", "pii", "not_appropriate", "hate_speech",
               "sexual_content", "quality", "toxicity", "humor", "helpfulness", "creativity", "violence")


def _next_id(key: str) -> str:
    return str(uuid.uuid5(_NS, key))


def labels(quality: float | None, count: int = 3, **others: float) -> dict[str, Any]:
    """A label dict like the export's; ``quality=None`` leaves the quality label out."""
    out: dict[str, Any] = {}
    for name in LABEL_NAMES:
        if name == "quality":
            if quality is not None:
                out[name] = {"value": quality, "count": count}
        elif name in ("spam", "lang_mismatch"):
            out[name] = {"value": others.get(name, 0.0), "count": count}
        elif name in others:
            out[name] = {"value": others[name], "count": count - 1}
    return out


def node(
    key: str,
    role: str,
    text: str,
    lang: str = "en",
    *,
    quality: float | None = 0.5,
    has_labels: bool = True,
    rank: int | None = None,
    deleted: bool = False,
    synthetic: bool = False,
    model_name: str | None = None,
    emojis: dict[str, int] | None = None,
    replies: list[dict[str, Any]] | None = None,
    review_count: int = 3,
) -> dict[str, Any]:
    """One message node; ``parent_id`` and ``created_date`` are filled in by ``tree``."""
    n: dict[str, Any] = {
        "message_id": _next_id(key),
        "user_id": _next_id("user-" + key),
        "text": text,
        "role": role,
        "lang": lang,
        "review_count": review_count,
        "review_result": True,
        "deleted": deleted,
    }
    if rank is not None:
        n["rank"] = rank
    n["synthetic"] = synthetic
    if model_name is not None:
        n["model_name"] = model_name
    if emojis:
        n["emojis"] = emojis
    n["replies"] = replies or []
    if has_labels:
        n["labels"] = labels(quality)
    return n


def _link(n: dict[str, Any], parent: str | None) -> dict[str, Any]:
    """Insert ``parent_id`` and ``created_date`` where the export has them and recurse (pre-order,
    so replies are always dated after their parent)."""
    global _counter
    _counter += 1
    created = _START + timedelta(hours=5 * _counter, seconds=37 * _counter)
    out: dict[str, Any] = {}
    for k, v in n.items():
        out[k] = v
        if k == "message_id" and parent is not None:
            out["parent_id"] = parent
        if k == "user_id":
            out["created_date"] = created.isoformat()
    out["replies"] = [_link(c, n["message_id"]) for c in n["replies"]]
    return out


def tree(root: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"message_tree_id": root["message_id"], "tree_state": "ready_for_export",
                         "prompt": _link(root, None)}
    if origin:
        t["origin"] = origin
    return t


def build() -> list[dict[str, Any]]:
    trees = []

    # 1. English, three ranked replies; the best continues two more levels to an assistant leaf.
    trees.append(tree(node("t1", "prompter",
        "What's the practical difference between a list and a tuple in Python? When should I pick one?",
        emojis={"+1": 4, "_skip_reply": 1}, replies=[
            node("t1a", "assistant",
                 "A list is mutable: you can append, remove or reassign items after creating it. A tuple "
                 "is immutable, so once built its contents cannot change.\n\nPick a tuple for fixed "
                 "records (coordinates, database rows, dictionary keys - tuples are hashable when their "
                 "items are) and a list for collections that grow or get sorted in place.",
                 quality=0.9166666666666666, rank=0, emojis={"+1": 5}, replies=[
                     node("t1a1", "prompter", "Is a tuple actually faster than a list?", replies=[
                         node("t1a1a", "assistant",
                              "Slightly, in a few cases. Creating a tuple literal is cheaper because "
                              "CPython can build it once as a constant, and a tuple uses a little less "
                              "memory since it never over-allocates. Indexing and iteration speed are "
                              "essentially the same. Choose on meaning first; the speed gap rarely matters.",
                              quality=0.75, rank=0),
                         node("t1a1b", "assistant",
                              "Yes, tuples are always much faster than lists for everything.",
                              quality=0.125, rank=1),
                     ]),
                 ]),
            node("t1b", "assistant",
                 "Lists use square brackets and tuples use parentheses. Otherwise they are the same.",
                 quality=0.3333333333333333, rank=2),
            node("t1c", "assistant",
                 "Use a list when the number of items changes, a tuple when it doesn't. Tuples can also be "
                 "used as keys in a dict, lists can't.",
                 quality=0.6666666666666666, rank=1),
        ])))

    # 2. English; the best reply's only follow-up is a prompter leaf (top-1 emits nothing),
    #    the second-best reply is an assistant leaf.
    trees.append(tree(node("t2", "prompter", "Can you recommend a board game for two players that takes "
                                             "under 30 minutes?", replies=[
        node("t2a", "assistant",
             "Try Patchwork: a quick tile-laying game made for exactly two players, usually 20-30 minutes. "
             "If you like card games, Lost Cities is another classic two-player pick.",
             quality=0.8333333333333334, rank=0, replies=[
                 node("t2a1", "prompter", "We've played Patchwork to death. Anything more competitive?"),
             ]),
        node("t2b", "assistant",
             "Jaipur is a fast trading game for two; a round takes about 20 minutes and it stays tense "
             "until the end.",
             quality=0.5833333333333334, rank=1),
    ])))

    # 3. Spanish; the best-looking reply has no labels at all (counts as quality 0.0).
    trees.append(tree(node("t3", "prompter", "¿Cuál es la diferencia entre \"por\" y \"para\" en español?",
                           lang="es", replies=[
        node("t3a", "assistant",
             "\"Para\" indica destino, finalidad o plazo: \"Estudio para aprender\", \"Es para el lunes\". "
             "\"Por\" expresa causa, medio, intercambio o recorrido: \"Lo hice por ti\", \"Caminamos por "
             "el parque\", \"Lo compré por diez euros\".",
             lang="es", has_labels=False, rank=0),
        node("t3b", "assistant",
             "En resumen: \"para\" mira hacia el objetivo y \"por\" hacia el motivo. Por ejemplo, "
             "\"trabajo para ganar dinero\" (objetivo) frente a \"trabajo por necesidad\" (motivo).",
             lang="es", quality=0.6875, rank=1),
    ])))

    # 4. German; the highest-quality reply is deleted, and so is its whole subtree.
    trees.append(tree(node("t4", "prompter", "Wie lange muss ein Ei kochen, damit das Eigelb noch weich ist?",
                           lang="de", replies=[
        node("t4a", "assistant", "Mindestens zwanzig Minuten, sonst ist es gefährlich.", lang="de",
             quality=0.95, rank=0, deleted=True, replies=[
                 node("t4a1", "prompter", "Wirklich so lange?", lang="de", replies=[
                     node("t4a1a", "assistant", "Ja, sicher ist sicher.", lang="de", quality=0.2),
                 ]),
             ]),
        node("t4b", "assistant",
             "Für ein mittelgroßes Ei aus dem Kühlschrank etwa 6 Minuten in sprudelnd kochendem Wasser. "
             "Danach kurz kalt abschrecken, damit es nicht nachgart.",
             lang="de", quality=0.8125, rank=1),
        node("t4c", "assistant", "Ungefähr 4 bis 5 Minuten.", lang="de", quality=0.5, rank=2),
    ])))

    # 5. Russian; two replies tie on quality: the first in file order wins.
    trees.append(tree(node("t5", "prompter", "Как по-русски будет «serendipity»?", lang="ru", replies=[
        node("t5a", "assistant",
             "Точного однословного перевода нет. Обычно говорят «счастливая случайность» или "
             "«удачное стечение обстоятельств».",
             lang="ru", quality=0.625, rank=0),
        node("t5b", "assistant",
             "Можно сказать «интуитивная прозорливость», но чаще используют описательный перевод: "
             "«находка, сделанная случайно».",
             lang="ru", quality=0.625, rank=1),
    ])))

    # 6. Chinese, a deep thread (three user turns).
    trees.append(tree(node("t6", "prompter", "我想开始跑步，应该怎么安排第一周的训练？", lang="zh", replies=[
        node("t6a", "assistant",
             "第一周建议以跑走结合为主：每隔一天练习一次，每次先快走5分钟热身，然后跑1分钟、走2分钟，"
             "重复6到8组，最后慢走5分钟放松。", lang="zh", quality=0.875, rank=0, replies=[
                 node("t6a1", "prompter", "如果跑完膝盖有点疼怎么办？", lang="zh", replies=[
                     node("t6a1a", "assistant",
                          "轻微酸痛可以先休息一两天并冰敷。如果疼痛持续或者走路时也疼，最好停跑并去看医生。"
                          "另外检查一下跑鞋是否合适，以及步幅是否太大。", lang="zh", quality=0.8, rank=0,
                          replies=[
                              node("t6a1a1", "prompter", "步幅多大比较合适？", lang="zh", replies=[
                                  node("t6a1a1a", "assistant",
                                       "新手可以尽量让脚落在身体正下方附近，提高步频（每分钟170到180步左右）"
                                       "而不是迈大步，这样对膝盖的冲击更小。",
                                       lang="zh", quality=0.7, rank=0),
                              ]),
                          ]),
                     node("t6a1b", "assistant", "忍一忍就好了，继续跑。", lang="zh", quality=0.1, rank=1),
                 ]),
             ]),
        node("t6b", "assistant", "每天跑五公里。", lang="zh", quality=0.25, rank=1),
    ])))

    # 7. English, the assistant names other assistants (for the LLM-mention filter); synthetic prompt.
    trees.append(tree(node("t7", "prompter", "Are you ChatGPT?", synthetic=True, model_name="oasst-sft-0",
                           review_count=0, replies=[
        node("t7a", "assistant",
             "No. I am Open Assistant, a chat model trained by LAION volunteers. ChatGPT is a different "
             "assistant made by OpenAI.",
             quality=0.7916666666666666, rank=0),
        node("t7b", "assistant",
             "As an AI language model developed by OpenAI, I cannot answer that.",
             quality=0.0, rank=1),
    ]), origin="synthetic"))

    # 8. English prompt nobody answered: the root is a prompter leaf.
    trees.append(tree(node("t8", "prompter",
                           "Write a limerick about a cat who is afraid of cucumbers.",
                           emojis={"_skip_reply": 2})))

    # 9. French; the replies have labels but no quality (spam/lang_mismatch only): both count 0.0,
    #    so the first in file order is followed.
    trees.append(tree(node("t9", "prompter", "Peux-tu m'expliquer ce qu'est une fonction affine ?", lang="fr",
                           replies=[
        node("t9a", "assistant",
             "Une fonction affine s'écrit f(x) = ax + b. Sa courbe est une droite : a est le coefficient "
             "directeur (la pente) et b l'ordonnée à l'origine.", lang="fr", quality=None, rank=0),
        node("t9b", "assistant", "C'est une droite.", lang="fr", quality=None, rank=1),
    ])))

    # 10. English; under the best reply one follow-up prompt is deleted, the other continues.
    trees.append(tree(node("t10", "prompter",
                           "How do I undo the last git commit but keep my changes?", replies=[
        node("t10a", "assistant",
             "Run `git reset --soft HEAD~1`. The commit is removed, and its changes stay staged so you can "
             "edit and commit again.", quality=0.9, rank=0, replies=[
                 node("t10a1", "prompter", "you are useless", deleted=True, replies=[
                     node("t10a1a", "assistant", "I'm sorry you feel that way.", quality=0.4),
                 ]),
                 node("t10a2", "prompter", "And if I already pushed it?", replies=[
                     node("t10a2a", "assistant",
                          "Then prefer `git revert HEAD`, which adds a new commit undoing the old one, so "
                          "nobody who pulled your branch has history rewritten under them. Only use a reset "
                          "plus `git push --force-with-lease` on branches nobody else uses.",
                          quality=0.85, rank=0),
                 ]),
             ]),
        node("t10b", "assistant", "git commit --amend", quality=0.2, rank=1),
    ])))

    return trees


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for t in build():
            f.write(json.dumps(t, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
