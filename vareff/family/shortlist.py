"""A ranked shortlist per proband: the alleles they carry, by inheritance and then by priority."""
from __future__ import annotations

import polars as pl

from vareff.family.inheritance import FLAGS

#: columns that join a samples-table row to its allele row
ALLELE_KEY = ["chrom", "pos", "ref", "alt", "allele_index"]
CARRIER_NAMES = ["het", "hom_alt", "hemizygous"]


def with_comp_het(samples: pl.DataFrame, alleles: pl.DataFrame) -> pl.DataFrame:
    """Fill ``comp_het`` on proband rows: a gene holding >= 1 qualifying allele from each parent.

    Qualifying: from one parent (``from_father``/``from_mother``) and not flagged ``common``.
    The gene comes from the allele table (``gene``, else ``spliceai_gene``).
    """
    gene_col = "gene" if "gene" in alleles.columns else ("spliceai_gene" if "spliceai_gene" in alleles.columns else None)
    if gene_col is None or "from_father" not in samples.columns:
        return samples.with_columns(pl.lit(None, pl.Boolean).alias("comp_het"))
    common = pl.col("common") if "common" in alleles.columns else pl.lit(False)
    info = alleles.select(*ALLELE_KEY, pl.col(gene_col).alias("_gene"), common.fill_null(False).alias("_common"))
    s = samples.join(info, on=ALLELE_KEY, how="left", nulls_equal=True)
    q = ~pl.col("_common").fill_null(False) & pl.col("_gene").is_not_null()
    s = s.with_columns(
        (pl.col("from_father").fill_null(False) & q).alias("_ff"),
        (pl.col("from_mother").fill_null(False) & q).alias("_fm"),
    )
    both = (s.group_by("sample", "_gene").agg(pl.col("_ff").any().alias("_anyf"), pl.col("_fm").any().alias("_anym"))
             .filter(pl.col("_anyf") & pl.col("_anym")).select("sample", "_gene", pl.lit(True).alias("_pair")))
    s = s.join(both, on=["sample", "_gene"], how="left")
    flag = pl.when(pl.col("is_proband")).then((pl.col("_ff") | pl.col("_fm")) & pl.col("_pair").fill_null(False))
    return s.with_columns(flag.alias("comp_het")).drop("_gene", "_common", "_ff", "_fm", "_pair")


def shortlist(alleles: pl.DataFrame, samples: pl.DataFrame, probands: list[str] | None = None,
              top: int | None = None, include_common: bool = False) -> pl.DataFrame:
    """Each proband's carried alleles, ranked: any inheritance flag first, then ``priority`` (high first).

    ``samples`` is the per-(allele, sample) table written beside a scored result; ``probands``
    defaults to the samples marked ``is_proband``.  Common alleles (``common`` column) are left
    out unless ``include_common``; ``top`` keeps the first N per proband.
    """
    s = samples
    if probands is None:
        if "is_proband" not in s.columns:
            probands = []
        else:
            probands = s.filter(pl.col("is_proband").fill_null(False)).get_column("sample").unique().sort().to_list()
    s = s.filter(pl.col("sample").is_in(probands) & pl.col("zygosity").is_in(CARRIER_NAMES))
    for f in FLAGS:
        if f not in s.columns:
            s = s.with_columns(pl.lit(None, pl.Boolean).alias(f))
    a = alleles
    if not include_common and "common" in a.columns:
        a = a.filter(~pl.col("common").fill_null(False))
    keep = [c for c in s.columns if c not in ALLELE_KEY and c not in ("is_proband", "from_father", "from_mother")]
    s = s.select(*ALLELE_KEY, *keep)
    df = s.join(a, on=ALLELE_KEY, how="inner", nulls_equal=True)
    if "priority" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Float64).alias("priority"))
    df = df.with_columns(pl.any_horizontal([pl.col(f).fill_null(False) for f in FLAGS]).alias("inheritance"))
    df = df.sort(["sample", "inheritance", "priority"], descending=[False, True, True], nulls_last=True)
    df = df.with_columns(pl.int_range(1, pl.len() + 1).over("sample").alias("rank")).rename({"sample": "proband"})
    if top is not None:
        df = df.filter(pl.col("rank") <= top)
    first = ["proband", "rank", "chrom", "pos", "id", "ref", "alt", "gene", "region_class", "zygosity", "gt",
             "inheritance", *FLAGS, "priority", "priority_source"]
    first = [c for c in first if c in df.columns]
    return df.select(first + [c for c in df.columns if c not in first])
