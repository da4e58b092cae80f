"""Input formats, regions, stdin, malformed records; outputs in every format with every allele."""
from __future__ import annotations

import subprocess
import sys

import cyvcf2
import polars as pl
import pyarrow.parquet as pq
import pysam
import pytest

import vareff
from vareff.errors import InputError, MalformedRecordError

from engine_helpers import shifted_pangolin_vcf, tubb8_paths, write_vcf

CLINVAR = "clinvar/clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"


def _lookup_only(inp, out, **kw):
    """A model-free run: the host path (read, normalize, write) only."""
    return vareff.score_vcf(inp, out, models=[], **kw)


def test_vcf_vcfgz_bcf_and_stdin_give_the_same_rows(shared_data, tmp_path):
    src = shared_data / CLINVAR
    bcf = tmp_path / "in.bcf"
    pysam.VariantFile(str(src)).close()
    with pysam.VariantFile(str(src)) as vin, pysam.VariantFile(str(bcf), "wb", header=vin.header) as vout:
        for r in vin:
            vout.write(r)
    plain = tmp_path / "in.vcf"
    with pysam.BGZFile(str(src), "rb") as fh:
        plain.write_bytes(fh.read())
    tables = {}
    for name, inp in [("gz", src), ("bcf", bcf), ("plain", plain)]:
        _lookup_only(inp, tmp_path / f"{name}.parquet")
        tables[name] = pl.read_parquet(tmp_path / f"{name}.parquet")
    out = tmp_path / "stdin.parquet"
    with open(plain, "rb") as fh:
        subprocess.run([sys.executable, "-c", "import sys, vareff; vareff.score_vcf('-', sys.argv[1], models=[])",
                        str(out)], stdin=fh, check=True)
    tables["stdin"] = pl.read_parquet(out)
    base = tables["gz"]
    assert base.height == 50 and set(base["status"]) == {"ok"}
    for name, t in tables.items():
        assert t.equals(base), name


def test_regions_need_an_index(shared_data, tmp_path):
    plain = tmp_path / "in.vcf"
    with pysam.BGZFile(str(shared_data / CLINVAR), "rb") as fh:
        plain.write_bytes(fh.read())
    with pytest.raises(InputError, match="needs an index"):
        _lookup_only(plain, tmp_path / "o.parquet", regions=["1:1-1000000"])


def test_regions_through_the_index(shared_data, tmp_path):
    out = tmp_path / "r.parquet"
    # chr-prefixed region names resolve against a file without prefixes; overlapping regions emit once
    _lookup_only(shared_data / CLINVAR, out, regions=["chr10:1-100000", "10:47000-48000", "MT"])
    df = pl.read_parquet(out)
    assert df["chrom"].to_list() == ["10", "10", "MT", "MT"]
    assert df["pos"].to_list()[:2] == [47064, 47121]


def test_malformed_record_is_reported_with_its_line(shared_data, tmp_path):
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf")
    with pytest.raises(MalformedRecordError, match=r"line 30: malformed VCF record"):
        _lookup_only(vcf, tmp_path / "o.parquet")
    s = _lookup_only(vcf, tmp_path / "o.parquet", skip_malformed=True)
    df = pl.read_parquet(tmp_path / "o.parquet")
    assert df.height == 36 and df["status"][0] == "malformed_record"
    assert s.status_counts == {"malformed_record": 1, "ok": 35}


def test_all_formats_every_allele(shared_data, tmp_path):
    """Parquet, bgzipped+indexed VCF and TSV hold every allele with a status; records pass through."""
    p = tubb8_paths(shared_data)
    recs = [("chr10", 94077, "a", "A", "C,G"), ("chr10", 94100, "d", "A", "<DEL>"), ("chr10", 94555, "b", "C", "T"),
            ("chr10", 94555, "c", "G", "T"), ("chr10", 94600, "f", "A", "."), ("chr11", 5, "e", "A", "C")]
    vcf = write_vcf(tmp_path / "in.vcf", recs, contigs={"chr10": 110000, "chr11": 1000})
    outs = [tmp_path / "o.parquet", tmp_path / "o.vcf.gz", tmp_path / "o.tsv"]
    vareff.score_vcf(vcf, outs, fasta=p["fasta"], models=["spliceai"], spliceai_annotation=p["annotation"],
                     spliceai_distance=10, chunk_size=2)
    df = pl.read_parquet(outs[0])
    assert df.select("id", "allele_index", "status").rows() == [
        ("a", 1, "ok"), ("a", 2, "ok"), ("d", 1, "symbolic_allele"), ("b", 1, "ok"), ("c", 1, "ref_mismatch"),
        ("f", 1, "no_alt"), ("e", 1, "contig_not_in_fasta")]
    assert df.filter(pl.col("status") == "ok")["spliceai_ds_max"].null_count() == 0
    assert df.filter(pl.col("status") != "ok")["spliceai_ds_max"].null_count() == 4
    tsv = pl.read_csv(outs[2], separator="\t", null_values=".", comment_prefix="#")
    assert tsv.select("id", "status").rows() == df.select("id", "status").rows()
    # VCF: valid header, every input record, INFO added, tabix index usable
    out_recs = list(cyvcf2.VCF(str(outs[1])))
    in_recs = list(cyvcf2.VCF(str(vcf)))
    assert [(r.CHROM, r.POS, r.ID, r.REF, r.ALT) for r in out_recs] == [(r.CHROM, r.POS, r.ID, r.REF, r.ALT) for r in in_recs]
    assert out_recs[0].INFO["vareff_status"] == "ok,ok"
    assert out_recs[0].INFO["SpliceAI"].count("|TUBB8|") == 2
    assert out_recs[1].INFO["vareff_status"] == "symbolic_allele" and out_recs[1].INFO.get("SpliceAI") is None
    assert out_recs[4].INFO.get("vareff_status") is None  # no ALT: no Number=A values
    with pysam.VariantFile(str(outs[1])) as vf:  # pysam validates the ##INFO headers
        assert "SpliceAI" in vf.header.info and vf.header.info["vareff_status"].number == "A"
        assert [r.pos for r in vf.fetch("chr10", 94500, 94560)] == [94555, 94555]
    meta = pq.read_schema(outs[0]).metadata[b"vareff"]
    assert b"weights_sha256_16" in meta


def test_output_format_errors(tmp_path):
    with pytest.raises(vareff.VareffError, match="cannot tell the output format"):
        vareff.score_vcf("x.vcf", tmp_path / "out.bin", models=[])
