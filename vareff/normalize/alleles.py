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


class ArrowAlleleRows(AlleleRows):
    """:class:`AlleleRows` held as an Arrow table; the polars frame is made only if asked for
    (a run without a model or lookup writes the Arrow columns as they are)."""

    def __init__(self, table: pa.Table):
        self.table = table

    @property
    def df(self) -> pl.DataFrame:
        d = self.__dict__.get("_df")
        if d is None:
            d = self.__dict__["_df"] = pl.from_arrow(self.table)
        return d

    def __len__(self) -> int:
        return self.table.num_rows


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


def split_series(chrom: pl.Series, pos1: np.ndarray, ids: pl.Series, refs: pl.Series, alts: pl.Series,
                 n_alt: np.ndarray, genome: Genome | None, max_len: int) -> AlleleRows:
    """:func:`split_columns` for well-formed records given as polars columns (``alts``: a list
    column, ``['.']`` for ALT ``.``; ``n_alt``: its lengths), no Python per record."""
    return _split_frame(chrom, pl.Series(pos1, dtype=pl.Int64), ids, refs, n_alt, alts.explode(),
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
    df = df.with_columns(pl.col("ref").str.to_uppercase().alias("_R"), pl.col("alt").str.to_uppercase().alias("_A"))
    R, A = pl.col("_R"), pl.col("_A")  # upper-case once, used by every test below
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
    ).drop("_mal", "_R", "_A")
    if genome is not None:
        df = df.with_columns(_reference_status(df, genome).alias("status").cast(pl.Utf8))
    return AlleleRows(_normalized(df))


def _reference_status(df: pl.DataFrame, genome: Genome) -> pl.Series:
    """Contig present, REF inside the FASTA, REF equal to the FASTA (for alleles still ok); a REF
    that matches but holds N (an N block: unknown sequence) gets ``n_in_window``.  Vectorized:
    each contig's span is fetched once and compared byte by byte with numpy."""
    st = df.get_column("status")
    ok = (st == Status.OK.value).to_numpy()
    if not ok.any():
        return st
    code = np.zeros(len(ok), dtype=np.int8)  # 1 contig absent, 2 outside, 3 REF differs
    chrom = df.get_column("chrom")
    start0 = df.get_column("pos").fill_null(1).to_numpy() - 1
    refs = df.get_column("ref").fill_null("")
    ref_up = refs.str.to_uppercase()
    rlen = refs.str.len_chars().to_numpy().astype(np.int64)
    for c in chrom.filter(pl.Series(ok)).unique(maintain_order=True).to_list():
        rows = np.flatnonzero(ok & (chrom == c).fill_null(False).to_numpy())
        span = genome.span(c)
        if span is None:
            code[rows] = 1
            continue
        inside = (start0[rows] >= span[0]) & (start0[rows] + rlen[rows] <= span[1])
        code[rows[~inside]] = 2
        rows = rows[inside]
        if not len(rows):
            continue
        lo, hi = int(start0[rows].min()), int((start0[rows] + rlen[rows]).max())
        if hi - lo <= SPAN_FETCH_LIMIT:
            code[rows[_differs(genome.fetch(c, lo, hi), lo, start0[rows], rlen[rows], ref_up.gather(rows))]] = 3
        else:
            for i in rows:
                a = int(start0[i])
                if genome.fetch(c, a, a + int(rlen[i])) != ref_up[int(i)]:
                    code[i] = 3
    code[(code == 0) & ok & refs.str.contains("(?i)N").to_numpy()] = 4
    return pl.DataFrame({"s": st, "c": code}).select(
        pl.when(pl.col("c") == 1).then(pl.lit(Status.CONTIG_NOT_IN_FASTA.value))
        .when(pl.col("c") == 2).then(pl.lit(Status.OUTSIDE_FASTA.value))
        .when(pl.col("c") == 3).then(pl.lit(Status.REF_MISMATCH.value))
        .when(pl.col("c") == 4).then(pl.lit(Status.N_IN_WINDOW.value))
        .otherwise(pl.col("s")).alias("status")).to_series()


def _differs(seq: str, lo: int, start0: np.ndarray, rlen: np.ndarray, refs: pl.Series) -> np.ndarray:
    """Per allele: does its REF (upper-case, ``rlen`` characters from ``start0``) differ from
    ``seq`` (the contig from ``lo``)?  One gather over all REF bytes, no Python per allele."""
    buf = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    want = np.frombuffer(refs.str.join("").item().encode("ascii", "replace"), dtype=np.uint8)
    if len(want) != int(rlen.sum()):  # a REF that is not ASCII: compare it as text
        return np.asarray([seq[a - lo: a - lo + n] != r for a, n, r in zip(start0, rlen, refs.to_list())], dtype=bool)
    first = np.cumsum(rlen) - rlen
    at = np.repeat(start0 - lo - first, rlen) + np.arange(len(want))
    wrong = (buf[at] != want).astype(np.int64)
    return np.add.reduceat(wrong, first) > 0 if len(want) else np.zeros(len(rlen), dtype=bool)


def _normalized(df: pl.DataFrame) -> pl.DataFrame:
    """Add norm_pos/norm_ref/norm_alt/variant_type; Python only for alleles that need trimming."""
    df = df.with_columns(pl.col("ref").str.to_uppercase().alias("_R"), pl.col("alt").str.to_uppercase().alias("_A"))
    R, A = pl.col("_R"), pl.col("_A")
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
        npos, nref, nalt, vt = _trimmed(sub.get_column("pos"), sub.get_column("_R"), sub.get_column("_A"))
        idx = pl.Series(slow)
        df = df.with_columns(
            df.get_column("norm_pos").scatter(idx, npos),
            df.get_column("norm_ref").scatter(idx, nref),
            df.get_column("norm_alt").scatter(idx, nalt),
            df.get_column("variant_type").scatter(idx, vt),
        )
    return df.drop("_slow", "_R", "_A")


def _trimmed(pos: pl.Series, ref: pl.Series, alt: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series, pl.Series]:
    """:func:`trim` and :func:`classify` over columns of upper-case alleles: the shared suffix and
    prefix are measured with numpy on the alleles' bytes, one step per base for the alleles still
    matching (Python per allele only for non-ASCII text)."""
    lr, la = ref.str.len_bytes().to_numpy().astype(np.int64), alt.str.len_bytes().to_numpy().astype(np.int64)
    r = np.frombuffer(ref.str.join("").item().encode(), dtype=np.uint8)
    a = np.frombuffer(alt.str.join("").item().encode(), dtype=np.uint8)
    if len(r) != len(ref.str.join("").item()) or len(a) != len(alt.str.join("").item()):
        out = [trim(p, x, y) for p, x, y in zip(pos.to_list(), ref.to_list(), alt.to_list())]
        q, x, y = (list(t) for t in zip(*out))
        return (pl.Series(q, dtype=pl.Int64), pl.Series(x, dtype=pl.Utf8), pl.Series(y, dtype=pl.Utf8),
                pl.Series([classify(u, v) for u, v in zip(x, y)], dtype=pl.Utf8))
    r_end, a_end = np.cumsum(lr), np.cumsum(la)
    n = _shared(lambda i, k: r[r_end[i] - 1 - k], lambda i, k: a[a_end[i] - 1 - k], np.minimum(lr, la))
    lr2, la2 = lr - n, la - n
    p = _shared(lambda i, k: r[r_end[i] - lr[i] + k], lambda i, k: a[a_end[i] - la[i] + k], np.minimum(lr2, la2))
    d = pl.DataFrame({"pos": pos, "ref": ref, "alt": alt, "p": p, "lr": lr2 - p, "la": la2 - p})
    x, y = pl.col("ref").str.slice(pl.col("p"), pl.col("lr")), pl.col("alt").str.slice(pl.col("p"), pl.col("la"))
    lx, ly = pl.col("lr"), pl.col("la")
    vt = (pl.when((lx == 0) & (ly == 0)).then(pl.lit("none")).when(lx == 0).then(pl.lit("insertion"))
          .when(ly == 0).then(pl.lit("deletion")).when((lx == ly) & (lx == 1)).then(pl.lit("snv"))
          .when(lx == ly).then(pl.lit("mnv")).otherwise(pl.lit("complex")))
    out = d.select((pl.col("pos") + pl.col("p")).alias("q"), x.alias("x"), y.alias("y"), vt.alias("vt"))
    return out.get_column("q"), out.get_column("x"), out.get_column("y"), out.get_column("vt")


def _shared(left, right, limit: np.ndarray) -> np.ndarray:
    """Per pair, how many leading steps ``k`` (below ``limit``) have ``left(i, k) == right(i, k)``."""
    n = np.zeros(len(limit), dtype=np.int64)
    active = np.flatnonzero(limit > 0)
    while len(active):
        k = n[active]
        active = active[left(active, k) == right(active, k)]
        n[active] += 1
        active = active[n[active] < limit[active]]
    return n

