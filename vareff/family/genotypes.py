"""Per-(allele, sample) zygosity from VCF genotype indices, vectorised over a chunk.

Genotypes come as cyvcf2's ``Variant.genotype.array()`` rows: allele indices per sample,
``-1`` for a missing call (``.``) and ``-2`` past the sample's ploidy (haploid calls in a
diploid file), plus a phase column that is ignored.  Each ALT of a multi-allelic record
gets its own zygosity from the indices (a ``1/2`` sample is ``het`` for ALT 1 and ALT 2).
"""
from __future__ import annotations

import re

import numpy as np

#: zygosity codes (int8) and their names in the output
REF, HET, HOM_ALT, HEMIZYGOUS, MISSING, PARTIAL, OTHER_ALT = range(7)
ZYGOSITY = ("ref", "het", "hom_alt", "hemizygous", "missing", "partial", "other_alt")
#: codes for which the sample carries at least one copy of the allele (``partial``: e.g. ``1/.``)
CARRIER = (HET, HOM_ALT, HEMIZYGOUS)

#: pseudo-autosomal regions (1-based inclusive), where males are diploid: GRCh38 and GRCh37
PAR = {
    "GRCh38": {"X": ((10_001, 2_781_479), (155_701_383, 156_030_895)),
               "Y": ((10_001, 2_781_479), (56_887_903, 57_217_415))},
    "GRCh37": {"X": ((60_001, 2_699_520), (154_931_044, 155_260_560)),
               "Y": ((10_001, 2_649_520), (59_034_050, 59_363_566))},
}
_MITO = {"MT", "M"}


def sex_chrom(chrom: str) -> str | None:
    """``"X"``, ``"Y"``, ``"MT"`` for the sex and mitochondrial contigs (any naming), else None."""
    c = re.sub(r"^chr", "", chrom, flags=re.IGNORECASE).upper()
    if c in ("X", "Y"):
        return c
    return "MT" if c in _MITO else None


def haploid_context(chrom: np.ndarray, pos1: np.ndarray, build: str = "GRCh38") -> tuple[np.ndarray, np.ndarray]:
    """Per allele: (X/Y outside the PARs: haploid in males, mitochondrial: haploid in everyone)."""
    kinds = np.array([sex_chrom(c) or "" for c in chrom], dtype=object)
    pos1 = np.asarray(pos1, dtype=np.int64)
    male_haploid = np.zeros(len(kinds), dtype=bool)
    for c in ("X", "Y"):
        sel = kinds == c
        in_par = np.zeros(len(kinds), dtype=bool)
        for a, b in PAR[build][c]:
            in_par |= (pos1 >= a) & (pos1 <= b)
        male_haploid |= sel & ~in_par
    return male_haploid, kinds == "MT"


def stack_genotypes(arrays: list[np.ndarray]) -> np.ndarray:
    """cyvcf2 ``genotype.array()`` per record -> (R, S, P) allele indices, padded with -2."""
    if not arrays:
        return np.zeros((0, 0, 0), dtype=np.int16)
    p = max(a.shape[1] - 1 for a in arrays)
    out = np.full((len(arrays), arrays[0].shape[0], p), -2, dtype=np.int16)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1] - 1] = a[:, :-1]
    return out.astype(np.int8) if out.max(initial=0) < 127 else out  # int8: half the traffic in zygosity()


def zygosity(gt: np.ndarray, alt_index: np.ndarray, male_haploid: np.ndarray, mito: np.ndarray,
             is_male: np.ndarray) -> np.ndarray:
    """Zygosity codes (A, S) for alleles ``alt_index`` (A,) given their records' genotypes (A, S, P).

    Rules: no call -> missing; some alleles missing (``0/.``, ``1/.``) -> partial; no copy -> ref
    (or other_alt when another ALT is called); a haploid call, or a male on X/Y outside the
    PARs, or anyone on MT, with every called allele the ALT -> hemizygous; all copies -> hom_alt;
    else het (a male called ``0/1`` on X stays het: :func:`male_x_het` counts these).
    """
    a = np.asarray(alt_index, dtype=gt.dtype)[:, None, None]
    present = gt != -2
    miss = (gt == -1) & present
    ploidy = present.sum(-1)
    nmiss = miss.sum(-1)
    ncopy = ((gt == a) & present).sum(-1)
    nother = (present & ~miss & (gt != a) & (gt != 0)).sum(-1)
    haploid = (ploidy == 1) | (male_haploid[:, None] & np.asarray(is_male)[None, :]) | mito[:, None]
    code = np.where(ncopy == ploidy, np.where(haploid, HEMIZYGOUS, HOM_ALT), HET)
    code = np.where(ncopy == 0, np.where(nother > 0, OTHER_ALT, REF), code)
    code = np.where(nmiss > 0, PARTIAL, code)
    code = np.where((ploidy == 0) | (nmiss == ploidy), MISSING, code)
    return code.astype(np.int8)


def male_x_het(codes: np.ndarray, male_haploid: np.ndarray, is_male: np.ndarray) -> int:
    """How many male calls outside the PARs are heterozygous (a sex or PAR inconsistency)."""
    return int(((codes == HET) & male_haploid[:, None] & np.asarray(is_male)[None, :]).sum())


def format_ints(values: list[np.ndarray | None], n_samples: int) -> np.ndarray:
    """cyvcf2 ``format(FIELD)`` arrays (S, k) per record -> (R, S) int32, -1 for missing or absent."""
    out = np.full((len(values), n_samples), -1, dtype=np.int32)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = v[:, 0]
    return np.where(out < 0, -1, out)
