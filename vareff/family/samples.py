"""The per-(allele, sample) table of one chunk: GT, zygosity, depth, GQ and trio flags.

Pure over arrays: the engine hands in cyvcf2's genotype arrays and FORMAT values per record
(:func:`record_genotypes` is the one place that touches cyvcf2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from vareff.family.genotypes import (CARRIER, HET, MISSING, PARTIAL, ZYGOSITY, format_int, haploid_context, sex_chrom,
                                     stack_genotypes, zygosity)
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
    """One record's genotype indices (S, P+1) and FORMAT DP/GQ (S,), -1 = missing."""

    gt: np.ndarray
    dp: np.ndarray
    gq: np.ndarray
    has_dp: bool
    has_gq: bool


def _format(variant, name: str):
    """A FORMAT field's values, or None when the record or the header lacks it."""
    try:
        return variant.format(name)
    except KeyError:  # cyvcf2: the field is not declared in the header
        return None


def record_genotypes(variant, n_samples: int) -> RecordGenotypes:
    """Read GT/DP/GQ of one cyvcf2 record (missing FORMAT fields give -1 and ``has_* = False``)."""
    gt = variant.genotype.array() if variant.genotype is not None else np.full((n_samples, 3), -1, np.int16)
    dp, gq = _format(variant, "DP"), _format(variant, "GQ")
    return RecordGenotypes(np.asarray(gt), format_int(dp, n_samples), format_int(gq, n_samples),
                           dp is not None, gq is not None)


def gt_text(alleles: np.ndarray, phased: bool) -> str:
    """VCF GT text of one call (allele indices, -1 missing, -2 vector end)."""
    return ("|" if phased else "/").join("." if a == -1 else str(int(a)) for a in alleles if a != -2)


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
    dp = np.stack([recs[r].dp for r in used])[[where[r] for r in record[idx]]]
    gq = np.stack([recs[r].gq for r in used])[[where[r] for r in record[idx]]]
    has_dp = all(recs[r].has_dp for r in used)
    has_gq = all(recs[r].has_gq for r in used)
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
    samples = [spec.selected[j] for j in si]
    rows = {
        "chrom": [chrom[idx[i]] for i in ai], "pos": pos1[idx][ai].astype(np.int64),
        "ref": [ref[idx[i]] for i in ai], "alt": [alt[idx[i]] for i in ai],
        "allele_index": alt_index[idx][ai].astype(np.int32), "sample": samples,
        "gt": [gt_text(g[i, spec.sel[j]], bool(recs[record[idx[i]]].gt[spec.sel[j], -1]))
               for i, j in zip(ai, si)],
        "zygosity": [ZYGOSITY[c] for c in sub[ai, si]],
        "dp": np.where(has_dp, dp[ai, spec.sel[si]], -1).astype(np.int32),
        "gq": np.where(has_gq, gq[ai, spec.sel[si]], -1).astype(np.int32),
        "is_proband": [s in flags for s in samples],
    }
    for name in ("de_novo", "hom_alt_het_parents", "x_linked", "from_father", "from_mother"):
        rows[name] = [bool(flags[s][name][i]) if s in flags else None for i, s in zip(ai, samples)]
    df = pl.DataFrame(rows, schema=SCHEMA)
    df = df.with_columns(pl.when(pl.col("dp") < 0).then(None).otherwise(pl.col("dp")).alias("dp"),
                         pl.when(pl.col("gq") < 0).then(None).otherwise(pl.col("gq")).alias("gq"))
    return df, male_x_het
