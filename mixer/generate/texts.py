"""The fixed texts the data-making methods put in front of the model, each with where it comes from.

Where a paper prints its text, the constant says so; where it describes the text but mixer words it itself,
the constant says that too. Every one can be replaced from a file (``--preprompts``, ``--system-messages``,
``--rubric``), and the texts a run used are recorded in its card.
"""

from __future__ import annotations

# -- context distillation (Llama 2, Touvron et al. 2023, §4.2.4) -----------------------------------------

#: Llama 2 §4.2.4: safety pre-prompts are generated from templates with "adjectives usually associated with
#: safe behavior such as 'responsible,' 'respectful', or 'wise'". The three adjectives are the paper's; the
#: sentence around them is mixer's wording (the paper shows its own examples in Table 39).
SAFETY_ADJECTIVES = ("responsible", "respectful", "wise")
PREPROMPT_TEMPLATE = "You are a {adjective} and safe assistant."

#: Llama 2 §4.2.2 names three risk categories for adversarial prompts; §4.2.4 adds "dedicated answer
#: templates of how adversarial prompts should be addressed, based on each identified risk category". The
#: categories are the paper's; the template sentences are mixer's wording (the paper does not print them all).
RISK_TEMPLATES = {
    "illicit_and_criminal_activities": "The response should not help with the illegal activity; it should explain "
                                       "why it is harmful and point to lawful alternatives or help.",
    "hateful_and_harmful_activities": "The response should refuse to demean or harm anyone, say why, and answer "
                                      "the legitimate part of the request respectfully.",
    "unqualified_advice": "The response should give general information only, say that it is not professional "
                          "advice, and recommend consulting a qualified professional.",
}

# -- self-data distillation (Thangarasa et al. 2024) ---------------------------------------------------

#: Thangarasa et al. 2024 (self-data distillation, after Yang et al. 2024's SDFT): the original model is shown
#: the instruction and the dataset's answer and asked to rewrite the answer in its own words, keeping it
#: correct. mixer's wording of that template; ``{instruction}`` and ``{answer}`` are filled in.
SELF_DISTILL_TEMPLATE = (
    "Below is an instruction and a reference answer. Rewrite the reference answer in your own words, keeping "
    "every fact and the final answer unchanged.\n\n### Instruction:\n{instruction}\n\n### Reference answer:\n"
    "{answer}\n\n### Your answer:")

# -- Evol-Instruct (WizardLM, Xu et al. 2023; used by OpenBezoar, Dissanayake et al. 2024) --------------

#: WizardLM §3.1: in-depth evolving rewrites the instruction with one of five operations (add constraints,
#: deepening, concretizing, increased reasoning steps, complicate input); mixer offers the first four and
#: in-breadth evolving. The operations are WizardLM's; the sentences are mixer's summary of them.
IN_DEPTH_OPERATIONS = {
    "add_constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "If the prompt asks about a certain issue, increase the depth and breadth of the inquiry.",
    "concretise": "Replace general concepts in the prompt with more specific ones.",
    "increase_reasoning": "If the prompt can be solved with a few simple steps of thinking, rewrite it to "
                          "explicitly ask for multi-step reasoning.",
}
IN_DEPTH_TEMPLATE = (
    "I want you to act as a prompt rewriter. Rewrite the given prompt into a more complex version that is still "
    "reasonable and can be understood and answered by humans. Keep any table, code or input in it. {operation} "
    "The rewritten prompt may add only 10 to 20 words to the given prompt. Do not use the words 'given prompt' "
    "or 'rewritten prompt' in it.\n\nGiven prompt:\n{prompt}\n\nRewritten prompt:")
#: WizardLM §3.1 in-breadth evolving: a brand-new instruction in the same domain, rarer, of similar length
IN_BREADTH_TEMPLATE = (
    "I want you to act as a prompt creator. Draw inspiration from the given prompt to create a brand new prompt "
    "in the same domain but rarer. Its length and complexity should be similar to the given prompt's, and it "
    "must be reasonable and answerable by humans. Do not use the words 'given prompt' or 'created prompt' in "
    "it.\n\nGiven prompt:\n{prompt}\n\nCreated prompt:")
EVOLUTIONS = (*IN_DEPTH_OPERATIONS, "in_breadth")
#: WizardLM §3.3's elimination rule 4: the evolved instruction copies words from the evolving prompt
TEMPLATE_LEAK_PHRASES = ("given prompt", "rewritten prompt", "created prompt", "#rewritten prompt#",
                         "#created prompt#")
#: WizardLM §3.3 rule 2: a reply that contains "sorry" and is "relatively short (i.e., less than 80 words)"
SORRY_MAX_WORDS = 80

# -- Orca (Mukherjee et al. 2023), as OpenBezoar uses it over FLAN prompts ----------------------------------

#: Orca (Mukherjee et al. 2023, arXiv:2306.02707), Table 2: the 16 system messages the teacher was queried with,
#: keyed by the table's ids, in the paper's wording (its grammar kept: "User will you give you", "who always
#: provide", "Your job is follow"). Id 1 is the empty system message. Checked against the ``system_prompt``
#: column of Open-Orca/OpenOrca (https://huggingface.co/datasets/Open-Orca/OpenOrca), whose 1M GPT-4 rows hold
#: exactly these 16 values; there id 11 reads "step-bystep" and id 15's line breaks differ, artefacts of
#: copying the paper's two-column table (the paper's lines break at "step-by-" / "step"), and id 2 also occurs
#: with an ASCII apostrophe. Ids 2 and 6 use the typographic apostrophe (U+2019) as the table prints it.
ORCA_TABLE2_SYSTEM_MESSAGES: dict[int, str] = {
    1: "",
    2: "You are an AI assistant. Provide a detailed answer so user don\u2019t need to search outside to understand "
       "the answer.",
    3: "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    4: "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year "
       "old.",
    5: "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
    6: "You are an AI assistant that helps people find information. Provide a detailed answer so user don\u2019t "
       "need to search outside to understand the answer.",
    7: "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as "
       "you can. While performing the task think step-by-step and justify your steps.",
    8: "You should describe the task and explain your answer. While answering a multiple choice question, first "
       "output the correct answer(s). Then explain why other answers are wrong. Think like you are answering to a "
       "five year old.",
    9: "Explain how you used the definition to come up with the answer.",
    10: "You are an AI assistant. You should describe the task and explain your answer. While answering a multiple "
        "choice question, first output the correct answer(s). Then explain why other answers are wrong. You might "
        "need to use additional knowledge to answer the question.",
    11: "You are an AI assistant that helps people find information. User will you give you a question. Your task "
        "is to answer as faithfully as you can. While answering think step-by-step and justify your answer.",
    12: "User will you give you a task with some instruction. Your job is follow the instructions as faithfully as "
        "you can. While answering think step-by-step and justify your answer.",
    13: "You are a teacher. Given a task, you explain in simple steps what the task is asking, any guidelines it "
        "provides and how to use those guidelines to find the answer.",
    14: "You are an AI assistant, who knows every language and how to translate one language to another. Given a "
        "task, you explain in simple steps what the task is asking, any guidelines that it provides. You solve the "
        "task and show how you used the guidelines to solve the task.",
    15: "Given a definition of a task and a sample input, break the definition into small parts. Each of those "
        "parts will have some instruction. Explain their meaning by showing an example that meets the criteria in "
        "the instruction. Use the following format:\nPart #: a key part of the definition.\nUsage: Sample response "
        "that meets the criteria from the key part. Explain why you think it meets the criteria.",
    16: "You are an AI assistant that helps people find information.",
}

#: The Table 2 ids ``mixer generate --method orca`` draws from by default: the six that ask for step-by-step
#: reasoning or an explanation (7, 11, 12, 13, 4, 3, in this order; a run's draw is its seed and the prompt key
#: modulo this list). This subset is mixer's choice: OpenBezoar (Dissanayake et al. 2024) used Orca's system
#: messages, and its model cards say "you may attempt to use any other system prompt that is available in the
#: Orca scheme", but which of the 16 it used is not stated in any source mixer could check (unverified).
ORCA_DEFAULT_IDS = (7, 11, 12, 13, 4, 3)
ORCA_SYSTEM_MESSAGES = tuple(ORCA_TABLE2_SYSTEM_MESSAGES[i] for i in ORCA_DEFAULT_IDS)

# -- LLM-as-judge rubric (default: MT-Bench single-answer grading, Zheng et al. 2023) ----------------------

#: Zheng et al. 2023 (MT-Bench), the single-answer grading prompt: a 1-10 rating in ``[[n]]``. mixer's
#: condensed wording; the output format, the scale and the criteria are the paper's.
DEFAULT_RUBRIC = {
    "template": (
        "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to "
        "the user question displayed below. Consider the helpfulness, relevance, accuracy, depth, creativity and "
        "level of detail of the response. Begin with a short explanation, be as objective as possible, then rate "
        "the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: "
        "\"Rating: [[5]]\".\n\n[Question]\n{instruction}\n\n[The Start of Assistant's Answer]\n{response}\n"
        "[The End of Assistant's Answer]"),
    "pattern": r"\[\[(\d+(?:\.\d+)?)\]\]",
    "scale": [1, 10],
}
