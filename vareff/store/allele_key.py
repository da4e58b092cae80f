"""Numeric in-memory keys of stored alleles, and the compiled lookup over them.

Within one partition (one configuration, contig and 1 Mb block) an allele ``(pos, REF, ALT)``
gets a 64-bit key, built from Arrow's string buffers by a compiled loop (no per-row Python):

* bits 44-63: ``pos mod 2^20`` (a block is 10^6 < 2^20 bases wide, so keys sort in genome order);
* bit 43 = 0, **exact code** when REF and ALT are made of A, C, G, T only, 1-15 bases each and 17
  bases together: bits 39-42 ``len(REF)``, 35-38 ``len(ALT)``, bits 0-33 the bases, 2 bits each,
  REF then ALT.  Two different (REF, ALT) pairs never share a code (:func:`decode` inverts it);
* bit 43 = 1, **hashed**: any other allele (long, N, ``*``, symbolic), the low 43 bits of a
  64-bit FNV-1a hash of REF and ALT.

A lookup is a hit only when the stored row's key *and* its ``pos`` are equal and, for a hashed
key, its REF and ALT bytes are equal too; so a hash collision can only make the search look at
one more row, never return a wrong one (``tests/test_store_key.py`` forces collisions with a
2-bit hash).  The keys live in memory only and are rebuilt when a partition is read, so the
segment files are unchanged by this scheme.

A partition run's keys are sorted once; a bucket table over their top bits (about one bucket per
entry) narrows each query to a few rows, which a short binary search finishes: two or three
memory reads per query instead of a binary search over the whole partition.
"""
from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

HASH_BITS = 43  #: bits of the hash kept in a hashed key (tests lower it to force collisions)
POS_BITS = 20
HASHED = np.uint64(1 << 43)

_BASE = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _BASE[_c] = _i


def string_buffers(arr) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a non-null Arrow string array as numpy views (no copy)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not isinstance(arr, pa.Array):
        arr = pa.array(arr, pa.string())
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    _, off, data = arr.buffers()
    offsets = np.frombuffer(off, np.int32)[arr.offset:arr.offset + len(arr) + 1] if off is not None \
        else np.zeros(len(arr) + 1, np.int32)
    return offsets, (np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8))


def list_buffers(values: list) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a list of ASCII strings, without building Python-level Arrow values
    (several times faster than ``pa.array`` for a chunk); other lists go through Arrow."""
    try:  # joined by NUL, the separators give the lengths without a Python call per value
        data = "".join(values).encode("ascii")
        sep = np.flatnonzero(np.frombuffer("\0".join(values).encode("ascii"), np.uint8) == 0)
    except (TypeError, UnicodeEncodeError):  # None or non-ASCII text
        return string_buffers(pa.array(values, pa.string()))
    n = len(values)
    if len(sep) != max(n - 1, 0):  # a value holds a NUL itself
        return string_buffers(pa.array(values, pa.string()))
    offsets = np.zeros(n + 1, np.int32)
    if n:
        offsets[1:-1] = sep - np.arange(n - 1)
        offsets[-1] = len(data)
    return offsets, np.frombuffer(data, np.uint8)


@numba.njit(cache=True)
def _pack(data, lo, hi, base, code):  # pragma: no cover - compiled
    """Append the 2-bit codes of ``data[lo:hi]`` to ``code``; ``(code, False)`` at a base other than ACGT."""
    for j in range(lo, hi):
        c = base[data[j]]
        if c == 255:
            return code, False
        code = (code << np.uint64(2)) | np.uint64(c)
    return code, True


@numba.njit(cache=True)
def _keys(pos, roff, rdata, aoff, adata, base, hash_mask):  # pragma: no cover - compiled
    n = len(pos)
    out = np.empty(n, np.uint64)
    for i in range(n):
        r0, r1, a0, a1 = roff[i], roff[i + 1], aoff[i], aoff[i + 1]
        lr, la = r1 - r0, a1 - a0
        exact = 1 <= lr <= 15 and 1 <= la <= 15 and lr + la <= 17
        code = np.uint64(0)
        if exact:
            code, exact = _pack(rdata, r0, r1, base, code)
        if exact:
            code, exact = _pack(adata, a0, a1, base, code)
        top = np.uint64(pos[i] & 0xFFFFF) << np.uint64(44)
        if exact:
            out[i] = top | (np.uint64(lr) << np.uint64(39)) | (np.uint64(la) << np.uint64(35)) | code
        else:
            h = np.uint64(14695981039346656037)
            for j in range(r0, r1):
                h = (h ^ np.uint64(rdata[j])) * np.uint64(1099511628211)
            h = (h ^ np.uint64(256)) * np.uint64(1099511628211)  # REF | ALT separator (not a byte value)
            for j in range(a0, a1):
                h = (h ^ np.uint64(adata[j])) * np.uint64(1099511628211)
            out[i] = top | np.uint64(1 << 43) | (h & hash_mask)
    return out


def allele_keys(pos: np.ndarray, ref, alt) -> np.ndarray:
    """uint64 key of each (pos, REF, ALT) row (see the module doc); ``ref``/``alt``: Arrow strings."""
    roff, rdata = string_buffers(ref)
    aoff, adata = string_buffers(alt)
    return _keys(np.ascontiguousarray(pos, np.int64), roff, rdata, aoff, adata, _BASE,
                 np.uint64((1 << HASH_BITS) - 1))


def decode(key: int) -> tuple[int, str, str] | None:
    """(pos mod 2^20, REF, ALT) of an exact key; None for a hashed key (used by tests)."""
    key = int(key)
    if key >> 43 & 1:
        return None
    lr, la, code = key >> 39 & 15, key >> 35 & 15, key & ((1 << 34) - 1)
    bases = "".join("ACGT"[code >> (2 * (lr + la - 1 - i)) & 3] for i in range(lr + la))
    return key >> 44, bases[:lr], bases[lr:]


@numba.njit(cache=True)
def _same(off1, data1, i, off2, data2, j):  # pragma: no cover - compiled
    a0, a1, b0, b1 = off1[i], off1[i + 1], off2[j], off2[j + 1]
    if a1 - a0 != b1 - b0:
        return False
    for k in range(a1 - a0):
        if data1[a0 + k] != data2[b0 + k]:
            return False
    return True


@numba.njit(cache=True)
def _find(skeys, order, starts, shift, pos, roff, rdata, aoff, adata,
          qidx, qkeys, qpos, qroff, qrdata, qaoff, qadata, out_row):  # pragma: no cover - compiled
    for t in range(len(qidx)):
        if out_row[t] >= 0:
            continue
        q = qidx[t]
        k = qkeys[q]
        b = k >> shift
        lo, hi = starts[b], starts[b + 1]
        while lo < hi:  # first sorted key >= k within the bucket
            mid = (lo + hi) >> 1
            if skeys[mid] < k:
                lo = mid + 1
            else:
                hi = mid
        j = lo
        while j < len(skeys) and skeys[j] == k:
            r = order[j]
            if pos[r] == qpos[q] and ((k & np.uint64(1 << 43)) == 0 or (
                    _same(roff, rdata, r, qroff, qrdata, q) and _same(aoff, adata, r, qaoff, qadata, q))):
                out_row[t] = r
                break
            j += 1


class Queries:
    """One chunk's alleles, keyed once: pos, keys and the string buffers of REF and ALT."""

    def __init__(self, pos: np.ndarray, ref, alt):
        """``ref``/``alt``: Arrow string arrays or sequences of str."""
        self.pos = np.ascontiguousarray(pos, np.int64)
        self.ref, self.alt = (string_buffers(v) if isinstance(v, (pa.Array, pa.ChunkedArray)) else list_buffers(v)
                              for v in (ref, alt))
        self.keys = _keys(self.pos, *self.ref, *self.alt, _BASE, np.uint64((1 << HASH_BITS) - 1))


class KeyIndex:
    """The sorted keys of one table of stored alleles, with a bucket table over their top bits."""

    def __init__(self, pos: np.ndarray, ref, alt):
        self.pos = np.ascontiguousarray(pos, np.int64)
        self.ref, self.alt = string_buffers(ref), string_buffers(alt)  # views: the table must stay alive
        keys = _keys(self.pos, *self.ref, *self.alt, _BASE, np.uint64((1 << HASH_BITS) - 1))
        order = np.argsort(keys, kind="stable")  # rows mostly arrive in genome order: near-linear
        self.skeys = keys[order]
        self.order = order.astype(np.int32)  # half the memory (a partition holds far fewer than 2^31 rows)
        bits = int(min(POS_BITS, max(1, int(np.ceil(np.log2(max(len(keys), 2)))))))
        self.shift = np.uint64(64 - bits)
        counts = np.bincount((self.skeys >> self.shift).astype(np.int64), minlength=1 << bits)
        self.starts = np.zeros((1 << bits) + 1, np.int32)
        np.cumsum(counts, out=self.starts[1:])

    def find(self, q: Queries, qidx: np.ndarray, out_row: np.ndarray) -> None:
        """Fill ``out_row[t]`` with the row of query ``qidx[t]`` where it is -1 and the key is stored."""
        if len(self.skeys) and len(qidx):
            _find(self.skeys, self.order, self.starts, self.shift, self.pos, *self.ref, *self.alt,
                  qidx, q.keys, q.pos, *q.ref, *q.alt, out_row)
