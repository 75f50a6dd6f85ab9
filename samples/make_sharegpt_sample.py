"""Write the ShareGPT samples under ``raw_train/sharegpt/``.

- ``sg_90k_part1_html_cleaned.json`` and ``sg_90k_part2_html_cleaned.json``: raw conversations after
  FastChat's HTML->markdown cleaning, with the quirks of the real files (SOURCES.md 2.4): a leading
  ``system`` banner or ``gpt`` turn, an empty value, ``bing``/``bard``/``chatgpt``/``user`` speakers, odd
  turn counts, non-English text, markdownify escapes (``\\_``, ``\\*``), a conversation repeated in
  both parts, and one long conversation that splits into several chunks at a small maximum (and
  holds one human/gpt pair too long to fit on its own).
- ``sharegpt_html_cleaned_and_split_4096.json``: what open-instruct's split produces: ids
  ``<7 chars>_<even start>``, only ``human``/``gpt``, strictly alternating, even length.

All files are written like the originals: ``json.dump(indent=2)``, ASCII-escaped. The text is
written for this project. Run: ``python samples/make_sharegpt_sample.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "raw_train" / "sharegpt"

Conv = dict[str, Any]


def conv(cid: str, *turns: tuple[str, str]) -> Conv:
    return {"id": cid, "conversations": [{"from": who, "value": text} for who, text in turns]}


def h(text: str) -> tuple[str, str]:
    return ("human", text)


def g(text: str) -> tuple[str, str]:
    return ("gpt", text)


# A long garden-planning conversation: at 256 tokens per chunk it splits into several chunks, and
# its fourth pair (the detailed plan) is longer than 256 tokens on its own.
GARDEN = conv(
    "Gd7pLw2",
    h("I just moved into a house with a small backyard, about 4 by 6 meters, and I'd like to grow "
      "some vegetables this year. I've never gardened before. Where should I start?"),
    g("Congratulations on the new place! Start by watching the yard for a few days: note which parts "
      "get at least six hours of direct sun, because most vegetables need that. Then check the soil by "
      "digging a hole about 30 cm deep; if it is hard clay or full of rubble, plan on raised beds filled "
      "with a mix of topsoil and compost. Finally, pick three or four easy crops rather than ten."),
    h("The sunny part is along the back fence, maybe 1.2 meters deep. The soil is pretty compacted. "
      "Which crops would you call easy for a beginner?"),
    g("For a first season in a sunny strip like that, good choices are:\n\n1. **Bush beans** - fast, "
      "no staking, and they improve the soil.\n2. **Zucchini** - one or two plants feed a family.\n3. "
      "**Cherry tomatoes** - more forgiving than large tomatoes.\n4. **Lettuce and radishes** - quick "
      "crops you can sow every two weeks.\n\nSince the soil is compacted, a raised bed 30 cm high along "
      "the fence would solve most of your problems."),
    h("How much soil do I need for a raised bed 1.2 m wide, 4 m long and 30 cm high?"),
    g("Multiply the three dimensions: 1.2 m x 4 m x 0.3 m = 1.44 cubic meters, which is 1,440 liters. "
      "Bagged soil usually comes in 40 or 50 liter bags, so you would need about 29 to 36 bags; for that "
      "volume, ordering a bulk delivery of a topsoil and compost mix is usually cheaper. Fill the bed a "
      "little above the top, since the soil settles by a few centimeters in the first weeks."),
    h("Can you give me a complete week-by-week plan for the first two months, including when to sow "
      "each crop, when to water and feed, and what to watch out for?"),
    g("Here is a plan that assumes your last frost is around mid-April; shift the dates if yours is "
      "different.\n\n**Weeks 1-2 (early April):** Build and fill the bed. Water the soil well and let it "
      "settle. Sow radishes and the first row of lettuce directly in the bed, 1 cm deep. Start tomato "
      "seeds indoors on a bright windowsill if you are not buying seedlings.\n\n**Weeks 3-4 (mid to late "
      "April):** Thin radish and lettuce seedlings so each plant has room (5 cm for radishes, 20 cm for "
      "lettuce). Sow a second row of lettuce. Keep the soil evenly moist: check it with a finger every "
      "morning and water when the top 2-3 cm are dry.\n\n**Weeks 5-6 (early May):** After the last frost, "
      "plant tomato seedlings 50 cm apart and push in a stake beside each one right away. Sow bush beans "
      "5 cm deep and 10 cm apart. Sow zucchini seeds in two small mounds at the end of the bed. Harvest "
      "the first radishes.\n\n**Weeks 7-8 (mid to late May):** Start feeding the tomatoes and zucchini "
      "with a diluted liquid fertilizer every two weeks. Water deeply two or three times a week instead "
      "of a little every day, so the roots grow down. Tie the tomatoes to their stakes as they grow and "
      "pinch out the side shoots that appear between the stem and the leaves.\n\n**Watch out for:** slugs "
      "on the lettuce after rain (check at dusk), aphids under bean leaves (a strong spray of water "
      "removes them), and yellowing lower leaves on tomatoes, which usually means uneven watering."),
    h("What do you mean by pinching out side shoots? I don't want to hurt the plant."),
    g("Side shoots, often called suckers, are small stems that grow in the angle between the main stem "
      "and a leaf branch. Left alone they become extra stems, and the plant spends its energy on leaves "
      "instead of fruit. When a sucker is shorter than about 5 cm, hold it between thumb and finger and "
      "snap it off sideways. It does not hurt the plant; the small wound heals within a day. Do it in the "
      "morning when the plant is full of water and the shoot snaps cleanly."),
    h("My neighbor says I should put coffee grounds on everything. Is that a good idea?"),
    g("In small amounts, coffee grounds are fine: they add a bit of organic matter and nitrogen as they "
      "break down. The problem is piling them on thickly, because a wet layer of grounds can crust over "
      "and stop water from soaking in. The safest way to use them is to mix them into a compost bin, or "
      "scatter a thin layer and scratch it into the top of the soil. They will not noticeably change the "
      "acidity of your bed."),
    h("Last question: when will I be able to eat something from the garden?"),
    g("Radishes are the fastest: about four weeks after sowing, so early May with this plan. Lettuce "
      "leaves can be picked from about six weeks. Beans start around eight weeks after sowing, which puts "
      "them in early July, the same time as the first zucchini. Cherry tomatoes come last, usually from "
      "mid-July onward, and then keep producing until the first cold nights of autumn. Enjoy it!"),
)

PART1: list[Conv] = [
    conv("aT9kQm2",
         h("How do I reverse a string in Python?"),
         g("The shortest way is slicing with a negative step:\n\n```python\ntext = \"hello\"\nreversed_text "
           "= text[::-1]\nprint(reversed_text)  # olleh\n```\n\n"
           "You can also write `''.join(reversed(text))`, which reads a bit more explicitly.")),
    conv("EbTm4rK",
         ("system", "*This chat conversation is shared from [**TypingMind.com**](https://typingmind.com)*"),
         h("Summarize the plot of Hamlet in three sentences."),
         g("Prince Hamlet learns from his father's ghost that his uncle Claudius murdered the king to take "
           "the throne and marry Hamlet's mother. Hamlet feigns madness while seeking proof, and his "
           "hesitation leads to the deaths of Polonius, Ophelia and others. In the final duel, nearly "
           "everyone dies, including Claudius and Hamlet himself.")),
    conv("v8PzQe1",
         g("Great! You have uploaded a file named \"sales\\_2022.csv\". Let's load it and look at the first "
           "rows."),
         h("yes please, and tell me the total revenue"),
         g("I can't run code myself, but here is how to compute it with pandas:\n\n```python\nimport pandas "
           "as pd\ndf = pd.read_csv(\"sales_2022.csv\")\nprint(df[\"revenue\"].sum())\n```")),
    conv("IXq4HcM",
         h(""),
         g("It looks like your message was empty. What would you like to talk about?")),
    conv("mB2ngX7",
         h("explain the \\_\\_init\\_\\_ method in python classes"),
         g("`__init__` is the initializer: Python calls it right after creating a new object so you can "
           "set its starting attributes.\n\n```python\nclass Point:\n    def __init__(self, x, y):\n        "
           "self.x = x\n        self.y = y\n```\n\nNote that it does not create the object (that is "
           "`__new__`); it only fills it in.")),
    conv("Qw3Bing",
         h("What's the weather like in Seattle this weekend?"),
         ("bing", "Searching for: **Seattle weather forecast weekend**\n\nGenerating answers for you..."),
         g("Expect light rain on Saturday with highs around 12 C, and partly cloudy skies on Sunday.")),
    conv("Zr6LpA0",
         h("Write a haiku about autumn leaves."),
         g("Red leaves drift and fall\nwhispering to the cold ground\nsummer's last goodbye"),
         h("Now one about winter.")),
    conv("Lk8mN2q",
         h("¿Me puedes explicar qué es la fotosíntesis de forma sencilla?"),
         g("¡Claro! La fotosíntesis es el proceso con el que las plantas fabrican su propio alimento. "
           "Usan la luz del sol, el agua que absorben por las raíces y el dióxido de carbono del aire para "
           "producir azúcar, y liberan oxígeno como resultado.")),
    conv("cH9tQz4",
         h("用一句话解释什么是机器学习。"),
         g("机器学习是让计算机从数据中自动学习规律，并用这些规律对新数据做出预测或决策的方法。")),
    conv("Pm5Rb8x",
         h("Are you ChatGPT?"),
         g("Yes, I am ChatGPT, a large language model trained by OpenAI. How can I help you today?")),
    conv("Yd2Kf9s",
         ("user", "what does HTTP 418 mean"),
         ("chatgpt", "HTTP 418 \"I'm a teapot\" is a joke status code from an April Fools' RFC (2324) about "
                     "a coffee-pot protocol. Some servers return it for fun; it has no real meaning.")),
    conv("Nf4Qs0d",
         h("Give me a regex that matches an email address"),
         g("A practical (not fully RFC-complete) pattern is:\n\n```\n^[\\w.+-]+@[\\w-]+\\.[\\w.-]+$\n```\n\n"
           "It accepts letters, digits, `.`, `+` and `-` before the @, then a domain with at least one "
           "dot."),
         h("does it match user@localhost?"),
         g("No, because it requires a dot after the @. Replace `\\.[\\w.-]+` with "
           "`(\\.[\\w.-]+)?` to make the top-level part optional.")),
    conv("Rt1Bard",
         h("Translate \"good morning\" into Japanese."),
         ("bard", "\"Good morning\" in Japanese is \"ohayou gozaimasu\" (おはようございます).")),
    conv("Hs3Vw7e",
         h("define a function f(x) = sin(x)\\*exp(2\\*x). what is its derivative?"),
         g("Using the product rule: f'(x) = cos(x)\\*exp(2x) + 2\\*sin(x)\\*exp(2x) = exp(2x)(cos(x) + "
           "2 sin(x)).")),
    conv("Ko6Xn1w",
         h("write a C++ template function that returns the max of two values"),
         g("```cpp\ntemplate \nT max\\_of(T a, T b) {\n    return a > b ? a : b;\n}\n```\n\nIt works for "
           "any type that supports `>`.")),
    GARDEN,
    conv("Ua0Jc5m",
         h("Tell me a fun fact about octopuses."),
         g("An octopus has three hearts: two pump blood through the gills and one pumps it to the rest of "
           "the body. The main heart actually stops beating while the octopus swims, which is one reason "
           "they prefer crawling."),
         h("That's wild. Why is their blood blue?"),
         g("Their blood uses hemocyanin, a copper-based protein, to carry oxygen instead of the iron-based "
           "hemoglobin we use. Copper gives the blood a blue color when it is carrying oxygen.")),
    conv("Wq8Ls2p",
         h("Dame tres ideas para una cena rápida sin carne."),
         g("1. Tortilla de patatas con ensalada verde.\n2. Pasta con garbanzos, espinacas y ajo.\n3. Tacos "
           "de frijoles negros con aguacate y salsa de tomate.")),
    conv("Bv5Tg3j",
         h("what is the difference between let and const in javascript"),
         g("Both are block-scoped. `let` lets you reassign the variable later; `const` does not. Note that "
           "`const` only prevents reassignment: the contents of a `const` object or array can still "
           "change.")),
    conv("Ge2Ow9r",
         h("Can you proofread this: \"Their going to the park tomorow.\""),
         g("Corrected: \"They're going to the park tomorrow.\" \"Their\" is possessive; you need \"they're\" "
           "(they are), and \"tomorrow\" has two r's.")),
]

PART2: list[Conv] = [
    conv("QOL3hub",
         ("system", "*This conversation is shared from [**ChatHub**](https://chathub.gg)*"),
         h("Which is bigger, 9.11 or 9.9?"),
         g("9.9 is bigger. Compare the tenths digit: 9 tenths in 9.9 against 1 tenth in 9.11.")),
    conv("kJ4mX8t",
         h("Explain recursion like I'm five."),
         g("Imagine you're in a line of kids and want to know your place. You ask the kid in front, who "
           "asks the kid in front of them, and so on, until the first kid says \"I'm number one!\" Then each "
           "kid adds one and passes the answer back. That's recursion: solving a problem by asking a "
           "smaller version of the same question.")),
    conv("Dn7Wp1c",
         h("Was ist der Unterschied zwischen \"seit\" und \"seid\"?"),
         g("\"Seit\" ist eine Präposition oder Konjunktion der Zeit (\"seit gestern\"). \"Seid\" ist eine "
           "Form von \"sein\" (\"ihr seid\") oder der Imperativ (\"Seid leise!\").")),
    conv("Xf5Kt2b",
         h("Write a SQL query to find the second highest salary from an employees table."),
         g("```sql\nSELECT MAX(salary) AS second\\_highest\nFROM employees\nWHERE salary < "
           "(SELECT MAX(salary) FROM employees);\n```\n\n"
           "This returns NULL if there is only one distinct salary.")),
    # the same conversation as in part 1 (the published files contain duplicates)
    conv("aT9kQm2",
         h("How do I reverse a string in Python?"),
         g("The shortest way is slicing with a negative step:\n\n```python\ntext = \"hello\"\nreversed_text "
           "= text[::-1]\nprint(reversed_text)  # olleh\n```\n\n"
           "You can also write `''.join(reversed(text))`, which reads a bit more explicitly.")),
    conv("Mc1Ry6h",
         h("한국어로 간단한 자기소개 문장을 알려줘."),
         g("\"안녕하세요. 저는 김민수입니다. 만나서 반갑습니다.\" 이렇게 말하면 됩니다.")),
    conv("Tp9Bg4k",
         h("I feel stressed about my exams next week. Any tips?"),
         g("That's very common, and a plan helps. Break each subject into small topics, schedule short "
           "study blocks with breaks, and practice with past papers. Keep sleeping at least seven hours; "
           "tired brains remember less. If the stress feels overwhelming, talk to a friend, a teacher or a "
           "counselor."),
         h("thanks"),
         g("You're welcome. Good luck, you've got this!"),
         h("")),
    conv("Sb3Bing",
         ("bing", "Hello, this is Bing. How can I help? 😊"),
         h("find me a cheap flight to Lisbon")),
    conv("Vy8Nq5z",
         h("Which model are you, GPT-4 or GPT-3.5?"),
         g("I'm based on the GPT-4 architecture. Let me know what you'd like help with!")),
    conv("Ej6Uc0o",
         h("Convert 72 degrees Fahrenheit to Celsius."),
         g("(72 - 32) x 5/9 = 22.2 degrees Celsius.")),
    conv("Ar2Pd7n",
         h("Suggest a name for a bakery that specializes in sourdough."),
         g("A few ideas: \"Rise & Crumb\", \"The Slow Loaf\", \"Wild Yeast Bakehouse\", \"Starter & Co.\"")),
    conv("Hn4Lb9q",
         h("Give me a bash one-liner to count lines in all .py files in a folder"),
         g("```bash\nfind . -name \"\\*.py\" -print0 | xargs -0 wc -l | tail -n 1\n```\n\nThe last line of "
           "`wc` output is the total.")),
    conv("Oi5Ze3v",
         h("Explain what an API is to a non-technical manager."),
         g("An API is like a restaurant menu for software. It lists what another program can ask for and "
           "how to ask, without showing how the kitchen works. Our app can \"order\" data or actions from "
           "another service through its API and get a predictable result back.")),
    conv("Fm0Kq1y",
         ("gpt", "Sure! Here's the rest of the story."),
         ("gpt", "...and the lighthouse keeper finally saw the ship's lights on the horizon.")),
    conv("Ck7Tv2e",
         h("Is it safe to eat raw cookie dough?"),
         g("It carries some risk: raw eggs can contain salmonella, and raw flour can carry E. coli. "
           "Heat-treated flour and pasteurized eggs (or egg-free recipes) make it much safer.")),
    conv("Iu3Ws8g",
         h("Qual é a capital da Austrália?"),
         g("A capital da Austrália é Camberra (Canberra), e não Sydney, como muita gente pensa.")),
    conv("Jr9Dx4f",
         h("Please write a short poem about debugging code at 3am"),
         g("The cursor blinks, the coffee's cold,\nthe stack trace long, the logic old;\none missing "
           "semicolon found -\nI sleep at last, safe and sound.")),
    conv("Lw1Mv6a",
         h("Compare REST and GraphQL in a table"),
         g("| | REST | GraphQL |\n|---|---|---|\n| Endpoints | many | one |\n| Response shape | fixed by "
           "server | chosen by client |\n| Over-fetching | common | rare |\n| Caching | simple (HTTP) | "
           "needs extra work |")),
    conv("Nz6Ra5u",
         h("Who painted the Mona Lisa?"),
         g("Leonardo da Vinci painted the Mona Lisa, probably between 1503 and 1519. It hangs in the "
           "Louvre in Paris.")),
    conv("Pq2Ht0i",
         h("can you help me write a cover letter for a junior data analyst job"),
         g("Of course. Tell me the company name, two or three of your strongest skills (for example SQL, "
           "Excel, Python) and one project you're proud of, and I'll draft a one-page letter around them."),
         h("company is Northwind Traders, skills SQL and Tableau, project: dashboard for my university's "
           "library usage"),
         g("Dear Hiring Manager,\n\nI am excited to apply for the Junior Data Analyst position at Northwind "
           "Traders. During my studies I built a Tableau dashboard that tracked my university library's "
           "usage by hour and by floor, drawing on data I cleaned and joined with SQL. Library staff used it "
           "to adjust opening hours, which showed me how clear data can change real decisions.\n\nI would "
           "welcome the chance to bring the same care to Northwind's sales and inventory data.\n\nSincerely,"
           "\n[Your name]")),
]

def chunk(source: Conv, end: int | None = None) -> Conv:
    """The first chunk of a raw conversation as the split writes it: id ``<orig>_0``."""
    return {"id": source["id"] + "_0", "conversations": source["conversations"][:end]}


# The pre-split Tulu file: human/gpt only, strictly alternating, ids <orig id>_<even start>.
SPLIT_4096: list[Conv] = [
    chunk(PART1[0]),
    chunk(PART1[4]),
    chunk(PART1[6], end=2),
    chunk(PART1[7]),
    chunk(PART1[8]),
    chunk(PART1[9]),
    chunk(PART1[3]),
    # a very long conversation split by the 4096-token rule: chunks start at 0, 4 and 10
    conv("Rk2Vq8m_0",
         h("I'm writing a fantasy novel. Can you help me design a magic system?"),
         g("Gladly. A good magic system answers three questions: where the power comes from, what it "
           "costs, and what it cannot do. Readers enjoy magic most when its limits create problems for the "
           "characters. What tone is your novel going for?"),
         h("Dark and political, like court intrigue with a bit of horror."),
         g("Then make the cost personal. For example: every spell consumes one of the caster's memories, "
           "chosen at random. Powerful nobles hire \"rememberers\" to record their lives so they can recover "
           "what magic takes, and a stolen diary becomes a deadly weapon.")),
    conv("Rk2Vq8m_4",
         h("I love the memory idea. How would ordinary people use magic then?"),
         g("Ordinary people would cast rarely and carefully: a midwife might trade a memory of a childhood "
           "summer to save a baby. That makes small spells emotional events. You could also have black-"
           "market \"memory donors\" who sell their recollections, which ties back into your political "
           "plot."),
         h("What happens if someone casts too much?"),
         g("They become a \"hollow\": fluent, skilled, but with no past, no loyalties and no fear, because "
           "they remember no consequences. Hollows make perfect assassins, which is why the court fears "
           "them and why using too much magic is treason."),
         h("Could a hollow ever get their memories back?"),
         g("Only through someone else's records, which means their restored self is a story told by "
           "others. That is a rich source of horror: a character who cannot tell whether the life they "
           "reclaimed is true.")),
    conv("Rk2Vq8m_10",
         h("Give me three chapter titles that fit this world."),
         g("1. \"The Price of Remembering\"\n2. \"A Diary Bound in Iron\"\n3. \"What the Hollow Forgot\"")),
    conv("Yt5Gw3n_0",
         h("Write a Python function that checks whether a number is prime."),
         g("```python\ndef is\\_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    i = 2\n    "
           "while i \\* i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    "
           "return True\n```")),
    conv("Yt5Gw3n_2",
         h("Now make it faster for big numbers."),
         g("Skip even numbers after 2 and test only up to the square root:\n\n```python\ndef is\\_prime(n: "
           "int) -> bool:\n    if n < 2:\n        return False\n    if n % 2 == 0:\n        return n == 2\n  "
           "  i = 3\n    while i \\* i <= n:\n        if n % i == 0:\n            return False\n"
           "        i += 2\n    return True\n```\n\n"
           "For very large numbers, use a probabilistic test such as Miller-Rabin.")),
    chunk(PART2[1]),
    chunk(PART2[2]),
    chunk(PART2[3]),
    chunk(PART2[5]),
    chunk(PART2[6], end=4),
    chunk(PART2[8]),
    chunk(PART2[9]),
    chunk(PART2[11]),
    chunk(PART2[17]),
    chunk(PART2[19]),
    conv("Ov3Sd6c_0",
         h("what's a good stretch for lower back pain after sitting all day"),
         g("Try the cat-cow stretch: on hands and knees, slowly arch your back up like a cat, then let it "
           "sag while lifting your head. Repeat 10 times, moving with your breath. Stop if anything hurts "
           "sharply, and see a doctor if the pain lasts more than a few weeks.")),
    conv("Ov3Sd6c_2",
         h("and for the neck?"),
         g("")),
]


def write(name: str, records: list[Conv]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / name, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=2)  # ensure_ascii=True, as the published files


def main() -> None:
    write("sg_90k_part1_html_cleaned.json", PART1)
    write("sg_90k_part2_html_cleaned.json", PART2)
    write("sharegpt_html_cleaned_and_split_4096.json", SPLIT_4096)


if __name__ == "__main__":
    main()
