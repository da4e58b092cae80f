"""Split, classify, REF-check and trim the alleles of a column chunk in one compiled pass.

The columnar reader (vareff/read/columnar.py) vouches that every REF is ASCII letters and every
ALT token printable ASCII, and a chunk never spans two contigs.  For such a chunk this module
does what :func:`vareff.normalize.alleles.split_series` does with ~30 polars expressions, as numba
loops over the Arrow buffers (offsets + bytes) of REF and ALT: the same statuses, the same
trimmed alleles and variant types, byte for byte (tests/test_host_path.py compares the two).
"""
from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from vareff.errors import Status
from vareff.normalize.alleles import SPAN_FETCH_LIMIT, AlleleRows, ArrowAlleleRows

# input status codes (``NO_ALT_EQ``: ALT equal to REF, which is still trimmed, unlike ``NO_ALT``)
OK, NO_ALT, SYMBOLIC, INVALID, TOO_LONG, NO_CONTIG, OUTSIDE, MISMATCH, N_REF, NO_ALT_EQ = range(10)
STATUS_TEXT = pa.array([Status.OK.value, Status.NO_ALT.value, Status.SYMBOLIC_ALLELE.value,
                        Status.INVALID_ALLELE.value, Status.ALLELE_TOO_LONG.value, Status.CONTIG_NOT_IN_FASTA.value,
                        Status.OUTSIDE_FASTA.value, Status.REF_MISMATCH.value, Status.N_IN_WINDOW.value,
                        Status.NO_ALT.value], pa.large_string())
#: variant types by code (0: none given, a null)
TYPE_TEXT = pa.array([None, "none", "insertion", "deletion", "snv", "mnv", "complex", "symbolic"], pa.large_string())


@numba.njit(cache=True, nogil=True, inline="always")
def _up(c):
    return c - 32 if 97 <= c <= 122 else c


@numba.njit(cache=True, nogil=True, inline="always")
def _alpha(c):
    return 65 <= c <= 90 or 97 <= c <= 122


@numba.njit(cache=True, nogil=True, inline="always")
def _base(c):
    u = _up(c)
    return u == 65 or u == 67 or u == 71 or u == 84 or u == 78


@numba.njit(cache=True, nogil=True)
def _symbolic(a, s, e):
    """``SYMBOLIC_PATTERN`` on ``a[s:e]``: ``<..``, a bracket, ``*``, ``.ACGT`` or ``ACGT.``."""
    n = e - s
    if n >= 1 and a[s] == 60:
        return True
    for j in range(s, e):
        if a[j] == 91 or a[j] == 93:
            return True
    if n == 1 and a[s] == 42:
        return True
    if n >= 2 and (a[s] == 46 or a[e - 1] == 46):
        lo, hi = (s + 1, e) if a[s] == 46 else (s, e - 1)
        for j in range(lo, hi):
            if not _alpha(a[j]):
                return False
        return True
    return False


@numba.njit(cache=True, nogil=True)
def classify_codes(rdata, roff, rec, adata, aoff, max_len):
    """Per allele, the input status code before the REF check (the order of ``_split_frame``)."""
    n = len(rec)
    out = np.zeros(n, dtype=np.uint8)
    for i in range(n):
        r = rec[i]
        rs, re_ = roff[r], roff[r + 1]
        as_, ae = aoff[i], aoff[i + 1]
        lr, la = re_ - rs, ae - as_
        if la == 0 or (la == 1 and adata[as_] == 46):
            out[i] = NO_ALT
            continue
        if _symbolic(adata, as_, ae):
            out[i] = SYMBOLIC
            continue
        bad = lr == 0
        for j in range(rs, re_):
            if not _base(rdata[j]):
                bad = True
                break
        if not bad:
            for j in range(as_, ae):
                if not _base(adata[j]):
                    bad = True
                    break
        if bad:
            out[i] = INVALID
            continue
        eq = lr == la
        if eq:
            for k in range(lr):
                if _up(rdata[rs + k]) != _up(adata[as_ + k]):
                    eq = False
                    break
        if eq:
            out[i] = NO_ALT_EQ
        elif max(lr, la) > max_len:
            out[i] = TOO_LONG
    return out


@numba.njit(cache=True, nogil=True)
def check_ref(codes, rdata, roff, rec, start0, seq, lo):
    """REF against the contig's bytes ``seq`` (from ``lo``) for alleles still ok; a matching REF
    holding N becomes ``N_REF``.  ``start0`` per record; every ok REF lies inside ``seq``."""
    for i in range(len(codes)):
        if codes[i] != OK:
            continue
        r = rec[i]
        at = start0[r] - lo
        has_n = False
        for k in range(roff[r + 1] - roff[r]):
            c = _up(rdata[roff[r] + k])
            if c != seq[at + k]:
                codes[i] = MISMATCH
                break
            has_n = has_n or c == 78
        if codes[i] == OK and has_n:
            codes[i] = N_REF


@numba.njit(cache=True, nogil=True)
def trim_alleles(codes, rdata, roff, rec, adata, aoff, pos):
    """Trimmed, upper-case alleles (shared suffix, then prefix) of every allele not skipped:
    ``(norm_pos, ref offsets, ref bytes, alt offsets, alt bytes, type code, valid)``."""
    n = len(rec)
    npos = np.zeros(n, dtype=np.int64)
    vt = np.zeros(n, dtype=np.uint8)
    valid = np.zeros(n, dtype=np.bool_)
    ro = np.zeros(n + 1, dtype=np.int64)
    ao = np.zeros(n + 1, dtype=np.int64)
    rb = np.empty(_total(roff, rec), dtype=np.uint8)
    ab = np.empty(aoff[-1] - aoff[0], dtype=np.uint8)
    for i in range(n):
        c = codes[i]
        r = rec[i]
        ro[i + 1], ao[i + 1] = ro[i], ao[i]
        if c == SYMBOLIC:
            vt[i] = 7
        if c == NO_ALT or c == SYMBOLIC or c == INVALID:
            continue
        rs, re_, as_, ae = roff[r], roff[r + 1], aoff[i], aoff[i + 1]
        lr, la = re_ - rs, ae - as_
        m = 0
        while m < min(lr, la) and _up(rdata[re_ - 1 - m]) == _up(adata[ae - 1 - m]):
            m += 1
        lr, la = lr - m, la - m
        p = 0
        while p < min(lr, la) and _up(rdata[rs + p]) == _up(adata[as_ + p]):
            p += 1
        lx, ly = lr - p, la - p
        for k in range(lx):
            rb[ro[i] + k] = _up(rdata[rs + p + k])
        for k in range(ly):
            ab[ao[i] + k] = _up(adata[as_ + p + k])
        ro[i + 1], ao[i + 1] = ro[i] + lx, ao[i] + ly
        npos[i] = pos[r] + p
        valid[i] = True
        if lx == 0 and ly == 0:
            vt[i] = 1
        elif lx == 0:
            vt[i] = 2
        elif ly == 0:
            vt[i] = 3
        elif lx == ly:
            vt[i] = 4 if lx == 1 else 5
        else:
            vt[i] = 6
    return npos, ro, rb[: ro[n]], ao, ab[: ao[n]], vt, valid


@numba.njit(cache=True, nogil=True)
def _total(roff, rec):
    t = 0
    for i in range(len(rec)):
        t += roff[rec[i] + 1] - roff[rec[i]]
    return t


def _arrow(s: pl.Series) -> pa.Array:
    """A string column as one Arrow ``large_string`` array."""
    a = s.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a if a.type == pa.large_string() else a.cast(pa.large_string())


def _buffers(a: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a ``large_string`` array, offsets starting at its first value."""
    _, off, data = a.buffers()
    off = np.frombuffer(off, dtype=np.int64)[a.offset: a.offset + len(a) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return off, data


def _strings(off: np.ndarray, data: np.ndarray, valid: np.ndarray) -> pa.Array:
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.LargeStringArray.from_buffers(len(valid), pa.py_buffer(off), pa.py_buffer(data), bitmap)


def split_chunk(chunk, genome, max_len: int) -> AlleleRows | None:
    """The rows of :func:`~vareff.normalize.alleles.split_series` for a :class:`ColumnChunk`, or
    None when the chunk is not one this pass serves (more than one contig, a REF span too wide)."""
    n_rec = len(chunk)
    if n_rec == 0 or (chunk.chrom != chunk.chrom[0]).any():
        return None
    n_alt = chunk.n_alleles
    rec = np.repeat(np.arange(n_rec, dtype=np.int64), n_alt)
    first = np.cumsum(n_alt) - n_alt
    allele_index = np.arange(len(rec), dtype=np.int64) - np.repeat(first, n_alt) + 1
    ref, alt = _arrow(chunk.ref), _arrow(chunk.alts.explode())
    roff, rdata = _buffers(ref)
    aoff, adata = _buffers(alt)
    if len(aoff) != len(rec) + 1:
        return None
    codes = classify_codes(rdata, roff, rec, adata, aoff, max_len)
    pos = np.ascontiguousarray(chunk.pos, dtype=np.int64)
    if genome is not None and (codes == OK).any():
        if not _ref_checked(codes, rdata, roff, rec, pos, genome, chunk.chrom[0]):
            return None
    npos, ro, rb, ao, ab, vt, valid = trim_alleles(codes, rdata, roff, rec, adata, aoff, pos)
    same = len(rec) == n_rec  # one ALT per record: the record columns are the allele columns
    idx = pa.array(rec)
    each = (lambda a: a) if same else (lambda a: a.take(idx))  # noqa: E731
    table = pa.table({
        "record": rec,
        "chrom": each(_arrow(chunk.chrom)),
        "pos": pos if same else pos[rec],
        "id": each(_arrow(chunk.id)),
        "ref": each(ref),
        "alt": alt,
        "allele_index": allele_index,
        "status": STATUS_TEXT.take(pa.array(codes)),
        "norm_pos": pa.array(npos, mask=~valid),
        "norm_ref": _strings(ro, rb, valid),
        "norm_alt": _strings(ao, ab, valid),
        "variant_type": TYPE_TEXT.take(pa.array(vt)),
    })
    return ArrowAlleleRows(table)


def _ref_checked(codes, rdata, roff, rec, pos, genome, chrom: str) -> bool:
    """Contig, span and REF status of the ok alleles (codes updated in place); False when the
    REF span is too wide to fetch at once (the caller then uses the polars path)."""
    ok = codes == OK
    span = genome.span(chrom)
    if span is None:
        codes[ok] = NO_CONTIG
        return True
    start0 = pos - 1
    rlen = np.diff(roff)
    s, e = start0[rec], start0[rec] + rlen[rec]
    outside = ok & ~((s >= span[0]) & (e <= span[1]))
    codes[outside] = OUTSIDE
    ok &= ~outside
    if not ok.any():
        return True
    lo, hi = int(s[ok].min()), int(e[ok].max())
    if hi - lo > SPAN_FETCH_LIMIT:
        return False
    seq = np.frombuffer(genome.fetch(chrom, lo, hi).encode("ascii"), dtype=np.uint8)
    check_ref(codes, rdata, roff, rec, start0, seq, lo)
    return True
