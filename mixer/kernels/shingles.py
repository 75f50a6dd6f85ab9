"""Vectorised word tokens, word n-gram shingles and MinHash signatures (numpy, no per-token Python).

Why this exists: datasketch's ``MinHash.bulk`` hashes about 0.5 M shingles/s per core in Python;
a Tulu V2-size mixture has on the order of 10^8 word 5-gram shingles. Here a whole batch of texts is
turned into one byte array and every step (tokenising, hashing words, combining n-grams, applying
the ``num_perm`` permutations, the per-record minimum) is a numpy operation over the whole batch.

The signatures are *exactly* datasketch's: ``MinHash(num_perm, seed, scheme="affine32",
hashfunc=shingle_hash32)`` updated with the record's shingles (tuples of word strings) gives the
same ``hashvalues`` (the tests check this), so ``LeanMinHash``/``MinHashLSH`` accept them as they are.

What a word is (``tokenize`` is the readable reference; the numpy path must agree with it):

* ASCII letters and digits form words; every other ASCII character (space, punctuation, ``_``) is a
  separator. ASCII is case-folded here; ``key_text`` applies full Unicode ``str.lower()`` first.
* Non-ASCII characters are word characters, except punctuation and spacing code points, which
  separate: U+0080-U+00BF (Latin-1 controls, NBSP, ``¡ « » ¿ ©`` ...), ``× ÷``, U+2000-U+206F
  (General Punctuation: typographic quotes, dashes, ellipsis, zero-width spaces), U+3000-U+303F
  (CJK punctuation: ideographic space, ``、。「」``) and the fullwidth ASCII punctuation in
  U+FF01-U+FF65.
* Kana (U+3040-U+30FF) and CJK ideographs (U+3400-U+9FFF) are one token per character, since those
  scripts do not separate words with spaces and a whole sentence would otherwise be one "word".
* Characters outside the Basic Multilingual Plane (emoji, rare CJK) are word characters.

So ``"Hello, World!"`` and ``"hello world"`` shingle identically, which is what near-dedup wants.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# -- character classes -------------------------------------------------------------------------

_SEP_RANGES = (
    (0x0080, 0x00BF), (0x00D7, 0x00D7), (0x00F7, 0x00F7), (0x2000, 0x206F), (0x3000, 0x303F),
    (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65),
)
_SINGLE_RANGES = ((0x3040, 0x30FF), (0x3400, 0x9FFF))

_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True
_LOWER_BYTE = np.arange(256, dtype=np.uint8)
_LOWER_BYTE[ord("A"):ord("Z") + 1] += 32

_M64 = (1 << 64) - 1
#: odd multipliers of the polynomial hashes over bytes (words) and over word hashes (shingles)
_P_BYTE = 0x100000001B3 * 0x9E3779B97F4A7C15 & _M64 | 1
_P_WORD = 0xC2B2AE3D27D4EB4F
_WORD_SALT = 0x9E3779B97F4A7C15
_SHINGLE_SALT = 0xD6E8FEB86659FD93


def _in_ranges(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _char_class(ch: str) -> int:
    """0 separator, 1 word character, 2 a character that is a token by itself."""
    cp = ord(ch)
    if cp < 0x80:
        return 1 if ch.isascii() and ch.isalnum() else 0
    if _in_ranges(cp, _SEP_RANGES):
        return 0
    if _in_ranges(cp, _SINGLE_RANGES):
        return 2
    return 1


def tokenize(text: str) -> list[str]:
    """The word tokens of ``text`` (reference implementation; slow, for tests and explanations)."""
    tokens: list[str] = []
    cur: list[str] = []
    for ch in text:
        cls = _char_class(ch)
        if cls == 1:
            cur.append(ch.lower() if ch.isascii() else ch)
            continue
        if cur:
            tokens.append("".join(cur))
            cur = []
        if cls == 2:
            tokens.append(ch)
    if cur:
        tokens.append("".join(cur))
    return tokens


# -- 64-bit mixing -----------------------------------------------------------------------------

def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = h * 0xFF51AFD7ED558CCD & _M64
    h ^= h >> 33
    h = h * 0xC4CEB9FE1A85EC53 & _M64
    return h ^ (h >> 33)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def word_hash(token: str) -> int:
    """Stable 64-bit hash of one token: a polynomial over its UTF-8 bytes, then the murmur finaliser."""
    h = 0
    for byte in token.encode("utf-8", "surrogatepass"):
        h = (h * _P_BYTE + byte) & _M64
    return _fmix64_int(h ^ _WORD_SALT)


def shingle_hash64(tokens: Sequence[str]) -> int:
    """Stable 64-bit hash of a shingle (a tuple of up to ``ngram`` tokens)."""
    s = 0
    for t in tokens:
        s = (s * _P_WORD + word_hash(t)) & _M64
    return _fmix64_int(s ^ (len(tokens) * _SHINGLE_SALT & _M64))


def shingle_hash32(tokens: Sequence[str]) -> int:
    """The 32-bit input hash datasketch's ``affine32`` scheme gets (use it as MinHash's ``hashfunc``)."""
    return shingle_hash64(tokens) >> 32


def shingles(tokens: Sequence[str], ngram: int) -> list[tuple[str, ...]]:
    """Word n-grams; a text shorter than ``ngram`` words is one shingle of all its words."""
    if not tokens:
        return []
    if len(tokens) < ngram:
        return [tuple(tokens)]
    return [tuple(tokens[i:i + ngram]) for i in range(len(tokens) - ngram + 1)]


# -- vectorised tokens -------------------------------------------------------------------------

_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^j and P^-j (mod 2^64) for j < n, grown on demand and cached per process."""
    have = _pow_cache.get("p")
    if have is None or len(have) < n:
        size = max(n, 1 << 20, 0 if have is None else 2 * len(have))
        p = np.full(size, _P_BYTE, dtype=np.uint64)
        p[0] = 1
        inv = np.full(size, pow(_P_BYTE, -1, 1 << 64), dtype=np.uint64)
        inv[0] = 1
        _pow_cache["p"] = np.cumprod(p, dtype=np.uint64)
        _pow_cache["inv"] = np.cumprod(inv, dtype=np.uint64)
    return _pow_cache["p"], _pow_cache["inv"]


def token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every token of every text, and per-text offsets into them (len(texts) + 1).

    Equal to ``[word_hash(t) for t in tokenize(text)]`` text by text, computed for the whole batch
    at once: texts are joined with a newline (a separator, so tokens never span texts), each byte is
    classified with a lookup table, the few non-ASCII code points are decoded and classified with
    numpy range checks, and each token's polynomial hash is read off a prefix sum.
    """
    n_texts = len(texts)
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    buf = b"\n".join(encoded) + b"\n"
    raw = np.frombuffer(buf, dtype=np.uint8)
    n = len(raw)
    lens = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n_texts)
    text_start = np.zeros(n_texts + 1, dtype=np.int64)
    np.cumsum(lens + 1, out=text_start[1:])

    word = _WORD_BYTE[raw]
    split = np.zeros(n + 4, dtype=bool)  # a token boundary is forced before this byte
    lead = np.flatnonzero(raw >= 0xC2)
    if len(lead):
        b0 = raw[lead].astype(np.int64)
        b1 = raw[np.minimum(lead + 1, n - 1)].astype(np.int64) & 0x3F
        b2 = raw[np.minimum(lead + 2, n - 1)].astype(np.int64) & 0x3F
        two = b0 < 0xE0
        three = (b0 >= 0xE0) & (b0 < 0xF0)
        cp = np.where(two, ((b0 & 0x1F) << 6) | b1, ((b0 & 0x0F) << 12) | (b1 << 6) | b2)
        sep = np.zeros(len(lead), dtype=bool)
        for lo, hi in _SEP_RANGES:
            sep |= (cp >= lo) & (cp <= hi)
        sep &= two | three
        single = np.zeros(len(lead), dtype=bool)
        for lo, hi in _SINGLE_RANGES:
            single |= (cp >= lo) & (cp <= hi)
        single &= three
        s2 = lead[sep & two]
        word[s2] = False
        word[s2 + 1] = False
        s3 = lead[sep & three]
        word[s3] = False
        word[s3 + 1] = False
        word[s3 + 2] = False
        one = lead[single]
        split[one] = True
        split[one + 3] = True
    split = split[:n]
    prev = np.empty(n, dtype=bool)
    prev[0] = False
    prev[1:] = word[:-1]
    starts = np.flatnonzero(word & (~prev | split))
    # a token ends (exclusive) at e when byte e-1 is a word byte and e is not, or e is a forced split
    ends = np.flatnonzero(prev & (~word | split))

    p_pow, p_inv = _powers(n + 1)
    weighted = _LOWER_BYTE[raw].astype(np.uint64)
    weighted *= p_inv[:n]
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(weighted, out=prefix[1:])
    del weighted
    h = (prefix[ends] - prefix[starts]) * p_pow[ends - 1]
    h ^= np.uint64(_WORD_SALT)
    h = _fmix64(h)
    offsets = np.searchsorted(starts, text_start).astype(np.int64)
    return h, offsets


def shingle_hashes(tok: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit shingle hashes (``shingle_hash64``) of every text, and per-text offsets into them."""
    n_texts = len(offsets) - 1
    counts = np.diff(offsets)
    total = len(tok)
    if total == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(n_texts + 1, dtype=np.int64)
    rec = np.repeat(np.arange(n_texts), counts)
    rec_end = offsets[1:][rec]
    pos = np.arange(total)
    width = np.full(total, ngram, dtype=np.int64)
    valid = pos + ngram <= rec_end
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):
        valid[offsets[short]] = True
        width[offsets[short]] = counts[short]
    start = np.flatnonzero(valid)
    w = width[start]
    padded = np.concatenate([tok, np.zeros(ngram, dtype=np.uint64)])
    acc = np.zeros(len(start), dtype=np.uint64)
    mult = np.uint64(_P_WORD)
    for k in range(ngram):
        upd = acc * mult + padded[start + k]
        acc = np.where(k < w, upd, acc)
    acc ^= w.astype(np.uint64) * np.uint64(_SHINGLE_SALT)
    acc = _fmix64(acc)
    per_text = np.bincount(rec[start], minlength=n_texts)
    sh_off = np.zeros(n_texts + 1, dtype=np.int64)
    np.cumsum(per_text, out=sh_off[1:])
    return acc, sh_off


# -- MinHash ------------------------------------------------------------------------------------

_perm_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
EMPTY_HASH = np.uint32(0xFFFFFFFF)
#: shingles per block of the permutation loop: one block's products stay in the L2 cache
_BLOCK = 1 << 16


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own ``affine32`` permutation parameters (a, b), so signatures interoperate."""
    key = (num_perm, seed)
    if key not in _perm_cache:
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        _perm_cache[key] = (np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32))
    return _perm_cache[key]


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def minhash_from_shingles(sh64: np.ndarray, sh_off: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(n_texts, num_perm) uint32 signatures; a text without shingles gets the empty signature."""
    a, b = permutations(num_perm, seed)
    n_texts = len(sh_off) - 1
    sig = np.full((n_texts, num_perm), EMPTY_HASH, dtype=np.uint32)
    if len(sh64) == 0:
        return sig
    hv = _fmix32((sh64 >> np.uint64(32)).astype(np.uint32))
    nonempty = np.flatnonzero(np.diff(sh_off) > 0)
    seg_start = sh_off[nonempty]
    # blocks of whole texts holding about _BLOCK shingles each
    cuts = np.unique(np.searchsorted(seg_start, np.arange(0, len(hv), _BLOCK)))
    cuts = np.append(cuts, len(nonempty))
    tmp = np.empty(_BLOCK + int(np.diff(sh_off).max()), dtype=np.uint32)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if lo == hi:
            continue
        s0 = int(seg_start[lo])
        s1 = int(sh_off[nonempty[hi - 1] + 1])
        block = hv[s0:s1]
        rel = seg_start[lo:hi] - s0
        t = tmp[: len(block)]
        out = np.empty((num_perm, hi - lo), dtype=np.uint32)
        for k in range(num_perm):
            np.multiply(block, a[k], out=t)
            t += b[k]
            np.minimum.reduceat(t, rel, out=out[k])
        sig[nonempty[lo:hi]] = out.T
    return sig


def signatures_of(texts: Sequence[str], ngram: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of a batch of texts in this process (see ``mixer.kernels.near.signatures``)."""
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    # sub-batches of a few MB bound the per-byte uint64 temporaries
    i = 0
    while i < len(texts):
        j, size = i, 0
        while j < len(texts) and (size < 2_000_000 or j == i):
            size += len(texts[j])
            j += 1
        tok, off = token_hashes(texts[i:j])
        sh, sh_off = shingle_hashes(tok, off, ngram)
        out[i:j] = minhash_from_shingles(sh, sh_off, num_perm, seed)
        i = j
    return out


def sign_chunk(texts: list[str], ngram: int, num_perm: int, seed: int,
               perms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Worker entry point: ``signatures_of(texts, ngram, num_perm, seed)``.

    The caller passes datasketch's permutation parameters along, so a worker never imports
    datasketch (and scipy with it).
    """
    _perm_cache.setdefault((num_perm, seed), perms)
    return signatures_of(texts, ngram, num_perm, seed)
