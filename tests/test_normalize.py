"""Allele splitting, trimming, classification and input-level statuses."""
from __future__ import annotations

from hypothesis import given, strategies as st

from vareff.errors import Status
from vareff.normalize.alleles import Record, classify, split_records, trim
from vareff.window.genome import ContigSlice, Genome

from engine_helpers import tubb8_paths

bases = st.text(alphabet="ACGT", min_size=1, max_size=8)


@given(bases, bases, st.integers(1, 10**8))
def test_trim_reconstructs_alleles(ref, alt, pos):
    """Trimmed alleles plus the removed prefix/suffix give back the input, and are minimal."""
    npos, nref, nalt = trim(pos, ref, alt)
    p = npos - pos
    suffix_len = len(ref) - p - len(nref)
    assert ref == ref[:p] + nref + ref[len(ref) - suffix_len:]
    assert alt == ref[:p] + nalt + alt[len(alt) - suffix_len:]
    assert not (nref and nalt and nref[0] == nalt[0])
    assert not (nref and nalt and nref[-1] == nalt[-1])


def test_classify():
    assert [classify(*trim(1, r, a)[1:]) for r, a in [
        ("A", "C"), ("AC", "GT"), ("A", "AT"), ("AT", "A"), ("ATG", "CA"), ("CA", "CT"), ("A", "A")]] == \
        ["snv", "mnv", "insertion", "deletion", "complex", "snv", "none"]


def test_statuses_against_fasta(shared_data):
    g = Genome(tubb8_paths(shared_data)["fasta"])
    recs = [
        Record("chr10", 94077, "a", "A", ("C", "G")),  # multi-allelic ok
        Record("10", 94077, "b", "G", ("C",)),  # REF mismatch, contig alias
        Record("chr2", 100, "c", "A", ("C",)),  # contig not in FASTA
        Record("chr10", 94077, "d", "A", ("<DEL>", "*", "A[chr1:5[")),
        Record("chr10", 94077, "e", "A", ()),  # no ALT
        Record("chr10", 109_999, "f", "AAAA", ("A",)),  # REF runs past the FASTA's end
        Record("chr10", 94077, "g", "a", ("c",)),  # lower case as written
        Record("chr10", 94077, "h", "A", ("R",)),  # IUPAC ALT
    ]
    rows = split_records(recs, g, max_len=3)
    assert rows.id == ["a", "a", "b", "c", "d", "d", "d", "e", "f", "g", "h"]
    assert rows.allele_index == [1, 2, 1, 1, 1, 2, 3, 1, 1, 1, 1]
    assert rows.status == ["ok", "ok", "ref_mismatch", "contig_not_in_fasta", "symbolic_allele",
                           "symbolic_allele", "symbolic_allele", "no_alt", "allele_too_long", "ok",
                           "invalid_allele"]
    assert rows.ref[9] == "a" and rows.alt[9] == "c"  # key columns keep the input's spelling
    assert rows.batch().ref[9] == "A"


def test_outside_fasta_slice(shared_data):
    s = shared_data / "grch38" / "slc5a1_region" / "hg38_chr22_32000000_32300000.fa"
    g = Genome(s, contig_map=[ContigSlice.parse("chr22=chr22+32000000")])
    rows = split_records([Record("chr22", 100, None, "A", ("C",))], g, 1000)
    assert rows.status == [Status.OUTSIDE_FASTA.value]
