"""The curation stages, one module each, in pipeline order (``STAGES``).

record-level, inside each read unit (a batch of one source's records in, kept records and drops
with reasons out; ``mixer.stages.base.RecordStage``):

- ``read``: the source's adapter converts raw items to canonical records (``mixer.sources``);
- ``normalise``: NFC, whitespace, empty turns, turn order;
- ``filter``: mentions of other LLMs, turn counts;

corpus-level, over all sources' candidates (``run(ctx)`` of a ``StageContext``, the one shape
``mixer.stages.base.Stage`` that ``mixer.build`` loops over; pure work goes through the executor's
``map``/``scatter``, drops through the one ``DropSink``):

- ``exact_dedup``: first copy of each conversation, in recipe order;
- ``near_dedup``: MinHash LSH clusters, keeper from the source listed first;
- ``decontaminate``: prompts that overlap an evaluation benchmark;
- ``select``: seeded sample per source with ``max_tokens``, then repeat and one global shuffle;
- ``write``: sharded Parquet and ``dropped/``;
- ``card``: the numbers of ``card.json``.

Beside them: ``base`` (the contract), ``candidates`` (a record as the Arrow row the corpus stages
read), ``read_cache`` and ``signature_cache`` (what read and near dedup keep between builds). The
algorithms they call are pure modules with no pools and no stage state (``mixer.kernels``,
``mixer.tokens``); where the work runs is ``mixer.engine``; the order and the timing are ``mixer.build``.
"""

STAGES = ("read", "normalise", "filter", "exact_dedup", "near_dedup", "decontaminate", "select", "write", "card")
