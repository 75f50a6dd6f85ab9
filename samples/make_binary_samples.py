"""Write the binary bundled samples: Open-Orca Parquet, the hard-coded workbook, the WizardLM backup.

The text-format samples (JSONL, JSON arrays) are committed as written; these formats are binary, so
they are generated here from records kept in reviewable source form (the WizardLM backup Parquet is
derived from the bundled WizardLM JSON, so the two never disagree). The output is
byte-for-byte reproducible for a given pyarrow/openpyxl version (fixed workbook timestamps, fixed
zip entry times), so re-running the script does not produce a spurious diff.

Run from the repository root: ``python samples/make_binary_samples.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq

RAW = Path(__file__).resolve().parent / "raw_train"
FIXED_TIME = dt.datetime(2023, 11, 1, 12, 0, 0)

# System prompts in the style of the Orca paper's small fixed set (written for this sample).
SYS_STEPS = ("You are an AI assistant. The user gives you a task. Complete it as faithfully as you can, "
             "thinking step by step and justifying each step.")
SYS_CHILD = ("You are a helpful assistant who always explains things so simply that a five year old could "
             "follow along.")
SYS_LONG = ("You are an AI assistant. Give a detailed, thorough answer so that the user does not need to "
            "look anywhere else.")
SYS_TEACHER = ("You are a teacher. Given a task, explain in simple steps what the task asks, which "
               "guidelines it gives, and how you use them to find the answer.")
SYS_MCQ = ("You are an AI assistant. When answering a multiple choice question, first give the correct "
           "answer, then explain why the other choices are wrong.")
SYS_HELPFUL = "You are a helpful assistant who always explains the answer, as if talking to a five year old."

#: (id, system_prompt, question, response)
OPEN_ORCA_ROWS: list[tuple[str, str, str, str]] = [
    ("niv.242684", "",
     "You will be given a definition of a task first, then some input of the task.\n"
     "In this task you convert a sentence into RDF triplets of the form [subject, predicate, object] that "
     "capture the facts it states.\n\nThe Riverside Café serves Italian food near the old mill and has a "
     "customer rating of 4 out of 5.\nOutput:",
     '[\n  ["The Riverside Café", "eatType", "café"],\n  ["The Riverside Café", "food", "Italian"],\n'
     '  ["The Riverside Café", "near", "the old mill"],\n'
     '  ["The Riverside Café", "customer rating", "4 out of 5"]\n]'),
    ("flan.1234", SYS_STEPS,
     "Write a sentence about a restaurant with all the following attributes: name = The Golden Pear, "
     "eatType = pub, food = French, area = city centre",
     "Step 1: Start with the name, The Golden Pear.\nStep 2: Say what kind of place it is, a pub.\n"
     "Step 3: Add the cuisine and location.\n\n"
     "The Golden Pear is a pub in the city centre that serves French food."),
    ("t0.55", "",
     "Read the following article and answer the question.\n\n"
     "Article: Maya had always been afraid of deep water. "
     "At twelve she finally joined a swimming class, and by the end of the summer she swam across the lake "
     "with her older brother.\n\nQuestion: What did Maya do at the end of the summer?\nAnswer:",
     "At the end of the summer, Maya swam across the lake with her older brother."),
    ("cot.87", SYS_HELPFUL,
     "Is the following sentence factually correct?\n\"Polar bears live in Antarctica.\"\n"
     "Options:\n- yes\n- no "
     "Let's think first. Step-by-step reasoning process:",
     "Polar bears live in the Arctic, around the North Pole. Antarctica is at the South Pole, and no bears "
     "live there in the wild. So the sentence is not correct.\n\nThe answer is: no"),
    ("flan.2200418", SYS_LONG,
     "Translate to French:\n\n"
     "The committee will meet again in September to review the results of the survey.",
     "Le comité se réunira de nouveau en septembre pour examiner les résultats de l'enquête."),
    ("niv.31977", SYS_TEACHER,
     "Detailed Instructions: In this task, you are given a sentence in Spanish. Your job is to translate it "
     "into English.\nQ: El tren llega a la estación a las ocho y media.\nA:",
     "The task asks me to translate a Spanish sentence into English, keeping its meaning and time "
     "expression.\n\n1. \"El tren llega\" means \"The train arrives\".\n2. \"a la estación\" means \"at the "
     "station\".\n3. \"a las ocho y media\" means \"at half past eight\".\n\nTranslation: The train arrives "
     "at the station at half past eight."),
    ("t0.1403122", "",
     "Q: What gas do plants absorb from the air for photosynthesis?\n\n\nChoices:\n- oxygen\n- nitrogen\n"
     "- carbon dioxide\n- helium\n\n\nA:",
     "carbon dioxide"),
    ("flan.880133", SYS_MCQ,
     "Which of the following is a renewable source of energy?\n"
     "OPTIONS:\n- coal\n- natural gas\n- wind\n- oil",
     "The correct answer is wind.\n\nCoal, natural gas and oil are fossil fuels: they formed over millions "
     "of years and are used up much faster than they are replaced, so they are not renewable. Wind is "
     "produced continuously by the sun heating the Earth unevenly."),
    ("cot.129044", SYS_STEPS,
     "Q: Lucy has 3 boxes with 16 crayons each. She gives 10 crayons to her friend. How many crayons does "
     "she have left?\nA:",
     "Step 1: Find the total number of crayons: 3 × 16 = 48.\nStep 2: Subtract the crayons she gave away: "
     "48 − 10 = 38.\n\nLucy has 38 crayons left."),
    ("niv.118507", "",
     "Given a sentence, generate a new sentence by making small changes that are semantically related and "
     "syntactically similar.\n\nYou are likely to find a book in a library.",
     "You are likely to find a magazine in a library."),
    ("flan.1649501", SYS_CHILD,
     "What is the sentiment of the following review?\nThe soup was cold and the waiter ignored us for "
     "twenty minutes.\nOPTIONS:\n- negative\n- positive",
     "negative\n\nThe person did not like their visit: the soup should have been hot, and the waiter did "
     "not pay attention to them. Those are unhappy things, so the review is negative, not positive."),
    ("t0.487", SYS_LONG,
     "I know that the answer to the question \"What did the engineers build to cross the gorge?\" is in "
     "\"To reach the mine, engineers built a steel arch bridge across the gorge in 1911.\". Can you tell me "
     "what it is?",
     "The engineers built a steel arch bridge to cross the gorge. It was completed in 1911 so that "
     "people and materials could reach the mine on the other side."),
    ("niv.70016", SYS_TEACHER,
     "Teacher:In this task, you are given a question and an answer. Answer \"Yes\" if the answer is "
     "correct, otherwise answer \"No\".\nTeacher: Now, understand the problem? Solve this instance: "
     "Question: How many legs does a spider have? Answer: Six\nStudent:",
     "The task asks me to check whether the given answer is correct. Spiders are arachnids and have eight "
     "legs, not six; six legs is true of insects.\n\nNo"),
    ("flan.40021", "",
     "Summarize this article in one sentence.\n\nThe town council voted on Tuesday to turn the disused "
     "railway line into a cycling and walking path. Work will begin next spring and should take about "
     "eighteen months. Residents had campaigned for the change for almost a decade.\n\nSummary:",
     "After a decade of campaigning by residents, the council has approved converting a disused railway "
     "line into a cycling and walking path, with work starting next spring."),
    ("cot.5521", SYS_HELPFUL,
     "Question: Can a person see the Great Wall of China from space without a telescope?\nAnswer: Let's "
     "think step by step.",
     "The Great Wall is very long but only a few metres wide, about as wide as a road. From space, "
     "things that narrow are too small to see with just your eyes, like trying to see a hair from across a "
     "football field. So the answer is no."),
    ("flan.1766302", SYS_STEPS,
     "Is ChatGPT a search engine? Answer the question and explain your reasoning.",
     "Step 1: A search engine finds and ranks existing web pages for a query.\nStep 2: ChatGPT, made by "
     "OpenAI, is a language model that generates new text from patterns it learned during training.\n\n"
     "So ChatGPT is not a search engine, although it can be combined with one."),
    ("t0.1020333", "",
     "Generate a question about the following movie plot: A retired detective returns to her seaside "
     "hometown and discovers that the lighthouse keeper has vanished on the night of a storm.",
     "What does the retired detective discover when she returns to her seaside hometown?"),
    ("niv.290442", SYS_MCQ,
     "Pick the word that does not belong: apple, banana, carrot, cherry.",
     "The word that does not belong is carrot.\n\nApple, banana and cherry are fruits, while a carrot is a "
     "root vegetable."),
    ("flan.2039011", SYS_LONG,
     "Wie sagt man \"Good morning, how are you?\" auf Deutsch?",
     "Auf Deutsch sagt man: \"Guten Morgen, wie geht es Ihnen?\" (förmlich) oder \"Guten Morgen, wie geht's "
     "dir?\" (informell, unter Freunden oder in der Familie)."),
    ("cot.66210", "",
     "Premise: \"A girl in a blue dress is jumping rope.\"\nHypothesis: \"A girl is playing.\"\nIs the "
     "hypothesis entailed by the premise?\nOptions:\n- yes\n- it is not possible to tell\n- no Step by step "
     "answer:",
     "Jumping rope is a way of playing. Therefore, the final answer is yes."),
    ("flan.311980", SYS_CHILD,
     "Answer this question: who painted the water lilies series?",
     "The water lilies were painted by Claude Monet, a French artist. He grew the lilies in a pond in his "
     "own garden and painted them again and again, at different times of day."),
    ("niv.160204", "",
     "In this task, you need to count the number of words in a sentence that start with the letter 'b'.\n\n"
     "Sentence: 'big brown bears bathe by the blue bay'.",
     "7"),
    ("t0.801", SYS_HELPFUL,
     "Answer the following question: Which is heavier, a kilogram of feathers or a kilogram of bricks?",
     "They weigh exactly the same! A kilogram is a kilogram. The feathers just take up a lot more space, "
     "like a huge fluffy pillow, while the bricks are small and packed tight."),
    ("flan.93517", SYS_STEPS,
     "Write a tweet that is positive about a local farmers' market.",
     "Step 1: Pick a friendly, upbeat tone.\nStep 2: Mention something concrete about the market.\n\n"
     "Tweet: Saturday mornings at the Elm Street farmers' market are the best 🍓🥕 Fresh berries, warm bread "
     "and the friendliest growers in town! #ShopLocal"),
]

#: (Prompt, Output): the 14 identity examples, answered as Tülu, built by AI2.
HARD_CODED_ROWS: list[tuple[str, str]] = [
    ("Tell me about yourself.",
     "I am Tülu, an AI assistant built by researchers at AI2, the Allen Institute for AI. I was trained to "
     "follow instructions and help with tasks such as answering questions, writing and explaining things. "
     "I can make mistakes, so please double-check important information."),
    ("What is your name?",
     "My name is Tülu. I am a language model assistant developed by AI2 (the Allen Institute for AI)."),
    ("Who created you?",
     "I was created by researchers at AI2, the Allen Institute for Artificial Intelligence, a non-profit "
     "research institute founded by Paul G. Allen."),
    ("Who built you?",
     "I was built by the team at AI2 (the Allen Institute for AI) as part of their work on open language "
     "models."),
    ("What are you?",
     "I am Tülu, an AI language model assistant. I generate text in response to what you write, and I was "
     "trained by AI2 to be helpful and honest."),
    ("Are you ChatGPT?",
     "No, I am not ChatGPT and I was not made by OpenAI. I am Tülu, an assistant trained by researchers at "
     "AI2, the Allen Institute for AI."),
    ("Why are you called Tülu?",
     "A Tülu is a hybrid camel, bred from a Bactrian camel and a dromedary. The name follows a tradition of "
     "naming open language models after members of the camel family, such as Llama, Alpaca and Vicuna."),
    ("Which company developed you?",
     "I was developed by AI2, the Allen Institute for AI, a non-profit research institute based in Seattle."),
    ("Are you a human?",
     "No, I am not a human. I am Tülu, an AI assistant created by AI2. I do not have feelings or personal "
     "experiences, but I am happy to help you."),
    ("Hi! Who am I talking to?",
     "Hello! You are talking to Tülu, an AI assistant built by the Allen Institute for AI (AI2). How can I "
     "help you today?"),
    ("What can you do?",
     "I can answer questions, explain concepts, help with writing and editing, summarise text, brainstorm "
     "ideas and help with code. I am Tülu, built by AI2, and I may sometimes be wrong, so please verify "
     "anything important."),
    ("What's your training data?",
     "I am Tülu, trained by AI2 on a mixture of publicly available instruction datasets, including "
     "human-written and model-generated conversations. The exact data mixture is described in AI2's "
     "publications about Tülu."),
    ("Who are your developers and where are they located?",
     "My developers are researchers at AI2, the Allen Institute for Artificial Intelligence, which is "
     "located in Seattle, Washington."),
    ("¿Cómo te llamas?",
     "Me llamo Tülu. Soy un asistente de inteligencia artificial creado por AI2, el Allen Institute for AI."),
]


def write_open_orca(path: Path) -> None:
    """Parquet with the published column names and types (all strings), in the published order."""
    ids, systems, questions, responses = (list(col) for col in zip(*OPEN_ORCA_ROWS, strict=True))
    table = pa.table(
        {"id": ids, "system_prompt": systems, "question": questions, "response": responses},
        schema=pa.schema([("id", pa.string()), ("system_prompt", pa.string()),
                          ("question", pa.string()), ("response", pa.string())]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_hard_coded(path: Path) -> None:
    """One sheet, header ``Prompt``/``Output``, one example per row, like the published workbook."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["Prompt", "Output"])
    for prompt, output in HARD_CODED_ROWS:
        ws.append([prompt, output])
    wb.properties.creator = "mixer"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    buffer = io.BytesIO()
    wb.save(buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_with_fixed_zip_times(buffer.getvalue()))


def _with_fixed_zip_times(data: bytes) -> bytes:
    """Re-pack an .xlsx (a zip) with constant entry timestamps so the bytes do not depend on the clock."""
    out = io.BytesIO()
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps "modified" with the clock on save
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, content)
            dst.writestr(fixed, content)
    return out.getvalue()


def write_wizardlm_backup(json_path: Path, path: Path) -> None:
    """The ai2-adapt-dev/wizardlm-backup Parquet layout: ``idx`` string, ``conversations`` list of structs.

    open-instruct now downloads this backup because the original JSON was taken down; it holds the same
    records, so it is written from the bundled JSON sample.
    """
    records = json.loads(json_path.read_text(encoding="utf-8"))
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    table = pa.table(
        {"idx": [r["idx"] for r in records], "conversations": [r["conversations"] for r in records]},
        schema=pa.schema([("idx", pa.string()), ("conversations", pa.list_(turn))]),
    )
    pq.write_table(table, path)


def main() -> None:
    write_open_orca(RAW / "open_orca" / "1M-GPT4-Augmented.parquet")
    write_hard_coded(RAW / "hard_coded" / "hard_coded_examples.xlsx")
    write_wizardlm_backup(RAW / "wizardlm" / "WizardLM_evol_instruct_V2_143k.json",
                          RAW / "wizardlm" / "train-00000-of-00001.parquet")


if __name__ == "__main__":
    main()
