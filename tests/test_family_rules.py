"""Zygosity, PED parsing and trio inheritance rules on hand-built genotype arrays."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from vareff.errors import InputError
from vareff.family.genotypes import (HEMIZYGOUS, HET, HOM_ALT, MISSING, OTHER_ALT, PARTIAL, REF, haploid_context,
                                     stack_genotypes, zygosity)
from vareff.family.inheritance import Thresholds, comp_het, parent_of_origin, trio_flags
from vareff.family.ped import Trio, parse_ped
from vareff.family.shortlist import shortlist, with_comp_het


def _gt(*calls):
    """'0/1', '1|2', '1', './.', '0/.' -> cyvcf2-style rows (allele indices, -1 missing, -2 end, phase)."""
    rows = []
    for c in calls:
        phased = "|" in c
        al = [-1 if a == "." else int(a) for a in c.replace("|", "/").split("/")]
        rows.append(al + [-2] * (2 - len(al)) + [int(phased)])
    return np.array(rows, dtype=np.int16)


def test_zygosity_per_alt_of_a_multiallelic_record():
    g = stack_genotypes([_gt("0/1", "1/2", "2/2", "./.", "0/.", "1/.", "0/0", "1")])
    g2 = np.concatenate([g, g])  # the same record, once per ALT
    codes = zygosity(g2, np.array([1, 2]), np.zeros(2, bool), np.zeros(2, bool), np.zeros(8, bool))
    assert codes[0].tolist() == [HET, HET, OTHER_ALT, MISSING, PARTIAL, PARTIAL, REF, HEMIZYGOUS]
    assert codes[1].tolist() == [OTHER_ALT, HET, HOM_ALT, MISSING, PARTIAL, PARTIAL, REF, OTHER_ALT]


def test_male_x_outside_par_is_hemizygous_and_par_is_diploid():
    chrom = np.array(["chrX", "X", "chrX", "chr1", "MT"], dtype=object)
    pos = np.array([5_000_000, 5_000_000, 100_000, 5_000_000, 100])
    male_hap, mito = haploid_context(chrom, pos)
    assert male_hap.tolist() == [True, True, False, False, False]
    assert mito.tolist() == [False, False, False, False, True]
    g = stack_genotypes([_gt("1/1", "1/1")] * 5)  # a male (col 0) and a female (col 1)
    codes = zygosity(g, np.ones(5, int), male_hap, mito, np.array([True, False]))
    assert codes[:, 0].tolist() == [HEMIZYGOUS, HEMIZYGOUS, HOM_ALT, HOM_ALT, HEMIZYGOUS]
    assert codes[:, 1].tolist() == [HOM_ALT, HOM_ALT, HOM_ALT, HOM_ALT, HEMIZYGOUS]


def _trio_codes(kid, dad, mom):
    g = stack_genotypes([_gt(k, d, m) for k, d, m in zip(kid, dad, mom)])
    return zygosity(g, np.ones(len(kid), int), np.zeros(len(kid), bool), np.zeros(len(kid), bool),
                    np.array([False, True, False]))


COL = {"kid": 0, "dad": 1, "mom": 2}
TRIO = Trio("kid", "dad", "mom", "female")


def test_de_novo_needs_confident_ref_parents():
    codes = _trio_codes(["0/1", "0/1", "0/1", "0/1", "0/1"], ["0/0", "0/1", "0/.", "0/0", "0/0"],
                        ["0/0", "0/0", "0/0", "./.", "0/0"])
    gq = np.array([[99, 99, 99]] * 4 + [[99, 5, 99]])
    fl = trio_flags(codes, gq, None, COL, TRIO, np.zeros(5, bool), Thresholds(min_gq=20))
    # a het parent, a half-missing parent, a missing parent and a low-GQ parent never give de novo
    assert fl["de_novo"].tolist() == [True, False, False, False, False]
    no_parents = trio_flags(codes, gq, None, COL, Trio("kid", None, None, "female"), np.zeros(5, bool))
    assert not no_parents["de_novo"].any()


def test_recessive_and_x_linked():
    codes = _trio_codes(["1/1", "1/1", "1/1"], ["0/1", "0/0", "0/0"], ["0/1", "0/1", "0/1"])
    fl = trio_flags(codes, None, None, COL, TRIO, np.zeros(3, bool))
    assert fl["hom_alt_het_parents"].tolist() == [True, False, False]
    g = stack_genotypes([_gt("1", "0", "0/1"), _gt("1", "0", "0/0"), _gt("1/1", "0", "0/1")])
    male_hap = np.ones(3, bool)
    codes = zygosity(g, np.ones(3, int), male_hap, np.zeros(3, bool), np.array([True, True, False]))
    male = Trio("kid", "dad", "mom", "male")
    fl = trio_flags(codes, None, None, COL, male, male_hap)
    assert fl["x_linked"].tolist() == [True, False, True]
    assert not trio_flags(codes, None, None, COL, Trio("kid", "dad", "mom", None), male_hap)["x_linked"].any()


def test_compound_het_needs_one_allele_from_each_parent_in_one_gene():
    codes = _trio_codes(["0/1", "0/1", "0/1", "0/1", "0/1"], ["0/1", "0/0", "0/1", "0/1", "0/1"],
                        ["0/0", "0/1", "0/0", "0/1", "0/0"])
    ff, fm = parent_of_origin(codes, COL, TRIO)
    assert ff.tolist() == [True, False, True, False, True]
    assert fm.tolist() == [False, True, False, False, False]
    gene = np.array(["BRCA1", "BRCA1", "NBR1", "NBR1", None], dtype=object)
    assert comp_het(gene, ff, fm).tolist() == [True, True, False, False, False]
    # the maternal allele is common: no qualifying pair is left
    assert not comp_het(gene, ff, fm, qualifying=np.array([True, False, True, True, True])).any()


def test_ped_parsing_and_warnings():
    ped = parse_ped("#fam id dad mom sex pheno\nF kid dad mom 1 2\nF dad 0 0 2 1\nF mom 0 0 2 1\n"
                    "F lone 0 0 2 2\nF ghost 0 0 1 1\n", "t.ped")
    warn = " | ".join(ped.check(["kid", "dad", "mom", "lone"]))
    assert "ghost" in warn and "lone has no parents" in warn and "dad is the father of kid but its PED sex is female" in warn
    trios = ped.trios(["kid", "dad", "mom"])
    assert [(t.proband, t.father, t.mother, t.sex) for t in trios] == [("kid", "dad", "mom", "male")]
    with pytest.raises(InputError, match="line 1: a PED row needs 6 columns"):
        parse_ped("F kid dad mom 1\n", "bad.ped")
    with pytest.raises(InputError, match="listed twice"):
        parse_ped("F a 0 0 1 1\nF a 0 0 1 1\n", "dup.ped")


def test_shortlist_ranks_inheritance_then_priority_and_drops_common():
    key = dict(chrom=["1", "1", "1", "2"], pos=[10, 20, 30, 40], ref=["A"] * 4, alt=["C"] * 4, allele_index=[1] * 4)
    alleles = pl.DataFrame({**key, "id": ["a", "b", "c", "d"], "gene": ["G1", "G1", "G2", "G3"],
                            "priority": [0.9, 0.2, 0.5, 0.99], "common": [False, False, False, True]})
    samples = pl.DataFrame({**key, "sample": ["kid"] * 4, "zygosity": ["het"] * 4, "gt": ["0/1"] * 4,
                            "is_proband": [True] * 4, "de_novo": [False, False, True, False],
                            "from_father": [True, False, False, False], "from_mother": [False, True, False, False]})
    samples = with_comp_het(samples, alleles)
    assert samples.get_column("comp_het").to_list() == [True, True, False, False]
    out = shortlist(alleles, samples)
    assert out.get_column("id").to_list() == ["a", "c", "b"]  # all flagged; by priority; the common one left out
    assert out.get_column("rank").to_list() == [1, 2, 3]
    assert shortlist(alleles, samples, include_common=True).get_column("id").to_list() == ["a", "c", "b", "d"]


def test_max_af_per_allele_and_common_flag():
    from vareff.errors import ConfigError
    from vareff.family.frequency import MaxAf, common_flag, per_allele

    lim = MaxAf.parse("gnomad_AF<=0.01")
    assert (lim.field, lim.limit, lim.column) == ("gnomad_AF", 0.01, "info_gnomad_AF")
    for bad in ("AF", "AF<=x", "AF<=2"):
        with pytest.raises(ConfigError):
            MaxAf.parse(bad)
    # record 0: Number=A (two ALTs), record 1: Number=1, record 2: missing
    vals = per_allele([(0.2, 0.001), 0.05, None], np.array([0, 0, 1, 2]), np.array([1, 2, 1, 1]))
    assert np.allclose(vals[:3], [0.2, 0.001, 0.05]) and np.isnan(vals[3])
    assert common_flag({lim.column: vals}, [lim]).tolist() == [True, False, True, False]
