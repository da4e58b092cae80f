"""Region class and gene per allele, from a GTF, a GFF3 or a SpliceAI gene table.

:class:`RegionAnnotator` reads a gene annotation once, turns every transcript into
labelled intervals, and flattens them into one sorted, non-overlapping segment index per
contig in which each segment carries the highest-precedence class covering it and the
gene that gave it.  A lookup is then one :func:`numpy.searchsorted` per allele.

Classes, in precedence order (the first that applies to any transcript wins)
------------------------------------------------------------------------------
==================  ===================================================================
``coding``          inside a CDS (GTF ``CDS`` + ``stop_codon``; GFF3 ``CDS``), i.e. the
                    exonic part of ``[first CDS base, last CDS base]`` of a transcript
``splice_region``   Ensembl's splice region: the last/first 3 exonic bases and the first/
                    last 8 intronic bases at each exon-intron boundary (this includes the
                    two intronic bases Ensembl calls splice donor / acceptor); exonic
                    bases that are also coding stay ``coding``
``5_prime_utr``     exonic, upstream of the CDS on the transcript's strand
``3_prime_utr``     exonic, downstream of the CDS on the transcript's strand
``exon``            exonic in an annotation without CDS coordinates (SpliceAI gene tables)
``non_coding_exon`` exonic in a transcript without CDS (lncRNA, pseudogene, ...)
``intron``          between two exons of a transcript
``upstream``        within ``upstream`` bp (default 5,000, as Ensembl VEP) 5' of a
                    transcript's first base, on its strand
``intergenic``      none of the above (downstream positions included)
==================  ===================================================================

The precedence resolves overlaps across transcripts and genes: an allele exonic in one
transcript and intronic in another is ``coding`` / UTR / ..., never ``intron``.  The
``gene`` is the one whose transcript gave the winning class; ties between genes (two
overlapping genes, both ``coding``) go to the transcript tagged ``MANE_Select``, then
``Ensembl_canonical``, then to protein-coding transcripts, then to the rest (readthrough
transcripts after the others at each level), then to the alphabetically first gene
name.  For ``upstream`` alleles the gene is the one with the nearest transcript 5' end
(the same tie-break among equally near ones).  ``gene`` is the symbol (GTF
``gene_name``, GFF3 gene ``Name``, SpliceAI ``#NAME``), the gene id where there is no
symbol, and null for intergenic alleles.

An allele covers the reference bases of its REF (``pos`` .. ``pos + len(ref) - 1``); an
allele with an empty REF (a trimmed insertion) covers the two bases around the insertion
point.  When that span crosses several segments the highest-precedence class among them
wins, so a deletion that removes a splice site is ``splice_region`` even if it starts in
the intron.  Contig names are resolved (``1``/``chr1``, ``MT``/``M``/``chrM``); an allele
on a contig the annotation does not mention, or with a null position, gets null for both
columns.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Literal

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from vareff.errors import ConfigError, InputError
from vareff.window.contigs import resolve_contig

log = logging.getLogger(__name__)

#: region classes in precedence order (index = rank; lower wins)
REGION_CLASSES = (
    "coding", "splice_region", "5_prime_utr", "3_prime_utr", "exon", "non_coding_exon",
    "intron", "upstream", "intergenic",
)
_RANK = {c: i for i, c in enumerate(REGION_CLASSES)}
_INTERGENIC = _RANK["intergenic"]
#: output columns of :meth:`RegionAnnotator.annotate`
OUTPUT_SCHEMA = {"gene": pl.String, "region_class": pl.String}

SPLICE_EXONIC = 3  #: exonic bases of Ensembl's splice region
SPLICE_INTRONIC = 8  #: intronic bases of Ensembl's splice region
UPSTREAM = 5_000  #: Ensembl VEP's default up/downstream distance

_FORMAT_HINT = (
    "give a GENCODE/Ensembl GTF or GFF3 (plain or gzip), or a SpliceAI gene table "
    "('#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END')"
)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def _open_bytes(path: str):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return pa.CompressedInputStream(pa.OSFile(path), "gzip")
    return pa.OSFile(path)


def _detect_format(path: str) -> str:
    """``gtf``, ``gff3`` or ``spliceai`` from the first lines of the file."""
    stream = _open_bytes(path)
    try:
        head = bytes(stream.read(1 << 16)).decode("utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read annotation {path!r}: {e}", _FORMAT_HINT) from None
    finally:
        stream.close()
    lines = head.split("\n")
    if lines and lines[0].startswith("#NAME") and "TX_START" in lines[0]:
        return "spliceai"
    for line in lines[:-1]:
        if not line or line.startswith("#"):
            if line.startswith("##gff-version 3"):
                return "gff3"
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) == 9:
            attrs = fields[8]
            if re.search(r'\w+ "[^"]*"', attrs):
                return "gtf"
            if "=" in attrs:
                return "gff3"
        break
    raise InputError(
        f"{path!r} is not a recognised gene annotation (first data line: {lines[0][:100]!r})",
        _FORMAT_HINT,
    )


def _read_gff_like(path: str, keep) -> pl.DataFrame:
    """Stream the 9-column lines of a GTF/GFF3 in blocks (comments and FASTA skipped), filtered.

    Memory stays at a few blocks of text plus the kept rows, whatever the file size.
    """
    stream = _open_bytes(path)
    schema = {"seqid": pl.String, "source": pl.String, "type": pl.String, "start": pl.Int64,
              "end": pl.Int64, "score": pl.String, "strand": pl.String, "phase": pl.String,
              "attributes": pl.String}
    parts = []
    tail = b""
    try:
        done = False
        while not done:
            chunk = stream.read(16 << 20)
            done = not chunk
            buf = tail + bytes(chunk)
            cut = len(buf) if done else buf.rfind(b"\n") + 1
            block, tail = buf[:cut], buf[cut:]
            fasta = block.find(b"##FASTA")
            if fasta >= 0 and (fasta == 0 or block[fasta - 1:fasta] == b"\n"):
                block, done = block[:fasta], True
            if not block.strip():
                continue
            df = pl.read_csv(
                block, separator="\t", has_header=False, comment_prefix="#", quote_char=None,
                schema=schema, truncate_ragged_lines=True,
            ).filter(pl.col("attributes").is_not_null())
            df = df.filter(keep(df)).drop("source", "score", "phase")
            if df.height:
                parts.append(df)
    except pl.exceptions.PolarsError as e:
        raise InputError(f"cannot parse annotation {path!r} as GTF/GFF3: {e}", _FORMAT_HINT) from None
    except OSError as e:
        raise InputError(f"cannot read annotation {path!r} (truncated gzip?): {e}",
                         "download the file again") from None
    finally:
        stream.close()
    if not parts:
        raise InputError(f"annotation {path!r} has no exon records", _FORMAT_HINT)
    return pl.concat(parts)


def _attr(name: str, gtf: bool) -> pl.Expr:
    pattern = rf'(?:^|;)\s*{name} "([^"]*)"' if gtf else rf"(?:^|;){name}=([^;]*)"
    return pl.col("attributes").str.extract(pattern, 1)


def _tag_priority(tags: pl.Expr, has_cds: pl.Expr) -> pl.Expr:
    """Tie-break between genes (lower wins): 0 MANE Select, 1 Ensembl canonical,
    2 other protein-coding, 3 the rest; readthrough transcripts one level lower."""
    tags = tags.fill_null("")
    level = (pl.when(tags.str.contains("MANE_Select")).then(0)
             .when(tags.str.contains("Ensembl_canonical")).then(1)
             .when(has_cds).then(2).otherwise(3))
    return (level * 2 + tags.str.contains("readthrough").cast(pl.Int32)).cast(pl.Int32)


def _load_gtf(path: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _read_gff_like(path, lambda d: d["type"].is_in(["exon", "CDS", "stop_codon"]))
    tags = pl.col("attributes").str.extract_all(r'tag "([^"]*)"').list.join(",")
    df = df.with_columns(
        tx=_attr("transcript_id", True),
        gene=pl.coalesce(_attr("gene_name", True), _attr("gene_id", True)),
        tags=tags,
    ).filter(pl.col("tx").is_not_null())
    exons = df.filter(pl.col("type") == "exon").select(
        "tx", chrom="seqid", strand="strand", start0=pl.col("start") - 1, end0="end", gene="gene", tags="tags")
    cds = df.filter(pl.col("type") != "exon").select("tx", start0=pl.col("start") - 1, end0="end")
    return exons, cds


def _load_gff3(path: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _read_gff_like(
        path,
        lambda d: d["type"].is_in(["exon", "CDS"]) | d["attributes"].str.contains(r"(?:^|;)ID="),
    )
    df = df.with_columns(
        id=_attr("ID", False), parent=_attr("Parent", False).str.split(","),
        name=pl.coalesce(_attr("Name", False), _attr("gene_id", False)),
        tags=_attr("tag", False),
    )
    feats = df.filter(pl.col("id").is_not_null()).select(
        "id", "name", "tags", gparent=pl.col("parent").list.first())
    genes = feats.select(gid="id", gene=pl.coalesce("name", pl.col("id").str.replace(r"^gene:", "")))
    txs = (feats.select(tx="id", gid="gparent", tags="tags")
           .join(genes, on="gid", how="left")
           .with_columns(gene=pl.coalesce("gene", pl.col("gid").str.replace(r"^gene:", "")))
           .select("tx", "gene", "tags"))
    parts = df.filter(pl.col("type").is_in(["exon", "CDS"])).explode("parent").rename({"parent": "tx"})
    exons = (parts.filter(pl.col("type") == "exon")
             .select("tx", chrom="seqid", strand="strand", start0=pl.col("start") - 1, end0="end")
             .join(txs, on="tx", how="left")
             .with_columns(gene=pl.coalesce("gene", pl.col("tx").str.replace(r"^transcript:", ""))))
    cds = parts.filter(pl.col("type") == "CDS").select("tx", start0=pl.col("start") - 1, end0="end")
    return exons, cds


def _load_spliceai(path: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    try:
        df = pl.read_csv(path, separator="\t", infer_schema=False)
    except (pl.exceptions.ComputeError, OSError) as e:
        raise InputError(f"cannot read SpliceAI gene table {path!r}: {e}", _FORMAT_HINT) from None
    need = ["#NAME", "CHROM", "STRAND", "TX_START", "TX_END", "EXON_START", "EXON_END"]
    if df.columns[:7] != need:
        raise InputError(f"{path!r}: expected SpliceAI gene-table columns {need}, found {df.columns}",
                         _FORMAT_HINT)
    df = df.with_row_index("row").with_columns(
        tx=pl.col("#NAME") + "#" + pl.col("row").cast(pl.String),
        s=pl.col("EXON_START").str.strip_chars_end(",").str.split(","),
        e=pl.col("EXON_END").str.strip_chars_end(",").str.split(","),
    )
    if not (df["s"].list.len() == df["e"].list.len()).all():
        raise InputError(f"{path!r}: a row has different numbers of EXON_START and EXON_END values",
                         _FORMAT_HINT)
    exons = df.explode("s", "e").select(
        "tx", chrom="CHROM", strand="STRAND",
        start0=pl.col("s").cast(pl.Int64),  # SpliceAI tables: 0-based starts, 1-based ends
        end0=pl.col("e").cast(pl.Int64), gene="#NAME", tags=pl.lit("Ensembl_canonical"),
    )
    return exons, pl.DataFrame(schema={"tx": pl.String, "start0": pl.Int64, "end0": pl.Int64})


# --------------------------------------------------------------------------------------
# intervals and painting
# --------------------------------------------------------------------------------------


def _intervals(exons: pl.DataFrame, cds: pl.DataFrame, *, has_cds_info: bool, upstream: int
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Labelled intervals (chrom, start0, end0, rank, tie, gene) of every transcript, and the
    transcripts' 5' ends (chrom, strand, tss0, tie, gene) for nearest-gene upstream calls."""
    cds_ext = cds.group_by("tx").agg(cds0=pl.col("start0").min(), cds1=pl.col("end0").max())
    ex = (exons.join(cds_ext, on="tx", how="left")
          .with_columns(has_cds=pl.col("cds0").is_not_null())
          .with_columns(tie=_tag_priority(pl.col("tags"), pl.col("has_cds")))
          .sort("tx", "start0"))
    plus = pl.col("strand") == "+"
    keep = ["chrom", "start0", "end0", "rank", "tie", "gene"]

    def part(df, start, end, rank):
        return df.select("chrom", start0=start, end0=end, rank=rank, tie="tie", gene="gene").select(keep)

    coding = ex.filter("has_cds")
    noncoding = ex.filter(~pl.col("has_cds"))
    r = lambda name: pl.lit(_RANK[name], dtype=pl.Int32)  # noqa: E731
    utr_left = pl.when(plus).then(r("5_prime_utr")).otherwise(r("3_prime_utr"))
    utr_right = pl.when(plus).then(r("3_prime_utr")).otherwise(r("5_prime_utr"))
    pieces = [
        part(coding, pl.col("start0"), pl.min_horizontal("end0", "cds0"), utr_left),
        part(coding, pl.max_horizontal("start0", "cds0"), pl.min_horizontal("end0", "cds1"), r("coding")),
        part(coding, pl.max_horizontal("start0", "cds1"), pl.col("end0"), utr_right),
        part(noncoding, pl.col("start0"), pl.col("end0"),
             r("non_coding_exon") if has_cds_info else r("exon")),
    ]
    # introns and splice regions from consecutive exons of a transcript
    nxt = ex.with_columns(
        nstart0=pl.col("start0").shift(-1).over("tx"), nend0=pl.col("end0").shift(-1).over("tx"),
    ).filter(pl.col("nstart0").is_not_null() & (pl.col("nstart0") > pl.col("end0")))
    a, b = pl.col("end0"), pl.col("nstart0")  # intron [a, b)
    pieces += [
        part(nxt, a, b, r("intron")),
        part(nxt, a, pl.min_horizontal(a + SPLICE_INTRONIC, b), r("splice_region")),
        part(nxt, pl.max_horizontal(b - SPLICE_INTRONIC, a), b, r("splice_region")),
        part(nxt, pl.max_horizontal(a - SPLICE_EXONIC, "start0"), a, r("splice_region")),
        part(nxt, b, pl.min_horizontal(b + SPLICE_EXONIC, "nend0"), r("splice_region")),
    ]
    tx = ex.group_by("tx").agg(
        pl.col("chrom").first(), pl.col("strand").first(), pl.col("tie").first(),
        pl.col("gene").first(), s=pl.col("start0").min(), e=pl.col("end0").max())
    # 5' end as a 0-based boundary: + strand: first base s; - strand: one past the last base e
    tss = tx.select("chrom", "strand", "tie", "gene", tss0=pl.when(plus).then("s").otherwise("e"))
    if upstream > 0:
        pieces += [
            part(tx.filter(plus), pl.max_horizontal(pl.col("s") - upstream, 0), pl.col("s"), r("upstream")),
            part(tx.filter(~plus), pl.col("e"), pl.col("e") + upstream, r("upstream")),
        ]
    return pl.concat(pieces).filter(pl.col("end0") > pl.col("start0")), tss


@numba.njit(cache=True)
def _find(nxt, j):  # pragma: no cover - compiled
    """Root of ``j`` in the "next unpainted segment" forest, compressing the path."""
    root = j
    while nxt[root] != root:
        root = nxt[root]
    while nxt[j] != root and j != root:
        t = nxt[j]
        nxt[j] = root
        j = t
    return root


@numba.njit(cache=True)
def _paint(lo, hi, rank, gene, nseg, background):  # pragma: no cover - compiled
    """Give each segment the first interval (in the given order) covering it.

    Intervals arrive sorted by precedence; ``nxt`` is a union-find "next unpainted
    segment" pointer, so every segment is painted once: O((segments + intervals) α).
    """
    seg_rank = np.full(nseg, background, dtype=np.int8)
    seg_gene = np.full(nseg, -1, dtype=np.int32)
    nxt = np.arange(nseg + 1)
    for i in range(len(lo)):
        j = _find(nxt, lo[i])
        while j < hi[i]:
            seg_rank[j] = rank[i]
            seg_gene[j] = gene[i]
            nxt[j] = j + 1
            j = _find(nxt, j + 1)
    return seg_rank, seg_gene


@numba.njit(cache=True)
def _span_best(seg_lo, seg_hi, seg_rank, seg_gene, background):  # pragma: no cover - compiled
    """Best (lowest) rank and its gene over segment ranges [seg_lo, seg_hi] (-1/nseg: outside)."""
    n = len(seg_lo)
    nseg = len(seg_rank)
    out_rank = np.full(n, background, dtype=np.int8)
    out_gene = np.full(n, -1, dtype=np.int32)
    for i in range(n):
        for s in range(max(seg_lo[i], 0), min(seg_hi[i], nseg - 1) + 1):
            if seg_rank[s] < out_rank[i]:
                out_rank[i] = seg_rank[s]
                out_gene[i] = seg_gene[s]
    return out_rank, out_gene


class _ContigIndex:
    """Segments of one contig: breakpoints ``bp`` (0-based), class rank and gene per segment,
    plus the sorted 5' ends of + and - strand transcripts (for the nearest upstream gene)."""

    __slots__ = ("bp", "rank", "gene", "plus_tss", "plus_gene", "minus_tss", "minus_gene")

    def __init__(self, bp, rank, gene, plus_tss, plus_gene, minus_tss, minus_gene):
        self.bp, self.rank, self.gene = bp, rank, gene
        self.plus_tss, self.plus_gene = plus_tss, plus_gene
        self.minus_tss, self.minus_gene = minus_tss, minus_gene

    def nearest_upstream_gene(self, pos0: np.ndarray, upstream: int) -> np.ndarray:
        """Gene code of the transcript whose 5' end is nearest downstream-on-its-strand of
        ``pos0`` (within ``upstream`` bp), -1 if none."""
        best_d = np.full(len(pos0), upstream + 1, dtype=np.int64)
        best_g = np.full(len(pos0), -1, dtype=np.int32)
        if len(self.plus_tss):  # + strand: region [tss0 - upstream, tss0); first tss0 > pos0
            i = np.searchsorted(self.plus_tss, pos0, side="right")
            ok = i < len(self.plus_tss)
            d = np.where(ok, self.plus_tss[np.minimum(i, len(self.plus_tss) - 1)] - pos0, upstream + 1)
            take = d < best_d
            best_d[take], best_g[take] = d[take], self.plus_gene[np.minimum(i, len(self.plus_tss) - 1)][take]
        if len(self.minus_tss):  # - strand: region [tss0, tss0 + upstream); last tss0 <= pos0
            j = np.searchsorted(self.minus_tss, pos0, side="right") - 1
            ok = j >= 0
            d = np.where(ok, pos0 - self.minus_tss[np.maximum(j, 0)] + 1, upstream + 1)
            take = d < best_d
            best_d[take], best_g[take] = d[take], self.minus_gene[np.maximum(j, 0)][take]
        return best_g


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------


class RegionAnnotator:
    """Gene and region class per allele from a gene annotation, indexed once.

    Build it once per run with :meth:`open` and call :meth:`annotate` per chunk of
    alleles.  The class rules and their precedence are in the module docstring and in
    ``docs/regions.md``; :data:`REGION_CLASSES` lists the classes in precedence order.

    Attributes
    ----------
    path : str
        The annotation file.
    format : str
        ``gtf``, ``gff3`` or ``spliceai``.
    n_transcripts : int
        Transcripts used.
    """

    def __init__(self, path: str, fmt: str, index: dict[str, _ContigIndex], genes: pa.Array,
                 n_transcripts: int, upstream: int):
        self.path = path
        self.format = fmt
        self._index = index
        self._genes = genes
        self._classes = pa.array(REGION_CLASSES, pa.string())
        self.n_transcripts = n_transcripts
        self.upstream = upstream
        self._resolved: dict[str, str | None] = {}

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        transcripts: Literal["all", "canonical"] = "all",
        upstream: int = UPSTREAM,
    ) -> "RegionAnnotator":
        """Read an annotation and build the segment index.

        Parameters
        ----------
        path : str or PathLike
            A GENCODE / Ensembl GTF, an Ensembl GFF3 (plain or gzip), or a SpliceAI gene
            table (``grch37.txt`` / ``grch38.txt`` as shipped in the ``spliceai`` wheel, or
            a file in the same layout).  The format is detected from the content.
        transcripts : {"all", "canonical"}, default "all"
            ``all`` uses every transcript (the most severe class over transcripts, as VEP's
            ``--pick`` order by consequence); ``canonical`` only those tagged
            ``MANE_Select`` or ``Ensembl_canonical`` (SpliceAI tables are canonical).
        upstream : int, default 5000
            Length of the ``upstream`` region 5' of each transcript (0 disables it).

        Raises
        ------
        InputError
            The file is missing, not one of the formats, truncated, or has no exons.
        ConfigError
            ``transcripts="canonical"`` but no transcript carries a canonical tag, or a
            bad ``transcripts`` / ``upstream`` value.
        """
        p = os.fspath(path)
        if transcripts not in ("all", "canonical"):
            raise ConfigError(f"transcripts={transcripts!r} is not 'all' or 'canonical'")
        if upstream < 0:
            raise ConfigError(f"upstream={upstream} must be >= 0", "use 0 to disable upstream regions")
        if not os.path.isfile(p):
            raise InputError(f"annotation {p!r} does not exist", _FORMAT_HINT)
        fmt = _detect_format(p)
        exons, cds = {"gtf": _load_gtf, "gff3": _load_gff3, "spliceai": _load_spliceai}[fmt](p)
        exons = exons.with_columns(pl.col("tags").fill_null(""))
        if transcripts == "canonical":
            exons = exons.filter(pl.col("tags").str.contains("MANE_Select|Ensembl_canonical"))
            if exons.height == 0:
                raise ConfigError(
                    f"transcripts='canonical' but no transcript in {p!r} is tagged MANE_Select or "
                    "Ensembl_canonical", "use transcripts='all' (older GENCODE releases have no such tags)")
        if exons.height == 0:
            raise InputError(f"annotation {p!r} has no exon records", _FORMAT_HINT)
        bad = exons.filter(~pl.col("strand").is_in(["+", "-"]))
        if bad.height:
            raise InputError(f"{p!r}: transcript {bad['tx'][0]!r} has strand {bad['strand'][0]!r}, "
                             "expected '+' or '-'", _FORMAT_HINT)
        ivals, tss = _intervals(exons, cds, has_cds_info=fmt != "spliceai", upstream=upstream)
        gene_names = ivals["gene"].unique().sort()
        gene_code = {g: i for i, g in enumerate(gene_names.to_list())}
        ivals = ivals.with_columns(
            g=pl.col("gene").replace_strict(gene_code, return_dtype=pl.Int32),
        ).sort(["rank", "tie", "gene", "start0"])  # painting order: precedence, then tie-break
        tss = tss.with_columns(g=pl.col("gene").replace_strict(gene_code, return_dtype=pl.Int32))
        # + strand: the first of equal 5' ends wins (sort by tie); - strand: the last does
        plus = tss.filter(pl.col("strand") == "+").sort(["tss0", "tie", "gene"])
        minus = tss.filter(pl.col("strand") == "-").sort(["tss0", "tie", "gene"],
                                                         descending=[False, True, True])
        plus_by = {k[0]: v for k, v in plus.partition_by("chrom", as_dict=True).items()}
        minus_by = {k[0]: v for k, v in minus.partition_by("chrom", as_dict=True).items()}
        empty = tss.clear()
        index = {}
        for (chrom,), part in ivals.partition_by("chrom", as_dict=True, maintain_order=True).items():
            s = part["start0"].to_numpy()
            e = part["end0"].to_numpy()
            bp = np.unique(np.concatenate([s, e]))
            lo = np.searchsorted(bp, s)
            hi = np.searchsorted(bp, e)
            rank, gene = _paint(lo, hi, part["rank"].to_numpy().astype(np.int8),
                                part["g"].to_numpy(), len(bp) - 1, _INTERGENIC)
            pt, mt = plus_by.get(chrom, empty), minus_by.get(chrom, empty)
            index[chrom] = _ContigIndex(bp, rank, gene, pt["tss0"].to_numpy(), pt["g"].to_numpy(),
                                        mt["tss0"].to_numpy(), mt["g"].to_numpy())
        n_tx = exons["tx"].n_unique()
        log.info("region index from %s (%s): %s transcripts, %s contigs", p, fmt, f"{n_tx:,}", len(index))
        return cls(p, fmt, index, pa.array(gene_names.to_list(), pa.string()), n_tx, upstream)

    @property
    def contigs(self) -> list[str]:
        """Contig names of the annotation."""
        return list(self._index)

    def __repr__(self) -> str:
        return (f"RegionAnnotator({self.path!r}, format={self.format}, transcripts={self.n_transcripts:,}, "
                f"contigs={len(self._index)})")

    def _resolve(self, names: Iterable[str]) -> dict[str, str | None]:
        aliases = []
        for name in names:
            if name not in self._resolved:
                hit = resolve_contig(name, self._index)
                self._resolved[name] = hit
                if hit is not None and hit != name:
                    aliases.append(f"{name}->{hit}")
        if aliases:
            log.info("annotation %s: contig names resolved (%s)", self.path, ", ".join(aliases))
        return {n: self._resolved[n] for n in names}

    def annotate(self, alleles: pl.DataFrame) -> pl.DataFrame:
        """``gene`` and ``region_class`` for each allele, in input order.

        Parameters
        ----------
        alleles : polars.DataFrame
            Columns ``chrom`` (any naming; resolved), ``pos`` (1-based) and ``ref`` (the
            span covered is ``len(ref)`` bases from ``pos``; an empty ``ref`` is an
            insertion between ``pos - 1`` and ``pos``).  ``alt`` and other columns are
            ignored.  A missing ``ref`` column means single-base spans.

        Returns
        -------
        polars.DataFrame
            Same height and order as ``alleles``: ``gene`` (String, null when intergenic)
            and ``region_class`` (String, one of :data:`REGION_CLASSES`); both null when
            the contig is not in the annotation or ``pos`` is null.
        """
        missing = [c for c in ("chrom", "pos") if c not in alleles.columns]
        if missing:
            raise InputError(f"alleles passed to RegionAnnotator.annotate lack column(s) {missing}",
                             "pass a polars DataFrame with chrom, pos (1-based) and ref")
        n = alleles.height
        if n == 0:
            return pl.DataFrame(schema=OUTPUT_SCHEMA)
        chrom = alleles["chrom"].cast(pl.String)
        pos = alleles["pos"].cast(pl.Int64, strict=False)
        reflen = (alleles["ref"].cast(pl.String).str.len_bytes().cast(pl.Int64).fill_null(1)
                  if "ref" in alleles.columns else pl.Series(np.ones(n, dtype=np.int64)))
        start0 = (pos - 1 - (reflen == 0).cast(pl.Int64)).fill_null(-1).to_numpy()
        span = reflen.to_numpy()
        end0 = start0 + np.where(span == 0, 2, span)
        rank = np.full(n, -1, dtype=np.int8)  # -1: unknown contig -> null
        gene = np.full(n, -1, dtype=np.int32)
        cmap = self._resolve(chrom.unique().drop_nulls().to_list())
        codes = chrom.replace_strict({k: i for i, k in enumerate(cmap)}, default=-1,
                                     return_dtype=pl.Int32).fill_null(-1).to_numpy()
        known = pos.is_not_null().to_numpy()
        for i, name in enumerate(cmap):
            target = cmap[name]
            if target is None:
                continue
            sel = np.flatnonzero((codes == i) & known)
            if not len(sel):
                continue
            ix = self._index[target]
            seg_lo = np.searchsorted(ix.bp, start0[sel], side="right") - 1
            seg_hi = np.searchsorted(ix.bp, end0[sel] - 1, side="right") - 1
            single = seg_lo == seg_hi
            inside = single & (seg_lo >= 0) & (seg_lo < len(ix.rank))
            r = np.full(len(sel), _INTERGENIC, dtype=np.int8)
            g = np.full(len(sel), -1, dtype=np.int32)
            r[inside] = ix.rank[seg_lo[inside]]
            g[inside] = ix.gene[seg_lo[inside]]
            multi = ~single
            if multi.any():
                r[multi], g[multi] = _span_best(seg_lo[multi], seg_hi[multi], ix.rank, ix.gene, _INTERGENIC)
            up = r == _RANK["upstream"]
            if up.any():  # the nearest 5' end, not the tie-break order, names the gene
                gu = ix.nearest_upstream_gene(start0[sel][up], self.upstream)
                retry = gu < 0  # a span entering an upstream region from outside it
                if retry.any():
                    gu[retry] = ix.nearest_upstream_gene(end0[sel][up][retry] - 1, self.upstream)
                g[up] = gu
            rank[sel] = r
            gene[sel] = g
        return pl.DataFrame({
            "gene": pl.from_arrow(self._genes.take(pa.array(np.maximum(gene, 0), mask=gene < 0))),
            "region_class": pl.from_arrow(
                self._classes.take(pa.array(np.maximum(rank, 0).astype(np.int32), mask=rank < 0))),
        }).cast(OUTPUT_SCHEMA)
