"""Final answers that can be checked: GSM8K's ``#### 42`` and LaTeX's ``\\boxed{...}``.

Self-data distillation keeps a model's rewrite of a gold answer only when both reach the same final answer;
these functions decide what the final answer is and when two are the same. They are pure and tested exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces balanced; None without one (or unclosed)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def extract_final_answer(text: str) -> str | None:
    """The final answer stated in ``text``: the last ``\\boxed{}`` if any, else what follows the last ``####``
    on its line (GSM8K), else None (nothing to check)."""
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    if "####" in text:
        answer = text.rsplit("####", 1)[1].strip().splitlines()
        if answer and answer[0].strip():
            return answer[0].strip()
    return None


def normalise_answer(answer: str) -> str:
    """Comparable form: no surrounding ``$``/space, no trailing period, inner space removed, and a number
    written canonically (thousands separators dropped, ``42.0`` -> ``42``, ``-0`` -> ``0``)."""
    text = answer.strip().removesuffix(".").strip().strip("$").strip().removesuffix(".")
    text = re.sub(r"\s+", "", text)
    if _NUMBER.match(text):
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:
            return text
        value = value.normalize()
        text = format(value, "f")
        return "0" if text in ("-0", "+0") else text.lstrip("+")
    return text


def same_final_answer(a: str, b: str) -> bool:
    """Whether two stated final answers are the same after :func:`normalise_answer`."""
    return normalise_answer(a) == normalise_answer(b)
