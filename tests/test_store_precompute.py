"""vareff precompute: saturation mutagenesis into the store; a later VCF of those alleles is served
whole from the store and gives the rows of a run without it."""
from __future__ import annotations

import polars as pl
import pytest

import grover_fixtures as gf
from store_helpers import random_seq, write_fasta
from vareff.cli import main
from vareff.store.admin import info
from vareff.store.precompute import chunks, merge_intervals, resolve_regions
from vareff.window.genome import Genome

OPTS = ["--model-option", "grover.window=600", "--model-option", "grover.stride=300",
        "--model-option", "grover.min_flank=60", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    seq = random_seq(3000, seed=11)
    seq = seq[:1500] + "NN" + seq[1502:]
    fa = write_fasta(d / "g.fa", {"chrT": seq})
    gf.make_checkpoint(d / "ckpt", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=40, seed=8, weight_std=0.12)
    return d, fa, seq


def test_regions_bed_and_chunks(setup, tmp_path):
    d, fa, seq = setup
    g = Genome(fa)
    bed = tmp_path / "r.bed"
    bed.write_text("chrT\t100\t110\nchrT\t105\t120\n")
    assert resolve_regions(g, regions=["chrT:1-5"], bed=str(bed)) == [("chrT", 0, 5), ("chrT", 100, 120)]
    assert merge_intervals([("a", 5, 9), ("a", 0, 5), ("b", 1, 2)]) == [("a", 0, 9), ("b", 1, 2)]
    out = list(chunks(g, [("chrT", 1495, 1505)], 4, deletions=True))
    recs = [r for c, _ in out for r in c]
    assert sum(n for _, n in out) == 8  # two N positions skipped
    assert all(n <= 4 for _, n in out)
    snvs = [r for r in recs if len(r.alts) == 3]
    assert [r.pos1 for r in snvs] == [1496, 1497, 1498, 1499, 1500, 1503, 1504, 1505]
    for r in snvs:
        assert r.ref == seq[r.pos1 - 1] and set(r.alts) == set("ACGT") - {r.ref}
    dels = [r for r in recs if len(r.alts) == 1]
    for r in dels:  # VCF-style: the preceding base, then the deleted one
        assert r.ref == seq[r.pos1 - 1: r.pos1 + 1] and r.alts == (seq[r.pos1 - 1],)
    assert len(dels) == 7  # no deletion right after an N


def test_precompute_then_score_is_served_whole(setup, tmp_path, capsys):
    d, fa, seq = setup
    store = tmp_path / "store"
    assert main(["precompute", "-f", fa, "-m", str(d / "ckpt"), "--store", str(store), "-r", "chrT:1001-1020",
                 "--deletions", *OPTS]) == 0
    err = capsys.readouterr().err
    assert "20 positions, 80 alleles" in err and "alleles/s" in err and "positions/s" in err
    (c,) = info(store)["configs"]
    assert c["entries"] == 80
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in range(1001, 1021, 3):
        b = seq[p - 1]
        lines.append(f"chrT\t{p}\t.\t{b}\t{','.join(a for a in 'ACGT' if a != b)}\t.\t.\t.")
    lines.append(f"chrT\t1010\t.\t{seq[1009:1011]}\t{seq[1009]}\t.\t.\t.")
    vcf = tmp_path / "in.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert main(["score", str(vcf), "-f", fa, "-m", str(d / "ckpt"), "-o", str(a), "-o", str(tmp_path / "a.vcf"),
                 "--store", "", *OPTS]) == 0
    capsys.readouterr()
    assert main(["score", str(vcf), "-f", fa, "-m", str(d / "ckpt"), "-o", str(b), "-o", str(tmp_path / "b.vcf"),
                 "--store", str(store), *OPTS]) == 0
    assert "grover 22 served, 0 computed" in capsys.readouterr().err
    assert pl.read_parquet(a).equals(pl.read_parquet(b))

    def body(path):  # the VCF without the command line
        return [x for x in path.read_text().splitlines() if not x.startswith("##vareffCommand")]

    assert body(tmp_path / "a.vcf") == body(tmp_path / "b.vcf")
    assert any("GROVER_LLR=" in x for x in body(tmp_path / "b.vcf"))
    # precompute again: everything is already there
    assert main(["precompute", "-f", fa, "-m", str(d / "ckpt"), "--store", str(store), "-r", "chrT:1001-1020",
                 "--deletions", *OPTS]) == 0
    assert "served from the store 80, computed 0" in capsys.readouterr().err


def test_gene_exons_from_an_annotation(shared_data):
    from engine_helpers import tubb8_paths
    from vareff.errors import InputError
    from vareff.store.precompute import gene_exons

    p = tubb8_paths(shared_data)
    iv = merge_intervals(gene_exons(p["annotation"], ["TUBB8"], flank=10))
    # the table's exons (0-based starts, 1-based ends), each widened by 10 nt
    assert iv == [("10", 92882, 94064), ("10", 94544, 94675), ("10", 94733, 94862), ("10", 95111, 95539)]
    with pytest.raises(InputError, match="NOPE"):
        gene_exons(p["annotation"], ["NOPE"], flank=0)
