"""Numeric in-memory keys of stored alleles, and the vectorized lookup over them.

Within one partition (one configuration, contig and 1 Mb block) an allele ``(pos, REF, ALT)``
gets a 64-bit key, built from Arrow's string buffers with numpy (no per-row Python for the
usual short alleles):

* bits 44-63: ``pos mod 2^20`` (a block is 10^6 < 2^20 bases wide, so keys sort in genome order);
* bit 43 = 0, **exact code** when REF and ALT are made of A, C, G, T only, 1-15 bases each and 17
  bases together: bits 39-42 ``len(REF)``, 35-38 ``len(ALT)``, bits 0-33 the bases, 2 bits each,
  REF then ALT.  Two different (REF, ALT) pairs never share a code (:func:`decode` inverts it);
* bit 43 = 1, **hashed**: any other allele (long, N, ``*``, symbolic), the low 43 bits of a
  64-bit BLAKE2b of REF's length, REF and ALT (one Python call per such allele).

A lookup is a hit only when the stored row's key *and* its ``pos`` are equal and, for a hashed
key, its REF and ALT bytes are equal too; so a hash collision can only make the search look at
one more row, never return a wrong one (``tests/test_store_key.py`` forces collisions with a
2-bit hash).  The keys live in memory only and are rebuilt when a partition is read, so the
segment files are unchanged by this scheme.

A partition run's keys are sorted once, with a bucket table over their top bits (about one
bucket per entry); a chunk's queries are a few vectorized binary-search steps inside their
buckets.  numpy only,
on purpose: loading compiled (numba) functions costs about a second of start-up, more than a
whole warm re-run of a gene panel spends on its lookups.
"""
from __future__ import annotations

import hashlib

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


def _exact_codes(roff, rdata, aoff, adata, lr, la, ok):
    """2-bit codes of REF+ALT for the rows ``ok`` (lengths fit); clears ``ok`` where a base is not ACGT.
    Each base's bits land in their own place, so a per-row sum (``bincount``: exact below 2^53) is the code."""
    rows = np.flatnonzero(ok)
    code = np.zeros(len(ok), np.float64)
    if not len(rows):
        return code.astype(np.uint64)
    # REF base j sits above all of ALT (shift 2*(lr+la-1-j)); ALT base j at 2*(la-1-j)
    for off, data, lens, top in ((roff, rdata, lr, lr + la), (aoff, adata, la, la)):
        n_b = lens[rows]
        row_of = np.repeat(rows, n_b)
        j = np.arange(len(row_of)) - np.repeat(np.cumsum(n_b) - n_b, n_b)  # index within the string
        b = _BASE[data[np.repeat(off[rows], n_b) + j]]
        bad = b == 255
        if bad.any():
            ok[row_of[bad]] = False
        shift = 2 * (np.repeat(top[rows], n_b) - 1 - j)
        code += np.bincount(row_of, weights=b * np.exp2(shift), minlength=len(ok))
    return code.astype(np.uint64)


def _hashed(roff, rdata, aoff, adata, rows, mask: int) -> np.ndarray:
    """The low bits of a 64-bit BLAKE2b of (len(REF), REF, ALT) for each of ``rows`` (rare: long, N, symbolic)."""
    out = np.empty(len(rows), np.uint64)
    rb, ab = rdata.tobytes(), adata.tobytes()
    for t, i in enumerate(rows.tolist()):
        ref, alt = rb[roff[i]:roff[i + 1]], ab[aoff[i]:aoff[i + 1]]
        h = hashlib.blake2b(len(ref).to_bytes(4, "little") + ref + alt, digest_size=8).digest()
        out[t] = int.from_bytes(h, "little") & mask
    return out


def _keys(pos, roff, rdata, aoff, adata) -> np.ndarray:
    """uint64 key of each row (see the module doc), vectorized over the rows."""
    lr, la = np.diff(roff).astype(np.int64), np.diff(aoff).astype(np.int64)
    snv = (lr == 1) & (la == 1)
    if snv.all():  # the usual chunk: one base each, two lookups per row
        br, ba = _BASE[rdata[roff[:-1]]], _BASE[adata[aoff[:-1]]]
        ok = (br != 255) & (ba != 255)
        code = (br.astype(np.uint64) << np.uint64(2)) | ba.astype(np.uint64)
    else:
        ok = (lr >= 1) & (lr <= 15) & (la >= 1) & (la <= 15) & (lr + la <= 17)
        code = _exact_codes(roff, rdata, aoff, adata, lr, la, ok)
    top = (pos.astype(np.uint64) & np.uint64(0xFFFFF)) << np.uint64(44)
    out = top | (lr.astype(np.uint64) << np.uint64(39)) | (la.astype(np.uint64) << np.uint64(35)) | code
    hashed = np.flatnonzero(~ok)
    if len(hashed):
        out[hashed] = top[hashed] | HASHED | _hashed(roff, rdata, aoff, adata, hashed, (1 << HASH_BITS) - 1)
    return out


def allele_keys(pos: np.ndarray, ref, alt) -> np.ndarray:
    """uint64 key of each (pos, REF, ALT) row (see the module doc); ``ref``/``alt``: Arrow strings."""
    roff, rdata = string_buffers(ref)
    aoff, adata = string_buffers(alt)
    return _keys(np.ascontiguousarray(pos, np.int64), roff, rdata, aoff, adata)


def decode(key: int) -> tuple[int, str, str] | None:
    """(pos mod 2^20, REF, ALT) of an exact key; None for a hashed key (used by tests)."""
    key = int(key)
    if key >> 43 & 1:
        return None
    lr, la, code = key >> 39 & 15, key >> 35 & 15, key & ((1 << 34) - 1)
    bases = "".join("ACGT"[code >> (2 * (lr + la - 1 - i)) & 3] for i in range(lr + la))
    return key >> 44, bases[:lr], bases[lr:]


def _same(off1, data1, i, off2, data2, j) -> bool:
    return data1[off1[i]:off1[i + 1]].tobytes() == data2[off2[j]:off2[j + 1]].tobytes()


class Queries:
    """One chunk's alleles, keyed once: pos, keys and the string buffers of REF and ALT."""

    def __init__(self, pos: np.ndarray, ref, alt):
        """``ref``/``alt``: Arrow string arrays or sequences of str."""
        self.pos = np.ascontiguousarray(pos, np.int64)
        self.ref, self.alt = (string_buffers(v) if isinstance(v, (pa.Array, pa.ChunkedArray)) else list_buffers(v)
                              for v in (ref, alt))
        self.keys = _keys(self.pos, *self.ref, *self.alt)


class KeyIndex:
    """The sorted keys of one table of stored alleles."""

    def __init__(self, pos: np.ndarray, ref, alt):
        self.pos = np.ascontiguousarray(pos, np.int64)
        self.ref, self.alt = string_buffers(ref), string_buffers(alt)  # views: the table must stay alive
        keys = _keys(self.pos, *self.ref, *self.alt)
        order = np.argsort(keys, kind="stable")  # rows mostly arrive in genome order: near-linear
        self.skeys = keys[order]
        self.order = order.astype(np.int32)  # half the memory (a partition holds far fewer than 2^31 rows)
        # buckets over the keys' top bits (about one per entry, at most one per position)
        bits = int(min(POS_BITS, max(1, int(np.ceil(np.log2(max(len(keys), 2)))))))
        self.shift = np.uint64(64 - bits)
        self.starts = np.zeros((1 << bits) + 1, np.int64)
        np.cumsum(np.bincount((self.skeys >> self.shift).astype(np.int64), minlength=1 << bits), out=self.starts[1:])

    def _first_at_least(self, k: np.ndarray) -> np.ndarray:
        """Sorted position of the first stored key >= each ``k``: a binary search inside each
        key's bucket, vectorized over the queries (a few steps: buckets hold a few keys)."""
        b = (k >> self.shift).astype(np.int64)
        lo, hi = self.starts[b], self.starts[b + 1]
        last = len(self.skeys) - 1
        while True:
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) >> 1
            less = active & (self.skeys[np.minimum(mid, last)] < k)
            lo = np.where(less, mid + 1, lo)
            hi = np.where(active & ~less, mid, hi)

    def find(self, q: Queries, qidx: np.ndarray, out_row: np.ndarray) -> None:
        """Fill ``out_row[t]`` with the row of query ``qidx[t]`` where it is -1 and the key is stored."""
        if not len(self.skeys) or not len(qidx):
            return
        t = np.flatnonzero(out_row < 0)
        qi = qidx[t]
        k = q.keys[qi]
        j = self._first_at_least(k)
        j_in = np.minimum(j, len(self.skeys) - 1)
        r = self.order[j_in]
        same_key = (j < len(self.skeys)) & (self.skeys[j_in] == k)
        exact = same_key & ((k & HASHED) == 0) & (self.pos[r] == q.pos[qi])  # the allele itself
        out_row[t[exact]] = r[exact]
        for u in np.flatnonzero(same_key & ~exact).tolist():  # hashed keys (rare): compare the bytes
            self._scan(q, int(qi[u]), int(j[u]), out_row, int(t[u]))

    def _scan(self, q: Queries, i: int, j: int, out_row: np.ndarray, t: int) -> None:
        """The first row from sorted position ``j`` on with query ``i``'s key, pos and bytes."""
        k = q.keys[i]
        while j < len(self.skeys) and self.skeys[j] == k:
            r = int(self.order[j])
            if self.pos[r] == q.pos[i] and _same(*self.ref, r, *q.ref, i) and _same(*self.alt, r, *q.alt, i):
                out_row[t] = r
                return
            j += 1
