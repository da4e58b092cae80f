"""SpliceAI's published unit-test values (Illumina/SpliceAI tests/test_delta_score.py) reproduced exactly."""
from __future__ import annotations

import csv

import polars as pl
import pytest

import vareff
import vareff.cli
from engine_helpers import tubb8_paths, write_vcf


def _golden_rows(shared):
    with open(shared / "golden" / "spliceai" / "unit_test_expected_delta_scores.tsv") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


# the excerpt table is also read by the CLI test below (same rows, test.fa): the API run with it is `slow`
@pytest.mark.parametrize("annotation", [pytest.param("excerpt", marks=pytest.mark.slow), "grch37"])
def test_golden_delta_scores_via_api(shared_data, annotation):
    """All 8 golden rows (2 variants x chrom naming x FASTA naming) through score_variants."""
    p = tubb8_paths(shared_data)
    ann = p["annotation"] if annotation == "excerpt" else "grch37"
    rows = _golden_rows(shared_data)
    assert len(rows) == 8
    for fasta_name in ("test.fa", "test_without_prefix.fa"):
        sel = [r for r in rows if r["fasta"] == fasta_name]
        df = pl.DataFrame({"chrom": [r["chrom"] for r in sel], "pos": [int(r["pos"]) for r in sel],
                           "ref": [r["ref"] for r in sel], "alt": [r["alt"] for r in sel]})
        (dist,), (mask,) = {r["distance"] for r in sel}, {r["mask"] for r in sel}
        out = vareff.score_variants(
            df, fasta=shared_data / "grch37" / "spliceai_test" / fasta_name, models=["spliceai"],
            spliceai_distance=int(dist), spliceai_mask=bool(int(mask)), spliceai_annotation=ann,
        )
        assert out["status"].to_list() == ["ok"] * len(sel)
        assert out["spliceai"].to_list() == [r["expected_spliceai"] for r in sel]


def test_golden_delta_scores_via_cli_vcf(shared_data, tmp_path):
    """The same values through `vareff score` into a VCF's official SpliceAI INFO field."""
    p = tubb8_paths(shared_data)
    vcf = write_vcf(tmp_path / "in.vcf", [("10", 94077, "v1", "A", "C"), ("chr10", 94555, "v2", "C", "T")])
    out = tmp_path / "out.vcf"
    rc = vareff.cli.main(["score", str(vcf), "-f", p["fasta"], "-m", "spliceai", "--spliceai-distance", "500",
                          "--spliceai-annotation", p["annotation"], "-o", str(out), "--no-progress"])
    assert rc == 0
    infos = [ln.split("\t")[7] for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert infos[0].split(";") == ["vareff_status=ok", "SpliceAI=C|TUBB8|0.15|0.27|0.00|0.05|89|-23|-267|193"]
    assert infos[1].split(";") == ["vareff_status=ok", "SpliceAI=T|TUBB8|0.01|0.18|0.15|0.62|-2|110|-190|0"]
