"""The pure algorithms the corpus stages call: content hashes, shingles and MinHash signatures, LSH
banding, near-duplicate clustering, benchmark decontamination. No pools, no stage state."""
