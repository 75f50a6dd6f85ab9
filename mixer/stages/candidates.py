"""A source's candidates: each record that passed the read (or the gate after sampling) as one Arrow row.

The row carries what the corpus stages need without the record's Python form: the messages (and a
preference pair's rejected side and ratings), the file it came from, exact dedup's content ``hash`` of
the record's key messages (``mixer.stages.exact_dedup.content_hash``) and, for sources whose every record
may reach the output, its token count (``mixer.tokens.count``). The read stage and select's gate write
them; every later stage reads them back a batch at a time (``mixer.core.tables.SpillFiles``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mixer.core.records import CANDIDATE_SCHEMA, Record, record_key_messages
from mixer.core.workstore import IpcWriter, WorkPath
from mixer.stages.exact_dedup import content_hash
from mixer.tokens.count import TokenCounter, count_record_tokens


class CandidateStore:
    """Streams records to an Arrow IPC file in batches, so a large source never sits in memory as
    Python dicts (or at all: later stages read it back a batch at a time, see ``SpillFiles``).

    With a token counter, tokens are counted per batch while reading (used for sources whose every
    record is a candidate for the output, ``take: all``).
    """

    def __init__(self, path: WorkPath, counter: TokenCounter | None = None, batch_rows: int = 10_000,
                 preference_key: str = "pair") -> None:
        self.path = path
        #: exact dedup's key of a preference pair (``record_key_messages``), hashed into ``hash``
        self.preference_key = preference_key
        self._rows: list[dict[str, Any]] = []
        self._writer = IpcWriter(path, CANDIDATE_SCHEMA)
        self._counter = counter
        self._batch_rows = batch_rows
        self.rows = 0

    def add(self, record: Record, file_index: int) -> None:
        self._rows.append({"dataset": record["dataset"], "id": record["id"], "messages": record["messages"],
                           "rejected": record.get("rejected"), "file_index": file_index,
                           "score_chosen": record.get("score_chosen"), "score_rejected": record.get("score_rejected"),
                           "hash": content_hash(record_key_messages(record, self.preference_key)), "n_tokens": None})
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        if self._counter is not None:
            counts = count_record_tokens(self._counter, self._rows)  # type: ignore[arg-type]
            for row, n in zip(self._rows, counts, strict=True):
                row["n_tokens"] = n
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=CANDIDATE_SCHEMA))
        self.rows += len(self._rows)
        self._rows = []

    def close(self) -> WorkPath:
        self._flush()
        self._writer.close()
        return self.path
