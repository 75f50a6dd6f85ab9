"""Orca's system messages are the published ones (Mukherjee et al. 2023, Table 2), and the default draw is the
documented subset of them, unchanged from earlier runs (so Orca outputs keep their bytes)."""

from __future__ import annotations

from mixer.generate.synth import load_system_messages
from mixer.generate.texts import ORCA_DEFAULT_IDS, ORCA_SYSTEM_MESSAGES, ORCA_TABLE2_SYSTEM_MESSAGES


def test_table2_has_its_sixteen_messages_with_id_1_empty() -> None:
    assert sorted(ORCA_TABLE2_SYSTEM_MESSAGES) == list(range(1, 17))
    assert ORCA_TABLE2_SYSTEM_MESSAGES[1] == ""
    assert all(ORCA_TABLE2_SYSTEM_MESSAGES[i] for i in range(2, 17))
    assert len(set(ORCA_TABLE2_SYSTEM_MESSAGES.values())) == 16


def test_table2_messages_keep_the_papers_wording() -> None:
    t = ORCA_TABLE2_SYSTEM_MESSAGES
    assert t[7] == ("You are an AI assistant. User will you give you a task. Your goal is to complete the task as "
                    "faithfully as you can. While performing the task think step-by-step and justify your steps.")
    assert t[3] == "You are an AI assistant. You will be given a task. You must generate a detailed and long answer."
    assert t[4] == ("You are a helpful assistant, who always provide explanation. Think like you are answering to a "
                    "five year old.")
    assert t[16] == "You are an AI assistant that helps people find information."
    assert t[2] == ("You are an AI assistant. Provide a detailed answer so user don\u2019t need to search outside to "
                    "understand the answer.")
    assert t[15].startswith("Given a definition of a task and a sample input, break the definition into small parts.")
    assert "\nPart #: a key part of the definition.\nUsage: " in t[15]


def test_default_draw_is_the_documented_subset_in_its_order() -> None:
    assert ORCA_DEFAULT_IDS == (7, 11, 12, 13, 4, 3)
    assert ORCA_SYSTEM_MESSAGES == tuple(ORCA_TABLE2_SYSTEM_MESSAGES[i] for i in ORCA_DEFAULT_IDS)
    assert load_system_messages(None) == list(ORCA_SYSTEM_MESSAGES)
