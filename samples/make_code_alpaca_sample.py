"""Write ``raw_train/code_alpaca/code_alpaca_20k.json``: hand-written records in the Code Alpaca format.

Like sahil280114/codealpaca's file: a JSON array written with ``json.dump(indent=6)`` (6-space indent,
ASCII-escaped, no trailing newline). It has the file's quirks: the placeholder input
``"< noinput >"``, code with ``\\n`` and tabs, curly quotes, short outputs; one record mentions
ChatGPT (for the LLM-mention filter), and one repeats a ``gpt4_alpaca`` sample record exactly (for
cross-source deduplication). The text is written for this project.

Run: ``python samples/make_code_alpaca_sample.py``.
"""

# ruff: noqa: E501  (record text is data; long literals read better unwrapped)
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "raw_train" / "code_alpaca" / "code_alpaca_20k.json"

#: identical to SHARED_WITH_CODE_ALPACA in make_gpt4_alpaca_sample.py
SHARED_WITH_GPT4_ALPACA = {
    "instruction": "Write a Python function that returns the sum of a list of numbers.",
    "input": "",
    "output": "def sum_list(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total",
}

RECORDS = [
    {"instruction": "Create a list of the first 5 square numbers.", "input": "",
     "output": "squares = [1, 4, 9, 16, 25]"},
    {"instruction": "Write a function in JavaScript that returns the largest number in an array.",
     "input": "numbers = [3, 17, 8, 42, 5]",
     "output": "function largest(numbers) {\n\treturn Math.max(...numbers);\n}"},
    {"instruction": "Write a SQL query to select all customers from the city of Berlin.", "input": "< noinput >",
     "output": "SELECT * FROM customers WHERE city = 'Berlin';"},
    {"instruction": "Fix the bug in the following Python code.",
     "input": "def add(a, b):\n\treturn a - b",
     "output": "def add(a, b):\n\treturn a + b"},
    {"instruction": "Generate a random integer between 1 and 10 in Python.", "input": "",
     "output": "import random\nnumber = random.randint(1, 10)"},
    {"instruction": "Explain what the following code does.",
     "input": "for i in range(10):\n    if i % 2 == 0:\n        print(i)",
     "output": "The code prints the even numbers from 0 to 8."},
    {"instruction": "Write a C program that prints \u201cHello, World!\u201d.", "input": "",
     "output": "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"Hello, World!\\n\");\n\treturn 0;\n}"},
    {"instruction": "Convert this list of strings to integers.", "input": "[\"1\", \"2\", \"3\"]",
     "output": "numbers = [int(s) for s in [\"1\", \"2\", \"3\"]]"},
    {"instruction": "Create a CSS rule that makes all paragraphs blue.", "input": "< noinput >",
     "output": "p {\n\tcolor: blue;\n}"},
    {"instruction": "Reverse a string in Java.", "input": "String s = \"hello\";",
     "output": "String reversed = new StringBuilder(s).reverse().toString();"},
    SHARED_WITH_GPT4_ALPACA,
    {"instruction": "Write a regular expression that matches a five-digit US ZIP code.", "input": "",
     "output": "^\\d{5}$"},
    {"instruction": "Sort the given dictionary by its values in ascending order.",
     "input": "d = {'a': 3, 'b': 1, 'c': 2}",
     "output": "sorted_d = dict(sorted(d.items(), key=lambda item: item[1]))"},
    {"instruction": "Create a Python class for a bank account with deposit and withdraw methods.", "input": "",
     "output": "class BankAccount:\n    def __init__(self, balance=0):\n        self.balance = balance\n\n    "
               "def deposit(self, amount):\n        self.balance += amount\n\n    def withdraw(self, amount):\n"
               "        if amount > self.balance:\n            raise ValueError(\"insufficient funds\")\n"
               "        self.balance -= amount"},
    {"instruction": "What is the time complexity of binary search?", "input": "< noinput >",
     "output": "O(log n)"},
    {"instruction": "Write a shell command to count the number of lines in a file named data.txt.", "input": "",
     "output": "wc -l data.txt"},
    {"instruction": "Write a Python script that asks ChatGPT a question using the OpenAI API.", "input": "",
     "output": "from openai import OpenAI\n\nclient = OpenAI()\nresponse = client.chat.completions.create(\n"
               "    model=\"gpt-3.5-turbo\",\n    messages=[{\"role\": \"user\", \"content\": \"Hello!\"}],\n)\n"
               "print(response.choices[0].message.content)"},
    {"instruction": "Remove duplicates from the list while keeping the order.", "input": "items = [3, 1, 3, 2, 1]",
     "output": "result = list(dict.fromkeys(items))"},
    {"instruction": "Write an HTML form with a text field and a submit button.", "input": "",
     "output": "<form>\n\t<input type=\"text\" name=\"query\">\n\t<input type=\"submit\" value=\"Search\">\n"
               "</form>"},
    {"instruction": "Compute the factorial of a number recursively in Python.", "input": "",
     "output": "def factorial(n):\n\tif n <= 1:\n\t\treturn 1\n\treturn n * factorial(n - 1)"},
    {"instruction": "Describe the difference between == and === in JavaScript.", "input": "",
     "output": "== compares values after type coercion, while === compares both value and type without "
               "coercion."},
    {"instruction": "Write a function to check if a string is a palindrome.", "input": "",
     "output": "def is_palindrome(s):\n    return s == s[::-1]"},
    {"instruction": "Create a loop that prints numbers from 10 down to 1.", "input": "",
     "output": "for i in range(10, 0, -1):\n    print(i)"},
    {"instruction": "Find the length of the given string.", "input": "text = \u2018Hello World\u2019",
     "output": "11"},
]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(RECORDS, f, indent=6)


if __name__ == "__main__":
    main()
