"""Alpaca-format instruction data: a JSON array (or JSONL) of ``{"instruction", "input", "output"}``.

One implementation serves GPT-4 Alpaca, Code Alpaca (thin subclasses in their own modules) and
users' own Alpaca files (this ``alpaca`` adapter, with the ``dataset`` label as an option).

With ``templates: tulu`` the prompt is rendered as open-instruct does for Tulu V2 (a weighted random
template per record, see ``_alpaca_templates``). The template is drawn from
``SourceContext.rng_for(record ordinal)`` rather than one global ``random`` stream, so a record's
prompt depends only on the seed and its position in the file, not on which records were read or
sampled before it. That is a deliberate deviation: open-instruct draws after ``random.sample``, so
its exact template choices cannot be reproduced anyway. With ``templates: plain`` the prompt is the
instruction plus the input after a blank line, which makes identical records in different sources
render identically (useful for cross-source deduplication).

Ids are ``<dataset>_<ordinal in the file>`` (open-instruct numbered the records after sampling), with the
file's stem before the ordinal when the source reads several files. The ``alpaca`` adapter's
``dataset`` defaults to the recipe's source name, so two Alpaca sources never share a label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from mixer.core.errors import Location
from mixer.core.records import Record, make_record, msg
from mixer.sources import register
from mixer.sources._alpaca_templates import render_plain, render_tulu
from mixer.sources.base import Adapter, require_dict, require_str


@dataclass(frozen=True)
class AlpacaTemplateOptions:
    #: label written to each record's ``dataset`` and used as the id prefix (default: the published
    #: label, e.g. ``code_alpaca``); give two sources of one adapter their own labels
    dataset: str | None = None
    #: "tulu": open-instruct's weighted random templates; "plain": instruction + input, no template
    templates: Literal["tulu", "plain"] = "tulu"


@dataclass(frozen=True)
class AlpacaOptions:
    #: label written to each record's ``dataset`` and used as the id prefix (default: the source's name)
    dataset: str | None = None
    #: "tulu": open-instruct's weighted random templates; "plain": instruction + input, no template
    templates: Literal["tulu", "plain"] = "tulu"


class AlpacaBase(Adapter):
    """Shared conversion; subclasses set ``name``, ``dataset`` (or the option) and the licence."""

    #: the record label when the options have no ``dataset`` field
    dataset: ClassVar[str] = "alpaca"

    def dataset_label(self) -> str:
        return getattr(self.options, "dataset", None) or (self.context.source if isinstance(self.options, AlpacaOptions)
                                                          else self.dataset)

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        raw = require_dict(raw)
        instruction = require_str(raw, "instruction")
        # a missing or null input is the same as "" (some re-exports drop empty fields)
        input_text = require_str(raw, "input", allow_none=True) if "input" in raw else ""
        output = require_str(raw, "output")
        if self.options.templates == "plain":
            prompt, completion = render_plain(instruction, input_text, output)
        else:
            prompt, completion = render_tulu(instruction, input_text, output,
                                             self.context.rng_for(location.record))
        dataset = self.dataset_label()
        yield make_record(dataset, self.numbered_id(dataset, location),
                          [msg("user", prompt), msg("assistant", completion)])


@register
class Alpaca(AlpacaBase):
    name = "alpaca"
    description = "Alpaca-format JSON array or JSONL {instruction, input, output}; prompt templates optional"
    license = None
    Options = AlpacaOptions
