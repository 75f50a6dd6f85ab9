"""The lowest layer: record types, errors, statistics, Arrow spill tables, digests, YAML loading, the
work store, the output folder's guards, and the executor interface that stages receive. Nothing here
imports another part of mixer."""
