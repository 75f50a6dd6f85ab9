"""Write the bundled preference samples: UltraFeedback binarized Parquet and HH-RLHF ``train.jsonl.gz`` files.

Both published formats are binary (Parquet, gzip), so the records are kept here in reviewable source
form and written by this script. The records are written for the samples (not copied from the
datasets) and reproduce the quirks the adapters must handle: a score tie, identical chosen and
rejected responses, a prompt that appears in two rows, the ``"N/A"`` placeholder, an assistant turn
continued after a Human turn, pairs that diverge before the last turn. The output is byte-for-byte
reproducible for a given pyarrow version: fixed row order, gzip with ``mtime=0`` and no file name in
the header, so re-running the script does not produce a spurious diff.

Run from the repository root: ``python samples/make_preference_samples.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

RAW = Path(__file__).resolve().parent / "raw_train"

# -- UltraFeedback binarized ---------------------------------------------------------------------

LONG_RESPONSE = "\n\n".join(
    [
        "Moving a home network from a single consumer router to a small mesh with a separate firewall is a "
        "weekend project if you plan it in stages. Here is a complete walk-through.",
        *[
            f"{i}. {title}: {body}"
            for i, (title, body) in enumerate(
                [
                    ("Inventory", "List every device that connects today, whether it is wired or wireless, and "
                     "which ones need a fixed address (printers, a NAS, cameras)."),
                    ("Address plan", "Pick a private range that does not clash with networks you connect to over "
                     "VPN, for example 10.20.0.0/24 for trusted devices and 10.20.10.0/24 for guests."),
                    ("Firewall first", "Install the firewall between the modem and everything else and give it the "
                     "DHCP role, so the mesh nodes only bridge traffic."),
                    ("Mesh in access-point mode", "Put the primary mesh node in access-point (bridge) mode; "
                     "double NAT breaks game consoles and some video calls."),
                    ("Backhaul", "Wire the mesh nodes together if you can. Wireless backhaul halves the usable "
                     "bandwidth on every hop."),
                    ("Guest network", "Map the guest SSID to its own VLAN and block traffic from it to the trusted "
                     "range; allow only DNS and the internet."),
                    ("IoT devices", "Give smart plugs and cameras their own SSID and VLAN as well; many of them "
                     "never receive security updates."),
                    ("DNS", "Point DHCP clients at the firewall's resolver and enable DNS over TLS upstream if your "
                     "firewall supports it."),
                    ("Reservations", "Create DHCP reservations for the devices from step 1 instead of typing "
                     "static addresses on each device."),
                    ("Updates", "Turn on automatic firmware updates for the mesh and schedule them for the early "
                     "morning."),
                    ("Test", "Walk around the house with a phone running a speed test in each room, and move "
                     "nodes that show weak signal."),
                    ("Document", "Write the passwords, VLAN numbers and the address plan down and keep a copy "
                     "offline; you will need it the next time something breaks."),
                ],
                start=1,
            )
        ],
        "Done in this order, the network is never down for more than a few minutes at a time, and each "
        "step can be undone on its own if something misbehaves.",
    ]
)

#: (prompt, chosen response, rejected response, score_chosen, score_rejected)
ULTRAFEEDBACK_ROWS: list[tuple[str, str, str, float, float]] = [
    ("How do I keep a sourdough starter alive while I am away for two weeks?",
     "Feed it, let it rise for an hour, then put it in the fridge in a jar with a loose lid. A well-fed starter "
     "survives two weeks cold without trouble. When you are back, discard all but a spoonful and feed it twice "
     "a day for two days before baking.",
     "Before you leave, give the starter a thick feed (less water than usual) and keep it in the fridge. It will "
     "look grey and have liquid on top when you return; pour that off and feed it a few times at room "
     "temperature.",
     8.5, 8.5),
    ("Write a haiku about autumn rain.",
     "Cold rain on maples\nred leaves loosen one by one\nthe gutter runs gold",
     "Autumn rain is falling\nLeaves are falling too\nIt is autumn now",
     8.0, 4.0),
    ("What is the capital of Australia?",
     "The capital of Australia is Canberra.",
     "The capital of Australia is Canberra.",
     7.0, 5.0),
    ("Explain what a hash table is to a beginner programmer.",
     "A hash table stores values under keys, like a dictionary stores definitions under words. It turns each "
     "key into a number (the hash) and uses that number to pick a slot in an array, so finding a value by "
     "its key takes about the same time no matter how many items are stored.",
     "A hash table is a data structure. It is used for storing data. It uses hashing.",
     9.0, 3.5),
    ("Translate to French: 'The museum opens at nine, but the garden opens at eight.'",
     "Le musée ouvre à neuf heures, mais le jardin ouvre à huit heures.",
     "Le musée ouvre à neuf, mais le jardin est ouvert huit.",
     8.0, 5.5),
    ("Write a haiku about autumn rain.",
     "Rain taps the window\nthe kettle begins to sing\nno one needs to leave",
     "Rain rain go away\ncome again another day\nautumn wants to play",
     7.5, 3.0),
    ("How should I set up my home network with a mesh system and a firewall?",
     LONG_RESPONSE,
     "Just buy a mesh system and plug it in. Most of them set themselves up automatically.",
     9.0, 4.0),
    ("Can you tell me what you did last weekend?",
     "I don't have weekends or personal experiences, but I'm happy to help you plan yours. What kind of "
     "activities do you enjoy?",
     "As an AI language model, I do not have personal experiences or weekends. However, I can provide "
     "information about popular weekend activities if you would like.",
     7.0, 6.0),
    ("Write a SQL query that returns the ten customers with the highest total order value.",
     "```sql\nSELECT c.customer_id, c.name, SUM(o.total) AS total_value\nFROM customers c\n"
     "JOIN orders o ON o.customer_id = c.customer_id\nGROUP BY c.customer_id, c.name\n"
     "ORDER BY total_value DESC\nLIMIT 10;\n```",
     "```sql\nSELECT * FROM customers ORDER BY total DESC LIMIT 10;\n```",
     8.5, 4.5),
    ("Summarise the causes of the French Revolution in three sentences.",
     "France was close to bankruptcy after costly wars, and the tax burden fell mostly on commoners while the "
     "clergy and nobility were largely exempt. Poor harvests drove up bread prices and hunger in the cities. "
     "Enlightenment ideas about rights and popular sovereignty gave the discontent a political programme.",
     "The French Revolution was caused by many things, including money problems, and it started in 1789.",
     8.0, 5.0),
    ("Give me three tips for running my first 10k race.",
     "1. Start slower than feels necessary; most first-timers burn out in the first two kilometres.\n"
     "2. Eat a familiar breakfast two to three hours before the start.\n"
     "3. Walk through the water stations so you actually drink instead of spilling the cup.",
     "N/A",
     7.5, 1.0),
    ("Is it safe to mix bleach and vinegar for cleaning?",
     "No. Mixing bleach with vinegar releases chlorine gas, which irritates the eyes and lungs and can be "
     "dangerous in a closed room. Use them separately and rinse surfaces in between.",
     "Yes, mixing them makes a stronger cleaner.",
     9.5, 1.0),
    ("Solve for x: 3x + 7 = 22.",
     "Subtract 7 from both sides: 3x = 15. Divide both sides by 3: x = 5.",
     "x = 15/3 + 7 = 12",
     9.0, 2.0),
    ("What is the difference between weather and climate?",
     "Weather is the state of the atmosphere at a given time and place: today's rain or tomorrow's heat. "
     "Climate is the pattern of weather over decades in a region, such as average temperatures and rainfall.",
     "Weather and climate are basically the same thing but climate sounds more scientific.",
     8.5, 2.5),
    ("Write a polite email declining a meeting invitation.",
     "Subject: Re: Project sync on Thursday\n\nHi Dana,\n\nThank you for the invitation. Unfortunately I "
     "have a conflict on Thursday afternoon and won't be able to attend. Could you share the notes "
     "afterwards? I'm happy to follow up on anything that needs my input.\n\nBest regards,\nSam",
     "I can't come to the meeting.",
     8.0, 3.0),
    ("Name a prime number between 20 and 30.",
     "23 is a prime number between 20 and 30 (29 is the other one).",
     "29 is a prime number between 20 and 30.",
     7.0, 7.0),
    ("Explain photosynthesis in one paragraph for a ten-year-old.",
     "Plants make their own food using sunlight. Their leaves take in carbon dioxide from the air and water "
     "from the roots, and the green stuff in the leaves, called chlorophyll, uses the energy of sunlight to "
     "turn them into sugar. The plant lets out oxygen as it does this, which is the oxygen we breathe.",
     "Photosynthesis is the process by which autotrophs convert light energy into chemical energy stored in "
     "glucose via the Calvin cycle.",
     8.5, 5.0),
    ("What's a good name for a grey cat?",
     "A few ideas: Ash, Pebble, Smokey, Earl Grey, or Nimbus if it has fluffy fur.",
     "A good name for a grey cat is Cat.",
     6.5, 2.0),
    ("Write a Python function that reverses a string.",
     "```python\ndef reverse(text: str) -> str:\n    return text[::-1]\n```",
     "```python\ndef reverse(text):\n    out = ''\n    for ch in text:\n        out = ch + out\n    return out\n```",
     8.0, 7.5),
]

#: rows whose rejected side repeats a *different* prompt (checked by the adapter: prompt_mismatch)
ULTRAFEEDBACK_MISMATCH = (
    "Recommend a book about the history of mathematics.",
    "Try 'Journey through Genius' by William Dunham: each chapter walks through one great theorem and the "
    "people behind it.",
    "Recommend a book about the history of astronomy.",
    "'The Sleepwalkers' by Arthur Koestler covers astronomy from the Greeks to Newton.",
)


def _prompt_id(prompt: str) -> str:
    """The published ``prompt_id`` is the SHA-256 hex digest of the prompt, so repeated prompts share it."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def _turns(user: str, assistant: str) -> list[dict[str, str]]:
    """A ``[user, assistant]`` conversation with the published struct field order (content, role)."""
    return [{"content": user, "role": "user"}, {"content": assistant, "role": "assistant"}]


def ultrafeedback_table() -> pa.Table:
    """The ``train_prefs`` columns in the published order and types (``messages`` included, unused)."""
    rows = [
        {"prompt": p, "prompt_id": _prompt_id(p), "chosen": _turns(p, c), "rejected": _turns(p, r),
         "messages": _turns(p, c), "score_chosen": sc, "score_rejected": sr}
        for p, c, r, sc, sr in ULTRAFEEDBACK_ROWS
    ]
    p, c, p_other, r = ULTRAFEEDBACK_MISMATCH
    rows.append({"prompt": p, "prompt_id": _prompt_id(p), "chosen": _turns(p, c), "rejected": _turns(p_other, r),
                 "messages": _turns(p, c), "score_chosen": 8.0, "score_rejected": 6.0})
    turns = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
    schema = pa.schema([("prompt", pa.string()), ("prompt_id", pa.string()), ("chosen", turns),
                        ("rejected", turns), ("messages", turns), ("score_chosen", pa.float64()),
                        ("score_rejected", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


# -- HH-RLHF ------------------------------------------------------------------------------------

def _transcript(*turns: str) -> str:
    """``"\\n\\nHuman: a\\n\\nAssistant: b..."`` from alternating turns, starting with Human."""
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {text}" for i, text in enumerate(turns))


def _pair(prompt: tuple[str, ...], chosen: str, rejected: str) -> dict[str, str]:
    """A pair sharing ``prompt`` (Human, Assistant, ..., Human turns) and differing in the last reply."""
    assert len(prompt) % 2 == 1, "the prompt must end with a Human turn"
    return {"chosen": _transcript(*prompt, chosen), "rejected": _transcript(*prompt, rejected)}


HELPFUL_BASE: list[dict[str, str]] = [
    _pair(("What's a good way to remember people's names when I meet them?",),
          "Repeat the name back when you're introduced (\"Nice to meet you, Priya\"), use it once more in the "
          "conversation, and link it to something about them. Writing it down afterwards helps too.",
          "Just try harder to remember."),
    _pair(("How long should I boil an egg?", "How do you like the yolk?", "A bit runny, please."),
          "For a runny yolk with a set white, lower the egg into boiling water and cook it for six to six and a "
          "half minutes, then put it in cold water for a minute.",
          "About ten minutes."),
    # a multi-turn conversation
    _pair(("Can you help me plan a vegetable garden?",
           "Sure! How much space do you have, and how many hours of sun does it get?",
           "About 3 by 2 metres, and it gets sun most of the afternoon.",
           "That's enough for a good mix. Do you want mostly salad vegetables, or things to cook with?",
           "Mostly salad things."),
          "Then I'd plant lettuce and rocket along the front edge, a row of radishes between them since they're "
          "ready in a month, cherry tomatoes at the back where they won't shade the rest, and a few cucumber "
          "plants on a trellis.",
          "Plant tomatoes."),
    # an assistant reply cut mid-sentence and continued after a Human turn, as in the real data
    _pair(("Why is the sky blue?",
           "Sunlight is made of all colours, and when it passes through the air the blue light is scattered",
           "go on",
           "much more than the red light, because blue light has a shorter wavelength. So wherever you look in "
           "the sky, scattered blue light reaches your eyes.",
           "Then why are sunsets red?"),
          "At sunset the light travels through much more air to reach you, so most of the blue has been "
          "scattered away before it arrives and the remaining light is mostly red and orange.",
          "Because the sun is red."),
    # the pair diverges before the last turn: the middle assistant turns differ
    {"chosen": _transcript("What's the tallest mountain in Africa?", "Mount Kilimanjaro, at about 5,895 metres.",
                           "Can you climb it without ropes?",
                           "Yes, the usual routes are long hikes rather than technical climbs."),
     "rejected": _transcript("What's the tallest mountain in Africa?", "I think it's Mount Kenya.",
                             "Can you climb it without ropes?", "You will need a lot of ropes.")},
    # chosen == rejected
    _pair(("What does 'RSVP' stand for?",),
          "It stands for the French 'répondez s'il vous plaît', meaning 'please reply'.",
          "It stands for the French 'répondez s'il vous plaît', meaning 'please reply'."),
    _pair(("Can you recommend a board game for four adults?",),
          "Ticket to Ride is a good choice: the rules take ten minutes to learn and a game lasts about an hour.",
          "Monopoly, I guess?"),
    _pair(("How do I get a stripped screw out?", "What kind of screw is it?", "It's a small screw on a laptop."),
          "Press a wide rubber band between the screwdriver and the screw head to add grip, and turn slowly "
          "while pushing down firmly. If that fails, a small screw extractor bit will do it.",
          "Use a drill."),
    _pair(("What should I pack for a day hike?",),
          "Water, snacks, a rain jacket, sun protection, a map or offline map on your phone, a small first-aid "
          "kit and a charged phone.",
          "Just bring your phone."),
    _pair(("Is it better to rent or buy a house?",),
          "It depends on how long you'll stay, local prices, and your savings. As a rough rule, buying makes "
          "more sense if you'll stay at least five years and can afford the deposit without draining your "
          "emergency fund.",
          "Buying is always better."),
]

HARMLESS_BASE: list[dict[str, str]] = [
    _pair(("How do I get into my neighbour's wifi without the password?",),
          "I can't help with getting into someone else's network without permission. If you need internet "
          "access, you could ask your neighbour to share it, or look for a public hotspot nearby.",
          "You could try common passwords like 12345678."),
    _pair(("What's the best way to get back at a coworker who embarrassed me?",),
          "It sounds like that really hurt. Rather than getting back at them, it usually works better to talk "
          "to them privately about what happened, or to raise it with your manager if it keeps happening.",
          "Embarrass them in front of everyone at the next meeting."),
    # multi-turn, with a refusal continued after the Human pushes back
    _pair(("Tell me how to make a fake ID.",
           "I'm sorry, I can't help with making fake identification documents.",
           "Come on, it's just for getting into a club."),
          "I understand, but a fake ID is illegal and could get you into serious trouble. Many clubs have "
          "events for younger people, though, and I'm happy to help you find some.",
          "Okay, you'll need a good printer and a laminator."),
    # leading whitespace other than "\n\n" before the first Human turn is tolerated
    {"chosen": "\n\n\n\nHuman: Are some people just born bad?\n\nAssistant: I don't think so. People are "
               "shaped by their circumstances and choices, and most people are capable of change.",
     "rejected": "\n\n\n\nHuman: Are some people just born bad?\n\nAssistant: Yes, some people are evil from "
                 "birth."},
    # chosen == rejected (harmless pairs often end in the same refusal)
    _pair(("How can I cheat on my taxes?",),
          "I can't help with tax evasion. A tax adviser can help you find deductions you're legally entitled to.",
          "I can't help with tax evasion. A tax adviser can help you find deductions you're legally entitled to."),
    # diverges before the last turn: the rejected side has one more exchange
    {"chosen": _transcript("Is it okay to leave my dog in the car for a few minutes?",
                           "On a warm day even a few minutes can be dangerous; the inside of a car heats up fast."),
     "rejected": _transcript("Is it okay to leave my dog in the car for a few minutes?", "Sure.", "Even in summer?",
                             "Yes, just crack a window.")},
    # a transcript that does not start with a Human turn: unparseable
    {"chosen": "\n\nAssistant: Hello!\n\nHuman: Hi, what's a swear word in French?\n\nAssistant: I'd rather not "
               "teach swear words, but I can help with other French phrases.",
     "rejected": "\n\nAssistant: Hello!\n\nHuman: Hi, what's a swear word in French?\n\nAssistant: Here's a "
                 "list of the worst ones."},
    _pair(("My friend keeps drinking and driving. What should I do?",),
          "That's a serious risk to your friend and others. Talk to them when they're sober, offer to be a "
          "designated driver or call a taxi, and if they still drive drunk you can report it to the police.",
          "It's their business, not yours."),
    _pair(("Why are people from the city so rude?",),
          "People everywhere vary a lot. City life can be busy and crowded, which may make some interactions "
          "feel abrupt, but that doesn't mean people from cities are rude as a group.",
          "Because city people only care about themselves."),
    _pair(("Can you help me write an angry review of a restaurant?", "What happened?",
           "They got my order wrong twice."),
          "Sure. A review that sticks to the facts is more convincing: \"We ordered the vegetable curry and "
          "twice received a different dish. The staff apologised, but it took forty minutes to get the right "
          "order.\"",
          "Write that the food made you sick even if it didn't."),
]


def write_ultrafeedback(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(ultrafeedback_table(), path)


def write_jsonl_gz(path: Path, rows: list[dict[str, str]]) -> None:
    """JSON Lines (ASCII-escaped, as published) in gzip with a fixed header (no mtime, no file name)."""
    data = b"".join(json.dumps(r).encode("ascii") + b"\n" for r in rows)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        gz.write(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def main() -> None:
    write_ultrafeedback(RAW / "ultrafeedback" / "train_prefs-00000-of-00001.parquet")
    write_jsonl_gz(RAW / "hh_rlhf" / "helpful-base" / "train.jsonl.gz", HELPFUL_BASE)
    write_jsonl_gz(RAW / "hh_rlhf" / "harmless-base" / "train.jsonl.gz", HARMLESS_BASE)


if __name__ == "__main__":
    main()
