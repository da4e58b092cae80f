"""Records -> alleles: split multi-allelics, trim shared suffix/prefix, classify, check REF.

Columnar: a chunk of records comes in as columns and the per-allele work is done
with polars/numpy expressions; only alleles that need trimming (not single-base
substitutions) go through Python.  No cyvcf2 and no torch here, so the same code
serves the VCF stream and :func:`vareff.score_variants` on a DataFrame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from vareff.errors import Status
from vareff.score.base import AlleleBatch
from vareff.window.genome import Genome

#: widest span of one contig that a chunk's REF check fetches at once (else per allele)
SPAN_FETCH_LIMIT = 20_000_000


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


#: symbolic ALTs (VCF 4.3 section 5): ``<ID>`` alleles (``<DEL>``, ``<INS:ME>``, ``<*>``), the ``*``
#: allele, breakends with brackets (``G]17:198982]``, ``]13:123456]T``) and single breakends
#: (``.C``, ``C.``, ``.TGCA``)
SYMBOLIC_PATTERN = r"^<|[\[\]]|^\*$|^\.[A-Za-z]+$|^[A-Za-z]+\.$"


def is_symbolic(alt: str) -> bool:
    return (alt.startswith("<") or "[" in alt or "]" in alt or alt == "*"
            or (len(alt) > 1 and (alt[0] == "." or alt[-1] == ".") and alt.strip(".").isalpha()))


class AlleleRows:
    """Columnar alleles of one chunk (a polars DataFrame) with the key columns of the output contract.

    Columns: ``record`` (index of the record in the chunk), ``chrom``, ``pos``, ``id``, ``ref``,
    ``alt`` (as in the input), ``allele_index``, ``variant_type``, ``status``, ``norm_pos``,
    ``norm_ref``, ``norm_alt``.
    """

    def __init__(self, df: pl.DataFrame):
        self.df = df

    def __len__(self) -> int:
        return self.df.height

    def __getattr__(self, name: str) -> list:
        if name == "df":
            raise AttributeError(name)
        try:
            return self.df.get_column(name).to_list()
        except pl.exceptions.ColumnNotFoundError:
            raise AttributeError(name) from None

    def with_status(self, status: list[str]) -> "AlleleRows":
        return AlleleRows(self.df.with_columns(pl.Series("status", status, dtype=pl.Utf8)))

    def batch(self) -> AlleleBatch:
        """The view handed to model backends (upper-case alleles, numpy positions)."""
        d = self.df
        up = lambda c: d.get_column(c).str.to_uppercase().fill_null("").to_list()  # noqa: E731
        return AlleleBatch(
            chrom=d.get_column("chrom").to_list(),
            pos1=d.get_column("pos").fill_null(0).to_numpy().astype(np.int64),
            ref=up("ref"), alt=up("alt"),
            norm_pos1=d.get_column("norm_pos").fill_null(0).to_numpy().astype(np.int64),
            norm_ref=up("norm_ref"), norm_alt=up("norm_alt"),
            variant_type=d.get_column("variant_type").fill_null("").to_list(),
            status=d.get_column("status").to_list(),
        )


def split_records(records: list[Record], genome: Genome | None, max_len: int) -> AlleleRows:
    """:func:`split_columns` over :class:`Record` objects."""
    return split_columns(
        [r.chrom for r in records], [r.pos1 for r in records], [r.id for r in records],
        [r.ref for r in records], [r.alts for r in records], [r.malformed for r in records], genome, max_len)


def split_columns(chrom: list[str], pos1: list[int], ids: list, refs: list[str], alts: list, malformed: list[bool],
                  genome: Genome | None, max_len: int) -> AlleleRows:
    """One row per (record, ALT); a record without ALT or a malformed one still gets one row."""
    n_alt = np.fromiter((max(len(a), 1) for a in alts), dtype=np.int64, count=len(alts))
    alt_flat = pl.Series([a for al in alts for a in (al or (".",))], dtype=pl.Utf8)
    return _split_frame(pl.Series(chrom, dtype=pl.Utf8), pl.Series(pos1, dtype=pl.Int64), pl.Series(ids, dtype=pl.Utf8),
                        pl.Series(refs, dtype=pl.Utf8), n_alt, alt_flat,
                        pl.Series("m", malformed, dtype=pl.Boolean), genome, max_len)


def split_arrow(chrom: pa.Array, pos1: np.ndarray, ids: pa.Array, refs: pa.Array, alts: pa.Array,
                n_alt: np.ndarray, genome: Genome | None, max_len: int) -> AlleleRows:
    """:func:`split_columns` for well-formed records given as Arrow columns (``alts``: a list
    array, empty for ALT ``.``; ``n_alt``: alleles per record, at least 1), no Python per record."""
    alt_flat = pl.from_arrow(alts).explode().fill_null(".").cast(pl.Utf8)
    return _split_frame(pl.from_arrow(chrom).cast(pl.Utf8), pl.Series(pos1, dtype=pl.Int64),
                        pl.from_arrow(ids).cast(pl.Utf8), pl.from_arrow(refs).cast(pl.Utf8), n_alt, alt_flat,
                        pl.Series("m", np.zeros(len(pos1), dtype=bool), dtype=pl.Boolean), genome, max_len)


def _split_frame(chrom: pl.Series, pos1: pl.Series, ids: pl.Series, refs: pl.Series, n_alt: np.ndarray,
                 alt_flat: pl.Series, malformed: pl.Series, genome: Genome | None, max_len: int) -> AlleleRows:
    rec = np.repeat(np.arange(len(n_alt), dtype=np.int64), n_alt)
    first = np.cumsum(n_alt) - n_alt
    allele_index = np.arange(len(rec), dtype=np.int64) - np.repeat(first, n_alt) + 1
    idx = pl.Series(rec)
    mal = malformed.gather(idx)
    df = pl.DataFrame({
        "record": rec,
        "chrom": chrom.gather(idx),
        "pos": pos1.gather(idx),
        "id": ids.gather(idx),
        "ref": refs.gather(idx),
        "alt": alt_flat.alias("alt"),
        "allele_index": allele_index,
    })
    R, A = pl.col("ref").str.to_uppercase(), pl.col("alt").str.to_uppercase()
    symbolic = A.str.contains(SYMBOLIC_PATTERN)
    no_alt = A.is_in([".", ""]) | A.is_null()
    invalid = ~R.str.contains(r"^[ACGTN]+$") | ~A.str.contains(r"^[ACGTN]+$")
    status = (
        pl.when(mal).then(pl.lit(Status.MALFORMED_RECORD.value))
        .when(no_alt).then(pl.lit(Status.NO_ALT.value))
        .when(symbolic).then(pl.lit(Status.SYMBOLIC_ALLELE.value))
        .when(invalid).then(pl.lit(Status.INVALID_ALLELE.value))
        .when(A == R).then(pl.lit(Status.NO_ALT.value))
        .when(pl.max_horizontal(R.str.len_chars(), A.str.len_chars()) > max_len).then(pl.lit(Status.ALLELE_TOO_LONG.value))
        .otherwise(pl.lit(Status.OK.value))
    )
    df = df.with_columns(status.alias("status"), mal.alias("_mal"))
    df = df.with_columns(
        pl.when(pl.col("_mal")).then(None).otherwise(pl.col("pos")).alias("pos"),
        pl.when(pl.col("_mal")).then(None).otherwise(pl.col("id")).alias("id"),
        pl.when(pl.col("_mal")).then(None).otherwise(pl.col("ref")).alias("ref"),
        pl.when(pl.col("_mal")).then(None).otherwise(pl.col("alt")).alias("alt"),
    ).drop("_mal")
    if genome is not None:
        df = df.with_columns(pl.Series("status", _reference_status(df, genome), dtype=pl.Utf8))
    return AlleleRows(_normalized(df))


def _reference_status(df: pl.DataFrame, genome: Genome) -> list[str]:
    """Contig present, REF inside the FASTA, REF equal to the FASTA (for alleles still ok); a REF
    that matches but holds N (an N block: unknown sequence) gets ``n_in_window``."""
    status = df.get_column("status").to_list()
    ok = np.asarray([s == Status.OK.value for s in status])
    if not ok.any():
        return status
    chrom = df.get_column("chrom").to_numpy()
    start0 = df.get_column("pos").fill_null(1).to_numpy() - 1
    ref = df.get_column("ref").fill_null("").str.to_uppercase().to_list()
    rlen = df.get_column("ref").fill_null("").str.len_chars().to_numpy()
    for c in np.unique(chrom[ok]):
        rows = np.nonzero(ok & (chrom == c))[0]
        span = genome.span(c)
        if span is None:
            for i in rows:
                status[i] = Status.CONTIG_NOT_IN_FASTA.value
            continue
        inside = (start0[rows] >= span[0]) & (start0[rows] + rlen[rows] <= span[1])
        for i in rows[~inside]:
            status[i] = Status.OUTSIDE_FASTA.value
        rows = rows[inside]
        if not len(rows):
            continue
        lo, hi = int(start0[rows].min()), int((start0[rows] + rlen[rows]).max())
        if hi - lo <= SPAN_FETCH_LIMIT:
            seq = genome.fetch(c, lo, hi)
            buf = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
            single = rlen[rows] == 1
            s_rows = rows[single]
            want = np.frombuffer("".join(ref[i] for i in s_rows).encode("ascii"), dtype=np.uint8)
            bad = buf[start0[s_rows] - lo] != want
            for i in s_rows[bad]:
                status[i] = Status.REF_MISMATCH.value
            for i in rows[~single]:
                a = int(start0[i]) - lo
                if seq[a: a + int(rlen[i])] != ref[i]:
                    status[i] = Status.REF_MISMATCH.value
        else:
            for i in rows:
                a = int(start0[i])
                if genome.fetch(c, a, a + int(rlen[i])) != ref[i]:
                    status[i] = Status.REF_MISMATCH.value
    ref_n = df.get_column("ref").fill_null("").str.contains("(?i)N").to_numpy()
    for i in np.nonzero(ok & ref_n)[0]:
        if status[i] == Status.OK.value:
            status[i] = Status.N_IN_WINDOW.value
    return status


def _normalized(df: pl.DataFrame) -> pl.DataFrame:
    """Add norm_pos/norm_ref/norm_alt/variant_type; Python only for alleles that need trimming."""
    R, A = pl.col("ref").str.to_uppercase(), pl.col("alt").str.to_uppercase()
    st = pl.col("status")
    skip = st.is_in([Status.MALFORMED_RECORD.value, Status.NO_ALT.value, Status.SYMBOLIC_ALLELE.value,
                     Status.INVALID_ALLELE.value]) & ~((st == Status.NO_ALT.value) & (A == R))
    snv = (R.str.len_chars() == 1) & (A.str.len_chars() == 1) & (R != A)
    df = df.with_columns(
        pl.when(skip).then(None).when(snv).then(pl.col("pos")).otherwise(None).alias("norm_pos"),
        pl.when(skip).then(None).when(snv).then(R).otherwise(None).alias("norm_ref"),
        pl.when(skip).then(None).when(snv).then(A).otherwise(None).alias("norm_alt"),
        pl.when(st == Status.SYMBOLIC_ALLELE.value).then(pl.lit("symbolic"))
        .when(skip).then(None).when(snv).then(pl.lit("snv")).otherwise(None).alias("variant_type"),
        (~skip & ~snv).alias("_slow"),
    )
    slow = np.nonzero(df.get_column("_slow").to_numpy())[0]
    if len(slow):
        sub = df[slow]
        npos, nref, nalt, vt = [], [], [], []
        for p, r, a in zip(sub.get_column("pos").to_list(), sub.get_column("ref").to_list(),
                           sub.get_column("alt").to_list()):
            q, x, y = trim(p, r.upper(), a.upper())
            npos.append(q)
            nref.append(x)
            nalt.append(y)
            vt.append(classify(x, y))
        idx = pl.Series(slow)
        df = df.with_columns(
            df.get_column("norm_pos").scatter(idx, npos),
            df.get_column("norm_ref").scatter(idx, nref),
            df.get_column("norm_alt").scatter(idx, nalt),
            df.get_column("variant_type").scatter(idx, vt),
        )
    return df.drop("_slow")
