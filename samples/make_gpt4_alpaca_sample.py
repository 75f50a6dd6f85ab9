"""Write ``raw_train/gpt4_alpaca/alpaca_gpt4_data.json``: hand-written records in the GPT-4-LLM format.

A JSON array of ``{"instruction", "input", "output"}`` (all strings, ``input`` is ``""`` when there is
none), written with ``json.dump(indent=4)`` like the Stanford Alpaca file it extends (believed, not
verified, for the GPT-4 file). It includes Markdown lists, an input that is only whitespace, a
refusal that names OpenAI (for the LLM-mention filter) and one record that ``code_alpaca`` repeats
verbatim (for cross-source deduplication). The text is written for this project.

Run: ``python samples/make_gpt4_alpaca_sample.py``.
"""

# ruff: noqa: E501  (record text is data; long literals read better unwrapped)
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "raw_train" / "gpt4_alpaca" / "alpaca_gpt4_data.json"

#: the record that code_alpaca_20k.json repeats exactly (see make_code_alpaca_sample.py)
SHARED_WITH_CODE_ALPACA = {
    "instruction": "Write a Python function that returns the sum of a list of numbers.",
    "input": "",
    "output": "def sum_list(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total",
}

RECORDS = [
    {"instruction": "Give three tips for keeping houseplants alive.", "input": "",
     "output": "1. Match the plant to the light: check whether it needs bright, indirect or low light and "
               "place it accordingly.\n2. Water only when the top few centimeters of soil are dry; "
               "overwatering kills more houseplants than underwatering.\n3. Use pots with drainage holes "
               "so excess water can escape and the roots do not rot."},
    {"instruction": "Rewrite the sentence in the passive voice.", "input": "The committee approved the new budget.",
     "output": "The new budget was approved by the committee."},
    {"instruction": "Classify the following animal as a mammal, bird, reptile, amphibian or fish.",
     "input": "Salamander", "output": "A salamander is an amphibian."},
    {"instruction": "Explain what a black hole is in simple terms.", "input": "",
     "output": "A black hole is a region of space where gravity is so strong that nothing, not even light, "
               "can escape from it. It forms when a very massive star collapses in on itself at the end of "
               "its life, squeezing a huge amount of matter into a tiny space."},
    {"instruction": "Generate a catchy slogan for a bicycle repair shop.", "input": "",
     "output": "\"We keep your wheels turning.\""},
    {"instruction": "Summarize the given paragraph in one sentence.",
     "input": "Honeybees communicate the location of food through a behavior called the waggle dance. A "
              "forager returning to the hive moves in a figure-eight pattern, and the angle of the straight "
              "run relative to vertical tells other bees the direction of the food relative to the sun, "
              "while the duration of the run indicates the distance.",
     "output": "Honeybees use the waggle dance, whose angle and duration encode direction and distance, to "
               "tell hive mates where food is."},
    {"instruction": "Find the odd one out.", "input": "Mercury, Venus, Moon, Mars",
     "output": "The Moon is the odd one out, because it is a natural satellite of Earth, while Mercury, Venus "
               "and Mars are planets."},
    {"instruction": "Describe your favorite book.", "input": "",
     "output": "As an AI language model developed by OpenAI, I don't have personal preferences or favorite "
               "books. However, I can tell you about books that many readers love, such as \"To Kill a "
               "Mockingbird\" by Harper Lee, which explores justice and empathy through a child's eyes."},
    {"instruction": "Convert the temperature from Celsius to Fahrenheit.", "input": "25 degrees Celsius",
     "output": "25 degrees Celsius is 77 degrees Fahrenheit (25 x 9/5 + 32 = 77)."},
    {"instruction": "List four renewable sources of energy.", "input": "  ",
     "output": "1. Solar energy\n2. Wind energy\n3. Hydroelectric power\n4. Geothermal energy"},
    {"instruction": "Write a short story opening that begins with the sentence provided.",
     "input": "The lighthouse had been dark for thirty years.",
     "output": "The lighthouse had been dark for thirty years. So when Mara saw a pale beam sweep across the "
               "bay on the night of the storm, she told herself it was lightning. But it came again, slow "
               "and steady, every twelve seconds, exactly as her grandfather had timed it."},
    {"instruction": "What is the capital of Canada?", "input": "",
     "output": "The capital of Canada is Ottawa, located in the province of Ontario."},
    {"instruction": "Compare and contrast cats and dogs as pets.", "input": "",
     "output": "Cats and dogs are both affectionate companions, but they differ in care needs. Dogs usually "
               "need daily walks, training and plenty of attention, and they thrive on routine and social "
               "contact. Cats are more independent, use a litter box and can be left alone for longer, "
               "which suits busy owners or small apartments. Dogs tend to be more outwardly eager to please, "
               "while cats often show affection on their own terms."},
    {"instruction": "Edit the sentence to fix the grammar.", "input": "Me and him goes to school every day.",
     "output": "He and I go to school every day."},
    SHARED_WITH_CODE_ALPACA,
    {"instruction": "Explain the difference between weather and climate.", "input": "",
     "output": "Weather is the short-term state of the atmosphere at a particular place and time, such as "
               "today's rain or tomorrow's heat. Climate is the average pattern of weather in a region over "
               "a long period, typically 30 years or more."},
    {"instruction": "Is GPT-4 better than GPT-3.5?", "input": "",
     "output": "GPT-4 generally performs better than GPT-3.5 on reasoning, coding and exam-style benchmarks, "
               "and it follows complex instructions more reliably. It is also slower and more expensive to "
               "run, so GPT-3.5 can still be the better choice for simple, high-volume tasks."},
    {"instruction": "Create a haiku about the ocean.", "input": "",
     "output": "Waves fold into foam\nsalt wind carries gull voices\nthe tide keeps its time"},
    {"instruction": "Calculate the area of a rectangle.", "input": "Length: 8 cm, Width: 5 cm",
     "output": "The area of the rectangle is 8 cm x 5 cm = 40 square centimeters."},
    {"instruction": "Suggest two ways to reduce food waste at home.", "input": "",
     "output": "1. Plan meals for the week and shop with a list, so you buy only what you will use.\n2. Store "
               "leftovers in clear containers at eye level in the fridge and eat them within a few days."},
    {"instruction": "Translate the sentence into French.", "input": "Where is the train station?",
     "output": "Où est la gare ?"},
    {"instruction": "Identify the main theme of the poem.",
     "input": "Nature's first green is gold,\nHer hardest hue to hold.",
     "output": "The main theme is the transience of beauty and youth: the first, most precious stage of "
               "anything is also the shortest-lived."},
    {"instruction": "Give an example of a palindrome.", "input": "",
     "output": "\"Racecar\" is a palindrome: it reads the same forwards and backwards."},
    {"instruction": "Write a polite email declining a meeting invitation.", "input": "",
     "output": "Subject: Re: Project sync on Thursday\n\nHi Jordan,\n\nThank you for the invitation. "
               "Unfortunately I have a prior commitment on Thursday afternoon and won't be able to attend. "
               "Could you share the notes afterwards? I'm happy to follow up on any action items.\n\nBest "
               "regards,\nSam"},
]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(RECORDS, f, indent=4)


if __name__ == "__main__":
    main()
