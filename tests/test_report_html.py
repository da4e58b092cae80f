"""`vareff report` / `evaluate` / `score --report` on real lookup-only runs (S5 rows of the AlphaMissense
excerpt), and the bad inputs: no priority, no labels, no ok allele, 10^6 rows."""
from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

from vareff.cli import main
from vareff.report.html import MAX_BYTES

from report_helpers import GFF, EXCERPT, excerpt_s5_rows, labelled_vcf

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def lookup_run(shared_data, tmp_path_factory):
    """A lookup-only run of the 169 labelled S5 alleles of the excerpt, with its report."""
    d = tmp_path_factory.mktemp("report")
    table = d / "am.arrow"
    assert main(["am-build", str(shared_data / EXCERPT), "-o", str(table), "--no-progress"]) == 0
    rows = excerpt_s5_rows(shared_data)
    vcf = labelled_vcf(rows, d / "s5.vcf")
    out, html = d / "s5.parquet", d / "s5.html"
    assert main(["score", str(vcf), "--alphamissense", str(table), "--annotation", str(shared_data / GFF),
                 "-o", str(out), "--report", str(html), "--no-progress"]) == 0
    return {"dir": d, "rows": rows, "vcf": vcf, "parquet": out, "html": html, "table": table}


def _tables(html: str) -> set[str]:
    return set(re.findall(r'<table[^>]*id="([^"]+)"', html))


def test_score_report_without_labels(lookup_run):
    html = lookup_run["html"].read_text()
    assert {"run-table", "status-table", "top-table", "gene-table"} <= _tables(html)
    assert "No evaluation: no labels were given" in html
    assert html.count('class="plot hist"') == 2  # am_pathogenicity, priority
    assert "src=\"http" not in html and "<link" not in html  # nothing fetched
    numbers = json.loads(lookup_run["html"].with_suffix(".json").read_text())
    assert numbers["status_counts"] == {"ok": 169} and numbers["labels"] is None and numbers["metrics"] == []
    assert numbers["command"].startswith("vareff score")


def test_report_reproduces_s5_auroc_from_own_lookups(lookup_run):
    html = lookup_run["dir"] / "eval.html"
    assert main(["report", str(lookup_run["parquet"]), "--labels-vcf", str(lookup_run["vcf"]), "-o", str(html),
                 "--bootstrap", "200"]) == 0
    numbers = json.loads(html.with_suffix(".json").read_text())
    m = {x["score"]: x for x in numbers["metrics"]}
    rows = lookup_run["rows"]
    y, s5 = rows["label"].to_numpy(), rows["AlphaMissense"].to_numpy()
    assert m["am_pathogenicity"]["n_covered"] == 169
    assert (m["am_pathogenicity"]["n_pathogenic"], m["am_pathogenicity"]["n_benign"]) == (45, 124)
    # the paper's score (S5 column) on the same rows, by scikit-learn; JSON keeps 6 decimals
    assert m["am_pathogenicity"]["auroc"] == pytest.approx(sk.roc_auc_score(y, s5), abs=1e-6)
    lo, hi = m["am_pathogenicity"]["auroc_ci"]
    assert lo < m["am_pathogenicity"]["auroc"] < hi
    df = pl.read_parquet(lookup_run["parquet"]).join(
        rows.select("chrom", "pos", "ref", "alt", "label"), on=["chrom", "pos", "ref", "alt"])
    assert m["priority"]["auprc"] == pytest.approx(
        sk.average_precision_score(df["label"], df["priority"]), abs=1e-6)
    text = html.read_text()
    assert "metrics-table" in _tables(text) and text.count('class="plot curve"') == 2


def test_labels_column_and_evaluate_on_parquet(lookup_run, tmp_path):
    df = pl.read_parquet(lookup_run["parquet"]).join(
        lookup_run["rows"].select("chrom", "pos", "ref", "alt",
                                  clin=pl.when(pl.col("label") == 1).then(pl.lit("Likely_pathogenic"))
                                  .otherwise(pl.lit("Benign"))), on=["chrom", "pos", "ref", "alt"])
    p = tmp_path / "labelled.parquet"
    df.write_parquet(p)
    assert main(["evaluate", str(p), "--labels", "clin", "-o", str(tmp_path / "e.html"), "--bootstrap", "50"]) == 0
    numbers = json.loads((tmp_path / "e.json").read_text())
    assert numbers["labels"]["n_pathogenic"] == 45 and len(numbers["metrics"]) == 2


def test_evaluate_vcf_scores_and_reports(lookup_run, shared_data, tmp_path):
    out = tmp_path / "ev.html"
    assert main(["evaluate", str(lookup_run["vcf"]), "--alphamissense", str(lookup_run["table"]),
                 "-o", str(out), "--bootstrap", "50", "--no-progress"]) == 0
    m = {x["score"]: x for x in json.loads((tmp_path / "ev.json").read_text())["metrics"]}
    rows = lookup_run["rows"]
    assert m["am_pathogenicity"]["auroc"] == pytest.approx(
        sk.roc_auc_score(rows["label"], rows["AlphaMissense"]), abs=1e-6)


def test_evaluate_needs_labels(lookup_run, shared_data, tmp_path, capsys):
    vcf = shared_data / "golden" / "spliceai" / "input.vcf"
    assert main(["evaluate", str(vcf), "--alphamissense", str(lookup_run["table"]), "-o",
                 str(tmp_path / "x.html")]) == 2
    assert "no INFO/CLNSIG" in capsys.readouterr().err
    assert main(["evaluate", str(lookup_run["parquet"]), "-o", str(tmp_path / "x.html")]) == 2
    assert "without labels" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_report_of_missing_result_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "r.html")]) == 2
    assert "vareff: error: result" in capsys.readouterr().err


def test_without_priority_and_without_ok_alleles(lookup_run, tmp_path):
    df = pl.read_parquet(lookup_run["parquet"])
    p = tmp_path / "nopri.parquet"
    df.drop("priority", "priority_source").write_parquet(p)
    assert main(["report", str(p), "-o", str(tmp_path / "a.html")]) == 0
    a = (tmp_path / "a.html").read_text()
    assert "has no <code>priority</code> column" in a and "ranked by <code>am_pathogenicity</code>" in a
    scores = [c for c, t in df.schema.items() if t in (pl.Float32, pl.Float64)]
    bad = df.with_columns(pl.lit("ref_mismatch").alias("status"),
                          *[pl.lit(None, dtype=df.schema[c]).alias(c) for c in scores])
    q = tmp_path / "none_ok.parquet"
    bad.write_parquet(q)
    assert main(["report", str(q), "--labels-vcf", str(lookup_run["vcf"]), "-o", str(tmp_path / "b.html")]) == 0
    b = (tmp_path / "b.html").read_text()
    assert "No allele was scored" in b and "REF differs from the FASTA" in b and "No score column has a value" in b


def test_a_million_rows_stay_small(tmp_path):
    n = 1_000_000
    rng = np.random.default_rng(0)
    genes = np.array([f"G{i}" for i in range(5000)])
    df = pl.DataFrame({
        "chrom": ["chr1"] * n, "pos": np.arange(1, n + 1), "ref": ["A"] * n, "alt": ["C"] * n,
        "status": np.where(rng.random(n) < 0.01, "outside_gene", "ok"),
        "gene": genes[rng.integers(0, genes.size, n)],
        "spliceai_ds_max": rng.beta(0.3, 8, n).astype(np.float32),
        "priority": rng.random(n), "priority_source": ["spliceai"] * n,
        "label": np.where(rng.random(n) < 0.01, rng.integers(0, 2, n), -1),  # 1% labelled, as ClinVar is sparse
    }).with_columns(pl.when(pl.col("label") >= 0).then(pl.col("label")).alias("label"))
    p = tmp_path / "big.parquet"
    df.write_parquet(p)
    out = tmp_path / "big.html"
    assert main(["report", str(p), "--labels", "label", "--top", "5000", "-o", str(out), "--bootstrap", "20"]) == 0
    text = out.read_text()
    assert out.stat().st_size < MAX_BYTES
    assert "capped at 1000" in text and "200 of 5000 shown (capped)" in text
    assert "log count scale" in text  # the skewed SpliceAI scores
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert 9000 < numbers["labels"]["n_labelled"] < 11000 and sum(numbers["status_counts"].values()) == n
