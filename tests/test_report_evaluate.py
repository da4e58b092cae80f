"""`vareff evaluate` on the kit's labelled sets: the AlphaMissense paper's ClinVar rows (S5) around
BRCA1 and SLC5A1 scored through vareff's own AlphaMissense lookup reproduce the paper's AUROC;
SpliceAI and priority are evaluated on a subset of the same rows (the full run is in docs/evaluation.md)."""
from __future__ import annotations

import json

import polars as pl
import pytest

from vareff.cli import main

from engine_helpers import brca_paths
from report_helpers import brca_s5_rows, labelled_vcf, s5_as_am_table

sk = pytest.importorskip("sklearn.metrics")
SLC_S5 = "grch38/slc5a1_region/alphamissense_s5.chr22_32000001-32300000.csv"


@pytest.fixture(scope="module")
def kit(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("kit")
    slc = pl.read_csv(shared_data / SLC_S5, infer_schema_length=0).with_columns(pl.col("AlphaMissense").cast(pl.Float64))
    from report_helpers import _split_s5

    rows = pl.concat([brca_s5_rows(shared_data), _split_s5(slc)])
    table = d / "am.arrow"
    assert main(["am-build", str(s5_as_am_table(rows, d / "am_s5.tsv.gz")), "-o", str(table), "--no-progress"]) == 0
    return d, rows, table


def test_alphamissense_auroc_of_the_paper_on_brca1_and_slc5a1_rows(kit):
    d, rows, table = kit
    assert rows.height == 505 and int(rows["label"].sum()) == 229  # 224 + 5 pathogenic
    vcf = labelled_vcf(rows, d / "s5.vcf")
    out = d / "am.html"
    assert main(["evaluate", str(vcf), "--alphamissense", str(table), "-o", str(out), "--bootstrap", "200",
                 "--no-progress"]) == 0
    m = {x["score"]: x for x in json.loads((d / "am.json").read_text())["metrics"]}
    paper = sk.roc_auc_score(rows["label"], rows["AlphaMissense"])
    assert m["am_pathogenicity"]["n_covered"] == 505
    assert m["am_pathogenicity"]["auroc"] == pytest.approx(paper, abs=1e-6)
    assert m["am_pathogenicity"]["auprc"] == pytest.approx(
        sk.average_precision_score(rows["label"], rows["AlphaMissense"]), abs=1e-6)
    assert m["priority"]["auroc"] == pytest.approx(paper, abs=1e-6)  # AlphaMissense alone: priority = its score


@pytest.mark.slow  # SpliceAI on 6 alleles: ~30 s of CPU
def test_spliceai_and_priority_on_a_brca1_subset(kit, shared_data):
    d, rows, table = kit
    p = brca_paths(shared_data)
    sub = pl.concat([rows.filter(pl.col("chrom") == "chr17", pl.col("label") == lab).head(3) for lab in (1.0, 0.0)])
    vcf = labelled_vcf(sub, d / "sub.vcf")
    scored = d / "sub.parquet"
    assert main(["evaluate", str(vcf), "-f", p["fasta"], "--contig-map", "chr17=" + p["contig_map"].split("=", 1)[1],
                 "-m", "spliceai", "--spliceai-annotation", p["annotation"], "--spliceai-distance", "10",
                 "--alphamissense", str(table), "--scored", str(scored), "-o", str(d / "sub.html"),
                 "--bootstrap", "50", "--no-progress"]) == 0
    df = pl.read_parquet(scored).join(sub.select("chrom", "pos", "ref", "alt", "label"), on=["chrom", "pos", "ref", "alt"])
    assert df.height == 6 and set(df["status"]) == {"ok"}
    m = {x["score"]: x for x in json.loads((d / "sub.json").read_text())["metrics"]}
    assert {"spliceai_ds_max", "am_pathogenicity", "priority"} <= set(m)
    for col in ("spliceai_ds_max", "priority"):
        assert m[col]["n_covered"] == 6
        assert m[col]["auroc"] == pytest.approx(sk.roc_auc_score(df["label"], df[col]), abs=1e-6)
