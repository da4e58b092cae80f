"""Records -> alleles: split multi-allelics, trim shared prefix/suffix, classify, check REF.

Pure functions over plain tuples (no cyvcf2, no torch) so the same code serves the
VCF stream and :func:`vareff.score_variants` on a DataFrame.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from vareff.errors import Status
from vareff.score.base import AlleleBatch
from vareff.window.genome import Genome

_BASES = re.compile(r"^[ACGTN]+$")


@dataclass(frozen=True)
class Record:
    """The fields of one VCF record that scoring needs (``pos1`` 1-based, alleles as written)."""

    chrom: str
    pos1: int
    id: str | None
    ref: str
    alts: tuple[str, ...]
    malformed: bool = False


def trim(pos1: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Remove the shared suffix, then the shared prefix; alleles may become empty."""
    n = 0
    while n < min(len(ref), len(alt)) and ref[-1 - n] == alt[-1 - n]:
        n += 1
    if n:
        ref, alt = ref[: len(ref) - n], alt[: len(alt) - n]
    p = 0
    while p < min(len(ref), len(alt)) and ref[p] == alt[p]:
        p += 1
    return pos1 + p, ref[p:], alt[p:]


def classify(nref: str, nalt: str) -> str:
    """Variant type of a trimmed allele pair."""
    if not nref and not nalt:
        return "none"
    if not nref:
        return "insertion"
    if not nalt:
        return "deletion"
    if len(nref) == len(nalt):
        return "snv" if len(nref) == 1 else "mnv"
    return "complex"


def is_symbolic(alt: str) -> bool:
    return alt.startswith("<") or "[" in alt or "]" in alt or alt == "*"


@dataclass
class AlleleRows:
    """Columnar alleles of one chunk, with the key columns of the output contract."""

    record: list[int] = field(default_factory=list)  # index of the record within the chunk
    chrom: list[str] = field(default_factory=list)
    pos: list[int | None] = field(default_factory=list)
    id: list[str | None] = field(default_factory=list)
    ref: list[str | None] = field(default_factory=list)  # as in the input
    alt: list[str | None] = field(default_factory=list)
    allele_index: list[int] = field(default_factory=list)
    variant_type: list[str | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    norm_pos: list[int | None] = field(default_factory=list)
    norm_ref: list[str | None] = field(default_factory=list)
    norm_alt: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chrom)

    def batch(self) -> AlleleBatch:
        """The view handed to model backends (upper-case alleles, numpy positions)."""
        up = lambda xs: [x.upper() if x else "" for x in xs]  # noqa: E731
        pos = np.array([p if p is not None else 0 for p in self.pos], dtype=np.int64)
        npos = np.array([p if p is not None else 0 for p in self.norm_pos], dtype=np.int64)
        return AlleleBatch(
            chrom=self.chrom, pos1=pos, ref=up(self.ref), alt=up(self.alt), norm_pos1=npos,
            norm_ref=up(self.norm_ref), norm_alt=up(self.norm_alt),
            variant_type=[t or "" for t in self.variant_type], status=list(self.status),
        )


def allele_status(rec: Record, alt: str, genome: Genome | None, max_len: int) -> Status:
    """The input-level status of one allele (before any model runs)."""
    ref = rec.ref.upper()
    a = alt.upper()
    if a in (".", ""):
        return Status.NO_ALT
    if is_symbolic(a):
        return Status.SYMBOLIC_ALLELE
    if not _BASES.match(ref) or not _BASES.match(a):
        return Status.INVALID_ALLELE
    if a == ref:
        return Status.NO_ALT
    if max(len(ref), len(a)) > max_len:
        return Status.ALLELE_TOO_LONG
    if genome is not None:
        if genome.resolve(rec.chrom) is None:
            return Status.CONTIG_NOT_IN_FASTA
        start0 = rec.pos1 - 1
        if not genome.covers(rec.chrom, start0, start0 + len(ref)):
            return Status.OUTSIDE_FASTA
        if genome.fetch(rec.chrom, start0, start0 + len(ref)) != ref:
            return Status.REF_MISMATCH
    return Status.OK


def split_records(records: list[Record], genome: Genome | None, max_len: int) -> AlleleRows:
    """One row per (record, ALT); a record without ALT or a malformed one still gets one row."""
    rows = AlleleRows()
    for r_idx, rec in enumerate(records):
        if rec.malformed:
            _append(rows, r_idx, rec.chrom, None, None, None, None, 1, None, Status.MALFORMED_RECORD, None, None, None)
            continue
        alts = rec.alts or (".",)
        for a_idx, alt in enumerate(alts, 1):
            st = allele_status(rec, alt, genome, max_len)
            if st in (Status.SYMBOLIC_ALLELE, Status.INVALID_ALLELE) or alt in (".", ""):
                vt, npos, nref, nalt = ("symbolic" if st == Status.SYMBOLIC_ALLELE else None), None, None, None
            else:
                npos, nref, nalt = trim(rec.pos1, rec.ref.upper(), alt.upper())
                vt = classify(nref, nalt)
            _append(rows, r_idx, rec.chrom, rec.pos1, rec.id, rec.ref, alt, a_idx, vt, st, npos, nref, nalt)
    return rows


def _append(rows, r_idx, chrom, pos, id_, ref, alt, a_idx, vt, st, npos, nref, nalt):
    rows.record.append(r_idx)
    rows.chrom.append(chrom)
    rows.pos.append(pos)
    rows.id.append(id_)
    rows.ref.append(ref)
    rows.alt.append(alt)
    rows.allele_index.append(a_idx)
    rows.variant_type.append(vt)
    rows.status.append(st.value)
    rows.norm_pos.append(npos)
    rows.norm_ref.append(nref)
    rows.norm_alt.append(nalt)
