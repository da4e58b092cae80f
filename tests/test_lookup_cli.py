"""Lookup-only runs through the CLI (no model, no FASTA): am-build, --alphamissense, --annotation,
calibrate and a calibrated --priority, on the real AlphaMissense excerpt and the S5 labels."""
from __future__ import annotations

import json

import numpy as np
import polars as pl

from vareff.cli import main

from engine_helpers import write_vcf


def _s5_in_excerpt(shared) -> pl.DataFrame:
    am = pl.read_csv(shared / "alphamissense" / "AlphaMissense_hg38.talos_test_excerpt.tsv.gz", separator="\t",
                     skip_rows=3, infer_schema_length=0).rename({"#CHROM": "chrom"})
    s5 = pl.read_csv(shared / "alphamissense" / "science.adg7492_data_s5.csv.gz", infer_schema_length=0)
    s5 = s5.with_columns(pl.col("variant_id").str.split("_").list.to_struct(
        fields=["chrom", "POS", "REF", "ALT", "build"])).unnest("variant_id")
    return (am.join(s5, on=["chrom", "POS", "REF", "ALT"], how="inner")
            .with_columns(pl.col("POS").cast(pl.Int64), pl.col("am_pathogenicity").cast(pl.Float64),
                          pl.col("label").cast(pl.Float64))
            .sort("chrom", "POS"))


def test_lookup_only_calibrated_priority(shared_data, tmp_path):
    table = tmp_path / "am.arrow"
    assert main(["am-build", str(shared_data / "alphamissense" / "AlphaMissense_hg38.talos_test_excerpt.tsv.gz"),
                 "-o", str(table), "--no-progress"]) == 0
    rows = _s5_in_excerpt(shared_data)
    assert rows.height == 169
    recs = [(c, p, f"s5_{i}", r, a) for i, (c, p, r, a) in enumerate(rows.select("chrom", "POS", "REF", "ALT").rows())]
    info = ["CLNSIG=" + ("Pathogenic" if lab == 1.0 else "Benign") for lab in rows["label"]]
    vcf = tmp_path / "s5.vcf"
    write_vcf(vcf, recs)
    lines = vcf.read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("#")]
    head.insert(1, '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="ClinVar significance">')
    body = [ln.rsplit("\t", 1)[0] + "\t" + i for ln, i in zip([ln for ln in lines if not ln.startswith("#")], info)]
    vcf.write_text("\n".join(head + body) + "\n")

    maps = tmp_path / "priority.json"
    assert main(["calibrate", str(vcf), "--alphamissense", str(table), "-o", str(maps), "--no-progress"]) == 0
    assert "alphamissense" in json.loads(maps.read_text())["maps"]

    out = tmp_path / "ranked.parquet"
    gff = shared_data / "annotation" / "Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz"
    assert main(["score", str(vcf), "--alphamissense", str(table), "--annotation", str(gff),
                 "--priority", str(maps), "-o", str(out), "--no-progress"]) == 0  # no -m, no -f
    df = pl.read_parquet(out)
    assert df.height == 169 and set(df["status"]) == {"ok"}
    assert np.allclose(df["am_pathogenicity"].to_numpy(), rows["am_pathogenicity"].to_numpy(), atol=5e-5)
    assert df["am_class"].to_list() == rows["am_class"].to_list()
    assert set(df["priority_source"]) == {"alphamissense"}
    # the calibrated map is monotone in the AlphaMissense score
    s = df.sort("am_pathogenicity")
    assert (np.diff(s["priority"].to_numpy()) >= -1e-12).all()
    assert df.filter(pl.col("region_class") == "coding").height >= 160


def test_lookup_only_run_needs_no_fasta_but_models_do(tmp_path, capsys):
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 100, ".", "A", "C")])
    assert main(["score", str(vcf), "-m", "spliceai", "--annotation", "x.gtf", "-o", str(tmp_path / "o.parquet")]) == 2
    assert "needs the reference FASTA" in capsys.readouterr().err
