"""Trio inheritance flags per (allele, proband), from zygosity codes (docs/family.md states each rule).

All inputs are per-allele arrays of one chunk (or of a whole result for the gene-level
compound-het rule); a flag that needs a parent absent from the VCF is false.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vareff.family.genotypes import CARRIER, HEMIZYGOUS, HET, HOM_ALT, REF
from vareff.family.ped import Trio

FLAGS = ("de_novo", "hom_alt_het_parents", "x_linked", "comp_het")


@dataclass(frozen=True)
class Thresholds:
    """Genotype-quality limits for de novo calls (applied to the proband and both parents)."""

    min_gq: int = 20
    min_dp: int = 10


def confident(gq: np.ndarray | None, dp: np.ndarray | None, th: Thresholds) -> np.ndarray | bool:
    """GQ >= min_gq and DP >= min_dp, per allele (-1 = missing fails); an absent FORMAT field is not checked."""
    ok: np.ndarray | bool = True
    if gq is not None:
        ok = ok & (gq >= th.min_gq)
    if dp is not None:
        ok = ok & (dp >= th.min_dp)
    return ok


def trio_flags(codes: np.ndarray, gq: np.ndarray | None, dp: np.ndarray | None, col: dict[str, int],
               trio: Trio, is_x_haploid: np.ndarray, th: Thresholds = Thresholds()) -> dict[str, np.ndarray]:
    """Allele-level flags (A,) for one proband: de novo, recessive homozygous, X-linked.

    ``codes``/``gq``/``dp`` are (A, S) over the VCF samples, ``col`` maps a sample to its column;
    ``is_x_haploid``: the allele lies on X outside the PARs.
    """
    n = codes.shape[0]
    false = np.zeros(n, dtype=bool)
    k = col[trio.proband]
    kid = codes[:, k]
    f = codes[:, col[trio.father]] if trio.father is not None else None
    m = codes[:, col[trio.mother]] if trio.mother is not None else None

    def conf(s: str | None):
        if s is None:
            return false
        j = col[s]
        return confident(None if gq is None else gq[:, j], None if dp is None else dp[:, j], th) & np.ones(n, bool)

    carrier = np.isin(kid, CARRIER)
    out = {"de_novo": false, "hom_alt_het_parents": false, "x_linked": false}
    if f is not None and m is not None:
        out["de_novo"] = carrier & (f == REF) & (m == REF) & conf(trio.proband) & conf(trio.father) & conf(trio.mother)
        out["hom_alt_het_parents"] = (kid == HOM_ALT) & (f == HET) & (m == HET)
    if m is not None and trio.sex == "male":
        out["x_linked"] = is_x_haploid & (kid == HEMIZYGOUS) & (m == HET) & ((f == REF) if f is not None else True)
    return out


def parent_of_origin(codes: np.ndarray, col: dict[str, int], trio: Trio) -> tuple[np.ndarray, np.ndarray]:
    """(from_father, from_mother) per allele: proband het, exactly one parent carries it, the other is ref."""
    n = codes.shape[0]
    if trio.father is None or trio.mother is None:
        return np.zeros(n, bool), np.zeros(n, bool)
    kid, f, m = codes[:, col[trio.proband]], codes[:, col[trio.father]], codes[:, col[trio.mother]]
    het = kid == HET
    return het & np.isin(f, CARRIER) & (m == REF), het & np.isin(m, CARRIER) & (f == REF)


def comp_het(gene: np.ndarray, from_father: np.ndarray, from_mother: np.ndarray,
             qualifying: np.ndarray | None = None) -> np.ndarray:
    """Alleles in a gene that holds >= 1 qualifying allele from each parent (compound-het candidates)."""
    q = np.ones(len(gene), bool) if qualifying is None else np.asarray(qualifying, bool)
    gene = np.asarray(gene, dtype=object)
    has_gene = np.array([g is not None and g == g and g != "" for g in gene], dtype=bool)
    ff, fm = from_father & q & has_gene, from_mother & q & has_gene
    both = set(gene[ff]) & set(gene[fm])
    return (ff | fm) & np.isin(gene, list(both)) if both else np.zeros(len(gene), bool)
