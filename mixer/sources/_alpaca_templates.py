"""Weighted prompt templates for instruction/input/output records (Alpaca style).

Source: allenai/open-instruct ``scripts/data/sft_v1_v2/reformat_datasets.py`` (the same lists live in
``open_instruct/instruction_encode_templates.py``), ``encoding_templates_w_input`` and
``encoding_templates_wo_input``: (prompt template, completion template, weight). Tulu V2 wraps GPT-4
Alpaca and Code Alpaca with one template drawn per record. The strings are kept exactly as published,
including the "Plase" typo, because the mixture's prompts contain them.
"""

from __future__ import annotations

import random

#: (prompt template, completion template, weight) for records with a non-empty input
TEMPLATES_WITH_INPUT: tuple[tuple[str, str, float], ...] = (
    ("{instruction}\n\n{input}\n\n", "{output}", 0.2),
    ("{instruction}\n{input}\n\n", "{output}", 0.1),
    ("{instruction}\n{input}\n", "{output}", 0.1),
    ("{instruction}\n\nInput: {input}\n\nOutput:", "{output}", 0.05),
    ("{instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("{instruction}\n{input}\n\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAdditional Context:\n{input}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\n", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("{instruction}\n\nNow complete the following instance -\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Instruction:{instruction}\n\nInput: {input}\n\n", "{output}", 0.05),
    (
        "Below is an instruction that describes a task, paired with an input that provides further context."
        " Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:",
        "{output}",
        0.1,
    ),  # the Alpaca template
)

#: (prompt template, completion template, weight) for records without input
TEMPLATES_WITHOUT_INPUT: tuple[tuple[str, str, float], ...] = (
    ("{instruction}\n\n", "{output}", 0.2),
    ("{instruction}\n", "{output}", 0.1),
    ("{instruction}", "\n{output}", 0.1),
    ("{instruction} Output:", "{output}", 0.05),
    ("{instruction}\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\n\n", "{output}", 0.05),
    ("Instruction: {instruction}\n", "{output}", 0.05),
    ("Instruction: {instruction}\nOutput:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n", "{output}", 0.05),
    ("Can you help with this?\n\n{instruction}\n", "{output}", 0.05),
    ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05),
    ("Tell me how would you respond to the following request.\n{instruction}\n", "{output}", 0.05),
    (
        "Write a response that appropriately completes the request."
        "\n\n### Instruction:\n{instruction}\n\n### Response:",
        "{output}",
        0.1,
    ),  # the Alpaca template
)


def has_input(input_text: str) -> bool:
    """open-instruct's test: an input counts when it is not blank (so ``"< noinput >"`` counts)."""
    return input_text.strip() != ""


def render_tulu(instruction: str, input_text: str, output: str, rng: random.Random) -> tuple[str, str]:
    """(prompt, completion) as open-instruct's ``encode_instruction_example(random_template=True)``.

    The fields are stripped before formatting, as there; one weighted draw from ``rng`` picks the
    template, from the with-input list when the input is not blank.
    """
    templates = TEMPLATES_WITH_INPUT if has_input(input_text) else TEMPLATES_WITHOUT_INPUT
    prompt_t, completion_t, _ = rng.choices(templates, weights=[w for _, _, w in templates])[0]
    prompt = prompt_t.format(instruction=instruction.strip(), input=input_text.strip())
    return prompt, completion_t.format(output=output.strip())


def render_plain(instruction: str, input_text: str, output: str) -> tuple[str, str]:
    """(prompt, completion) without any template: the instruction, then the input after a blank line."""
    prompt = instruction + ("\n\n" + input_text if has_input(input_text) else "")
    return prompt, output
