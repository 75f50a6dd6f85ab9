"""Code Alpaca (``code_alpaca_20k.json``), see SOURCES.md 2.6.

The placeholder input ``"< noinput >"`` is not blank, so (as in Tulu V2) it is rendered into the
prompt with a with-input template. Some re-uploads are JSONL with another key order; the reader
detects JSON Lines inside a ``.json`` file, and the conversion reads fields by name.
"""

from __future__ import annotations

from mixer.sources import register
from mixer.sources.alpaca import AlpacaBase, AlpacaTemplateOptions


@register
class CodeAlpaca(AlpacaBase):
    name = "code_alpaca"
    description = "sahil280114/codealpaca code_alpaca_20k.json: {instruction, input, output}, Tulu templates"
    license = "CC-BY-NC-4.0"
    dataset = "code_alpaca"
    Options = AlpacaTemplateOptions
