"""GPT-4 Alpaca (``alpaca_gpt4_data.json``), see SOURCES.md 2.5: Alpaca records answered by GPT-4."""

from __future__ import annotations

from mixer.sources import register
from mixer.sources.alpaca import AlpacaBase, AlpacaTemplateOptions


@register
class Gpt4Alpaca(AlpacaBase):
    name = "gpt4_alpaca"
    description = "GPT-4-LLM alpaca_gpt4_data.json: JSON array {instruction, input, output}, Tulu templates"
    license = "CC-BY-NC-4.0"
    dataset = "gpt4_alpaca"
    Options = AlpacaTemplateOptions
