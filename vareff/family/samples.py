"""The per-(allele, sample) table of one chunk: GT, zygosity, depth, GQ and trio flags.

Pure over arrays: the engine hands in cyvcf2's genotype arrays and FORMAT values per record
(:func:`record_genotypes` is the one place that touches cyvcf2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from vareff.family.genotypes import (CARRIER, HET, MISSING, PARTIAL, ZYGOSITY, format_ints, haploid_context,
                                     sex_chrom, stack_genotypes, zygosity)
from vareff.family.inheritance import Thresholds, parent_of_origin, trio_flags
from vareff.family.ped import Pedigree, Trio

SCHEMA = {
    "chrom": pl.String, "pos": pl.Int64, "ref": pl.String, "alt": pl.String, "allele_index": pl.Int32,
    "sample": pl.String, "gt": pl.String, "zygosity": pl.String, "dp": pl.Int32, "gq": pl.Int32,
    "is_proband": pl.Boolean, "de_novo": pl.Boolean, "hom_alt_het_parents": pl.Boolean, "x_linked": pl.Boolean,
    "from_father": pl.Boolean, "from_mother": pl.Boolean,
}


@dataclass
class SampleSpec:
    """Which samples go into the table and what is known about them."""

    vcf_samples: list[str]
    selected: list[str]
    carriers_only: bool = True
    pedigree: Pedigree | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    build: str = "GRCh38"

    def __post_init__(self):
        self.col = {s: i for i, s in enumerate(self.vcf_samples)}
        self.sel = np.array([self.col[s] for s in self.selected], dtype=np.int64)
        sex = [self.pedigree.sex(s) if self.pedigree else None for s in self.vcf_samples]
        self.is_male = np.array([x == "male" for x in sex], dtype=bool)
        self.trios: list[Trio] = self.pedigree.trios(self.vcf_samples) if self.pedigree else []


@dataclass
class RecordGenotypes:
    """One record's genotype indices (S, P+1) and its FORMAT DP/GQ as cyvcf2 gives them (None if absent)."""

    gt: np.ndarray
    dp: np.ndarray | None
    gq: np.ndarray | None


def _format(variant, name: str):
    """A FORMAT field's values, or None when the record or the header lacks it."""
    try:
        return variant.format(name)
    except KeyError:  # cyvcf2: the field is not declared in the header
        return None


def record_genotypes(variant, n_samples: int) -> RecordGenotypes:
    """Read GT/DP/GQ of one cyvcf2 record (a FORMAT field the record lacks is None)."""
    gt = variant.genotype.array() if variant.genotype is not None else np.full((n_samples, 3), -1, np.int16)
    return RecordGenotypes(gt, _format(variant, "DP"), _format(variant, "GQ"))


def gt_texts(alleles: np.ndarray, phased: np.ndarray) -> pl.Series:
    """VCF GT text of calls (R, P) of allele indices (-1 missing, -2 past the ploidy), vectorised."""
    sep = pl.Series(np.where(phased, "|", "/"))
    out = None
    for j in range(alleles.shape[1]):
        a = pl.Series(alleles[:, j].astype(np.int64))
        text = pl.select(pl.when(a == -2).then(None).when(a == -1).then(pl.lit("."))
                         .otherwise(a.cast(pl.String))).to_series()
        out = text if out is None else pl.select(
            pl.when(text.is_null()).then(out).otherwise(pl.concat_str([out, sep, text]))).to_series()
    return out.alias("gt")


def chunk_table(spec: SampleSpec, recs: list[RecordGenotypes | None], record: np.ndarray, alt_index: np.ndarray,
                chrom: list[str], pos1: np.ndarray, ref: list[str], alt: list[str | None]) -> tuple[pl.DataFrame, int]:
    """Rows for every (allele, selected sample) (carriers and half-missing calls only when
    ``spec.carriers_only``), plus the count of heterozygous male calls outside the PARs (for a warning).

    ``record``/``alt_index``/``chrom``/``pos1``/``ref``/``alt`` describe the chunk's alleles;
    alleles whose record has no genotypes (``None``: malformed) or no ALT index are left out.
    """
    record = np.asarray(record)
    alt_index = np.asarray(alt_index)
    keep = np.array([recs[r] is not None for r in record], dtype=bool) & (alt_index > 0) if len(record) else \
        np.zeros(0, bool)
    keep &= np.array([a not in (None, ".", "", "*") for a in alt], dtype=bool) if len(record) else keep
    idx = np.flatnonzero(keep)
    if not len(idx) or not len(spec.sel):
        return pl.DataFrame(schema=SCHEMA), 0
    used = sorted(set(record[idx].tolist()))
    where = {r: i for i, r in enumerate(used)}
    g = stack_genotypes([recs[r].gt for r in used])[[where[r] for r in record[idx]]]
    n_samples = len(spec.vcf_samples)
    dp = format_ints([recs[r].dp for r in used], n_samples)[[where[r] for r in record[idx]]]
    gq = format_ints([recs[r].gq for r in used], n_samples)[[where[r] for r in record[idx]]]
    has_dp = all(recs[r].dp is not None for r in used)
    has_gq = all(recs[r].gq is not None for r in used)
    ch = np.array([chrom[i] for i in idx], dtype=object)
    male_hap, mito = haploid_context(ch, pos1[idx], spec.build)
    codes = zygosity(g, alt_index[idx], male_hap, mito, spec.is_male)
    inconsistent = (codes == HET) & male_hap[:, None] & spec.is_male[None, :]
    male_x_het = int(inconsistent.sum())
    is_x = male_hap & np.array([sex_chrom(c) == "X" for c in ch], dtype=bool)
    ruled = np.where(inconsistent, MISSING, codes)  # a het male X/Y call never satisfies a rule

    flags: dict[str, dict[str, np.ndarray]] = {}
    for t in spec.trios:
        fl = trio_flags(ruled, gq if has_gq else None, dp if has_dp else None, spec.col, t, is_x, spec.thresholds)
        fl["from_father"], fl["from_mother"] = parent_of_origin(ruled, spec.col, t)
        flags[t.proband] = fl

    sub = codes[:, spec.sel]
    wanted = np.isin(sub, CARRIER) | (sub == PARTIAL) if spec.carriers_only else np.ones_like(sub, bool)
    ai, si = np.nonzero(wanted)
    cols = spec.sel[si]
    phase = np.stack([recs[r].gt[:, -1] for r in used])[[where[r] for r in record[idx]]]
    names = np.asarray(spec.selected, dtype=object)[si]
    is_proband = np.isin(names, list(flags))
    rows = {
        "chrom": np.asarray(chrom, dtype=object)[idx][ai], "pos": pos1[idx][ai].astype(np.int64),
        "ref": np.asarray(ref, dtype=object)[idx][ai], "alt": np.asarray(alt, dtype=object)[idx][ai],
        "allele_index": alt_index[idx][ai].astype(np.int32), "sample": names,
        "gt": gt_texts(g[ai, cols], phase[ai, cols] != 0),
        "zygosity": np.asarray(ZYGOSITY, dtype=object)[sub[ai, si]],
        "dp": np.where(has_dp, dp[ai, cols], -1).astype(np.int32),
        "gq": np.where(has_gq, gq[ai, cols], -1).astype(np.int32),
        "is_proband": is_proband,
    }
    for name in ("de_novo", "hom_alt_het_parents", "x_linked", "from_father", "from_mother"):
        vals = np.zeros(len(ai), dtype=bool)
        for proband, fl in flags.items():
            mine = names == proband
            vals[mine] = fl[name][ai[mine]]
        rows[name] = pl.Series(name, vals).set(pl.Series(~is_proband), None)
    df = pl.DataFrame(rows, schema=SCHEMA)
    df = df.with_columns(pl.when(pl.col("dp") < 0).then(None).otherwise(pl.col("dp")).alias("dp"),
                         pl.when(pl.col("gq") < 0).then(None).otherwise(pl.col("gq")).alias("gq"))
    return df, male_x_het
