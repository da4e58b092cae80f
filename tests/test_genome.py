"""Reference access: aliases, sliced FASTAs with an offset, N padding at contig edges."""
from __future__ import annotations

import pysam
import pytest

from vareff.errors import ConfigError, InputError
from vareff.window.contigs import alias_candidates, resolve_contig
from vareff.window.genome import ContigSlice, Genome

from engine_helpers import brca_paths, tubb8_paths


def test_aliases():
    assert resolve_contig("1", {"chr1", "chr2"}) == "chr1"
    assert resolve_contig("chrX", {"X"}) == "X"
    assert resolve_contig("MT", {"chrM"}) == "chrM"
    assert resolve_contig("chrM", {"MT"}) == "MT"
    assert resolve_contig("5", {"chr1"}) is None
    assert alias_candidates("chr7")[0] == "chr7"


def test_prefix_and_plain_fastas_agree(shared_data):
    p = tubb8_paths(shared_data)
    a, b = Genome(p["fasta"]), Genome(p["fasta_noprefix"])
    assert a.fetch("10", 94000, 94100) == b.fetch("chr10", 94000, 94100)
    assert a.fetch("chr10", 94076, 94077) == "A"  # golden SNV 10:94077 A>C
    seq = a.fetch("chr10", 59990, 60010)
    assert seq == seq.upper() and seq.startswith("N" * 10)


def test_edges_padded_with_n(shared_data):
    g = Genome(tubb8_paths(shared_data)["fasta"])
    n = g.lengths["chr10"]
    tail = g.fetch("chr10", n - 5, n + 5)
    assert len(tail) == 10 and tail.endswith("N" * 5)
    assert g.fetch("chr10", -5, 3).startswith("N" * 5)
    assert not g.covers("chr10", n - 1, n + 1) and g.covers("chr10", 0, n)


def test_slice_with_offset(shared_data):
    """The SLC5A1 slice is named chr22 but starts at genomic 32,000,001."""
    path = shared_data / "grch38" / "slc5a1_region" / "hg38_chr22_32000000_32300000.fa"
    g = Genome(path, contig_map=[ContigSlice.parse("chr22=chr22+32000000")])
    raw = pysam.FastaFile(str(path)).fetch("chr22", 0, 50).upper()
    assert g.fetch("chr22", 32_000_000, 32_000_050) == raw
    assert g.span("chr22") == (32_000_000, 32_300_000)
    assert g.fetch("chr22", 31_999_998, 32_000_002) == "NN" + raw[:2]


def test_brca_slice_contig_map(shared_data):
    p = brca_paths(shared_data)
    g = Genome(p["fasta"], contig_map=[ContigSlice.parse(p["contig_map"])])
    # GRCh38 chr17:43,124,118 is the shifted Pangolin SNV T>G (REF verified in the data README)
    assert g.fetch("chr17", 43_124_117, 43_124_118) == "T"


def test_errors(tmp_path, shared_data):
    with pytest.raises(InputError, match="does not exist"):
        Genome(tmp_path / "nope.fa")
    with pytest.raises(ConfigError, match="CHROM=FASTA_CONTIG"):
        ContigSlice.parse("chr22")
    with pytest.raises(ConfigError, match="does not have"):
        Genome(tubb8_paths(shared_data)["fasta"], contig_map=[ContigSlice.parse("chr1=chrZ+5")])
