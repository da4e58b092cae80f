"""Priority: the max-of-calibrated-maps rule, its monotonicity, ClinVar labels and calibration.

Real data: ClinVar's own test VCF (CLNSIG parsing), and the AlphaMissense paper's ClinVar
set S5 (82,872 labelled missense alleles with AlphaMissense scores) for calibration, plus
an end-to-end run from a labelled VCF through the AlphaMissense lookup to saved maps.
"""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vareff.combine.priority import (
    LogisticMap,
    PriorityModel,
    _auroc,
    calibrate,
    clinvar_labels,
)
from vareff.errors import InputError
from vareff.lookup.alphamissense import AlphaMissenseLookup
from vareff.lookup.am_build import build_table

S5 = "alphamissense/science.adg7492_data_s5.csv.gz"
EXCERPT = "alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
CLINVAR = "clinvar/clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"


def _s5(shared_data) -> pl.DataFrame:
    s5 = pl.read_csv(shared_data / S5)
    parts = pl.col("variant_id").str.split("_")
    return s5.with_columns(
        chrom=parts.list.get(0), pos=parts.list.get(1).cast(pl.Int64), ref=parts.list.get(2),
        alt=parts.list.get(3), label=pl.col("label").cast(pl.Int8),
        am_pathogenicity=pl.col("AlphaMissense"),
    )


def test_default_rule_max_and_source():
    df = pl.DataFrame({
        "am_pathogenicity": [0.9, 0.2, None, None, 0.5],
        "spliceai_ds_ag": [0.1, 0.7, 0.3, None, 0.5],
        "spliceai_ds_dl": [0.0, 0.1, 0.6, None, 0.2],
        "grover_llr": [-9.0, -9.0, -9.0, -9.0, -9.0],  # uncalibrated LM deltas are not used
    })
    out = PriorityModel.default().apply(df)
    pr = out["priority"].to_list()
    assert pr[3] is None
    assert [pr[i] for i in (0, 1, 2, 4)] == pytest.approx([0.9, 0.7, 0.6, 0.5])
    # tie at 0.5: AlphaMissense comes first in the tie-break order
    assert out["priority_source"].to_list() == ["alphamissense", "spliceai", "spliceai", None, "alphamissense"]


def test_no_evidence_columns_gives_nulls():
    out = PriorityModel.default().apply(pl.DataFrame({"x": [1, 2]}))
    assert out.height == 2 and out.null_count().row(0) == (2, 2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=6, max_size=6),
    st.integers(0, 5), st.floats(0, 0.5),
)
def test_priority_is_monotone_in_each_score(vals, which, bump):
    """Moving any one score in its damaging direction never lowers the priority."""
    cols = ["am_pathogenicity", "spliceai_ds_ag", "spliceai_ds_al", "spliceai_ds_dg", "spliceai_ds_dl",
            "grover_llr"]
    model = PriorityModel({
        "alphamissense": LogisticMap(a=-3.0, b=6.0), "spliceai": "identity",
        "grover": LogisticMap(a=-1.0, b=0.3),
    })
    base = {c: [v] for c, v in zip(cols, vals)}
    moved = dict(base)
    v = vals[which]
    if v is None:
        return
    # grover_llr is damaging downwards (negated), the others upwards
    moved[cols[which]] = [v - bump if cols[which] == "grover_llr" else min(v + bump, 1.0)]
    schema = {c: pl.Float64 for c in cols}
    p0 = model.apply(pl.DataFrame(base, schema=schema))["priority"][0]
    p1 = model.apply(pl.DataFrame(moved, schema=schema))["priority"][0]
    assert p1 >= p0 - 1e-15


def test_clinvar_labels_from_real_vcf(shared_data):
    lab = clinvar_labels(shared_data / CLINVAR)
    assert lab.height == 50
    counts = lab.group_by("label").len().sort("label", nulls_last=True)
    # CLNSIG per the data README: P 5 + LP 2 = 7; B 23 + LB 12 = 35; 8 others
    assert counts.rows() == [(0, 35), (1, 7), (None, 8)]
    assert set(lab.filter(pl.col("label").is_null())["clnsig"]) <= {"not_provided", "Uncertain_significance"}


def test_calibrate_on_s5(shared_data, tmp_path):
    s5 = _s5(shared_data)
    model = calibrate(s5, info={"source": "S5"})
    m = model.maps["alphamissense"]
    assert isinstance(m, LogisticMap) and m.b > 0
    assert m.n == s5.height and m.n_pathogenic == int(s5["label"].sum())
    assert model.maps["spliceai"] == "identity"  # no SpliceAI scores here: keeps its default
    out = model.apply(s5)
    p = out["priority"].to_numpy()
    y = s5["label"].to_numpy()
    # a strictly increasing map keeps the ranking: same AUROC as the raw score
    assert _auroc(p, y) == pytest.approx(_auroc(s5["am_pathogenicity"].to_numpy(), y), abs=1e-12)
    assert _auroc(p, y) > 0.9
    # maximum likelihood with an intercept: mean prediction equals the pathogenic fraction
    assert p.mean() == pytest.approx(y.mean(), abs=1e-6)
    # and it is better calibrated than the raw score on this set (Brier score)
    raw = s5["am_pathogenicity"].to_numpy()
    assert ((p - y) ** 2).mean() < ((raw - y) ** 2).mean()
    assert (out["priority_source"] == "alphamissense").all()
    # JSON round trip
    path = tmp_path / "priority.json"
    model.save(path)
    d = json.loads(path.read_text())
    assert d["format"] == "vareff-priority" and d["info"]["source"] == "S5"
    again = PriorityModel.load(path)
    assert again.apply(s5).equals(out)


def test_calibrate_refuses_too_few_labels_and_bad_files(tmp_path):
    df = pl.DataFrame({"am_pathogenicity": [0.1, 0.9, 0.8], "label": [0, 1, 1]})
    with pytest.raises(InputError, match="no evidence could be calibrated"):
        calibrate(df)
    with pytest.raises(InputError, match="no 'label' column"):
        calibrate(df.drop("label"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a vareff priority file"):
        PriorityModel.load(bad)
    with pytest.raises(InputError, match="do not exist"):
        PriorityModel.load(tmp_path / "missing.json")


def test_anti_correlated_score_gets_base_rate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = np.where(y == 1, rng.normal(0, 1, 400), rng.normal(2, 1, 400))  # pathogenic score LOWER
    model = calibrate(pl.DataFrame({"am_pathogenicity": x, "label": y}))
    m = model.maps["alphamissense"]
    assert m.b == 0.0 and 1 / (1 + np.exp(-m.a)) == pytest.approx(y.mean())


def test_end_to_end_labelled_vcf_to_priority(shared_data, tmp_path):
    """Labelled VCF (S5 rows inside the AlphaMissense excerpt) -> lookup -> calibrate -> apply."""
    ex = pl.read_csv(shared_data / EXCERPT, separator="\t", skip_rows=3).rename(
        {"#CHROM": "chrom", "POS": "pos", "REF": "ref", "ALT": "alt"})
    rows = _s5(shared_data).join(ex.select("chrom", "pos", "ref", "alt"), on=["chrom", "pos", "ref", "alt"])
    rows = rows.sort("chrom", "pos")
    vcf = tmp_path / "labelled.vcf"
    with open(vcf, "w") as f:
        f.write("##fileformat=VCFv4.2\n")
        f.write('##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance">\n')
        for c in rows["chrom"].unique().sort():
            f.write(f"##contig=<ID={c}>\n")
        f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for r in rows.iter_rows(named=True):
            sig = "Pathogenic" if r["label"] == 1 else "Likely_benign"
            f.write(f"{r['chrom']}\t{r['pos']}\t.\t{r['ref']}\t{r['alt']}\t.\t.\tCLNSIG={sig}\n")
    labels = clinvar_labels(vcf)
    assert labels.height == 169 and int(labels["label"].sum()) == 45
    table = tmp_path / "am.arrow"
    build_table(shared_data / EXCERPT, table, progress=False)
    scored = pl.concat([labels, AlphaMissenseLookup.open(table).annotate(labels)], how="horizontal")
    model = calibrate(scored, info={"labelled_vcf": vcf.name})
    model.save(tmp_path / "priority.json")
    ranked = pl.concat([scored, PriorityModel.load(tmp_path / "priority.json").apply(scored)],
                       how="horizontal").sort("priority", descending=True)
    # monotone in am_pathogenicity: sorting by priority sorts by the AlphaMissense score
    assert ranked["am_pathogenicity"].is_sorted(descending=True)
    assert _auroc(ranked["priority"].to_numpy(), ranked["label"].to_numpy()) == pytest.approx(
        _auroc(rows["AlphaMissense"].to_numpy(), rows["label"].to_numpy()), abs=1e-9)
