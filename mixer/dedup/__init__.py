"""Deduplication stages: exact (``mixer.dedup.exact``) and near-duplicate (``mixer.dedup.near``).

Kept import-free so that importing the exact stage does not load numpy or datasketch.
"""
