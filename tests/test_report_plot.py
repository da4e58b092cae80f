"""`vareff plot`: SpliceAI's raw ref/alt probabilities (real weights, the published TUBB8 values),
SegmentNT tracks from a random-weight checkpoint's profiles, the gene model, and the errors."""
from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

import nt_fixtures as nf
from engine_helpers import tubb8_paths, write_vcf
from vareff import score_vcf
from vareff.cli import main
from vareff.errors import ConfigError, InputError
from vareff.report.variants import Variant, plot_variants, spliceai_views, variant_figure

# SpliceAI's own unit test (shared/data/golden/spliceai): 10:94077 A>C, grch37, D = 500
GOLDEN = "C|TUBB8|0.15|0.27|0.00|0.05|89|-23|-267|193"


@pytest.fixture(scope="module")
def tubb8(shared_data):
    p = tubb8_paths(shared_data)
    views = spliceai_views([Variant("10", 94077, "A", "C")], fasta=p["fasta_noprefix"], distance=500,
                           annotation=p["annotation"])
    return p, views[0]


def test_raw_probabilities_give_the_published_scores(tubb8):
    _, raw = tubb8
    assert len(raw) == 1 and raw[0].gene == "TUBB8" and raw[0].y_ref.shape == (3, 1001)
    r = raw[0]
    d_acc, d_don = r.y_alt[1] - r.y_ref[1], r.y_alt[2] - r.y_ref[2]
    ds = [d_acc.max(), -d_acc.min(), d_don.max(), -d_don.min()]
    dp = [int(np.argmax(d_acc)) - 500, int(np.argmin(d_acc)) - 500, int(np.argmax(d_don)) - 500,
          int(np.argmin(d_don)) - 500]
    want = GOLDEN.split("|")
    assert [f"{x:.2f}" for x in ds] == want[2:6] and dp == [int(x) for x in want[6:]]
    assert [f"{x:.2f}" for x in r.ds] == want[2:6] and list(r.dp) == dp
    assert np.allclose(r.y_ref.sum(0), 1, atol=1e-4)  # softmax over (neither, acceptor, donor)


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_spliceai_figure_with_gene_model(tubb8, tmp_path, ext):
    p, raw = tubb8
    from vareff.report.variants import gene_model

    v = Variant("10", 94077, "A", "C")
    exons = gene_model(p["annotation"], "10", v.pos - 500, v.pos + 500)
    assert exons.height > 0 and set(exons["gene"]) == {"TUBB8"}
    out = tmp_path / f"v.{ext}"
    from vareff.report.plots import save

    save(variant_figure(v, spliceai=raw, exons=exons), out)
    head = out.read_bytes()[:8]
    assert head.startswith({"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[ext])
    if ext == "svg":
        text = out.read_text()
        assert "DS_AG 0.15" in text and "DP +89" in text and "TUBB8" in text


def test_segmentnt_tracks_from_random_weight_profiles(tmp_path):
    rng = random.Random(7)
    seq = nf.random_dna(3000, rng)
    fa = tmp_path / "g.fa"
    fa.write_text(">chrT\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    ck = tmp_path / "seg"
    nf.make_segment_nt(ck, seed=31, hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)
    alt = "G" if seq[1499] != "G" else "A"
    vcf = write_vcf(tmp_path / "a.vcf", [("chrT", 1500, "v", seq[1499], alt)])
    prof = tmp_path / "prof.parquet"
    score_vcf(vcf, tmp_path / "s.parquet", fasta=fa, models=[str(ck)], device="cpu",
              model_options={"segmentnt.window": 480, "segmentnt.stride": 192, "segmentnt.min_flank": 48,
                             "segmentnt.k": 20, "segmentnt.profiles": str(prof), "segmentnt.profile_flank": 60})
    out = tmp_path / "seg.svg"
    assert main(["plot", "--variant", f"chrT:1500:{seq[1499]}:{alt}", "--profiles", str(prof), "-o", str(out)]) == 0
    text = out.read_text()
    elems = [c[4:] for c in pl.read_parquet(prof).columns if c.startswith("ref_")]
    assert len(elems) == 14 and all(f"{e}" in text for e in elems)
    assert "SegmentNT element probabilities" in text
    # not profiled -> clear error
    assert main(["plot", "--variant", "chrT:10:A:C", "--profiles", str(prof), "-o", str(out)]) == 2


def test_plot_errors(tubb8, tmp_path, capsys):
    p, _ = tubb8
    with pytest.raises(ConfigError):
        Variant.parse("10-94077-A-C")
    assert main(["plot", "--variant", "10:94077:A", "-o", str(tmp_path / "x.png")]) == 2
    assert "is not CHROM:POS:REF:ALT" in capsys.readouterr().err
    res = tmp_path / "r.parquet"
    pl.DataFrame({"chrom": ["10"], "pos": [94077], "ref": ["A"], "alt": ["C"], "priority": [0.3]}).write_parquet(res)
    assert main(["plot", "--variant", "10:94555:C:T", "--result", str(res), "-o", str(tmp_path / "x.png")]) == 2
    assert "is not in the result" in capsys.readouterr().err
    with pytest.raises(InputError, match="status ref_mismatch"):  # REF G is wrong here
        spliceai_views([Variant("10", 94077, "G", "C")], fasta=p["fasta_noprefix"], distance=10,
                       annotation=p["annotation"])
    with pytest.raises(ConfigError, match="plot format"):
        plot_variants([Variant("10", 94077, "A", "C")], str(tmp_path / "x.jpg"))
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.slow  # loads SpliceAI once more
def test_report_embeds_the_top_alleles_plots(shared_data, tmp_path):
    p = tubb8_paths(shared_data)
    res = tmp_path / "r.parquet"
    pl.DataFrame({"chrom": ["10", "10"], "pos": [94077, 94555], "ref": ["A", "C"], "alt": ["C", "T"],
                  "status": ["ok", "ok"], "spliceai_ds_max": [0.27, 0.62]}).write_parquet(res)
    out = tmp_path / "r.html"
    assert main(["report", str(res), "--plot-top", "1", "-f", p["fasta_noprefix"], "--spliceai-annotation",
                 p["annotation"], "--spliceai-distance", "100", "--annotation", p["annotation"], "-o", str(out)]) == 0
    html = out.read_text()
    assert html.count('class="plot variant"') == 1 and "10:94555:C:T: SpliceAI ref vs alt (TUBB8)" in html
    assert "has no <code>priority</code> column" in html and "by <code>spliceai_ds_max</code>" in html


def test_grover_llr_scan_of_a_random_weight_model(shared_data, tmp_path):
    from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths
    from grover_fixtures import TransformersReference, make_checkpoint

    from vareff.report.variants import lm_scan

    d = tmp_path / "grover"
    hf_model, hf_tok = make_checkpoint(d, vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=40, seed=8, weight_std=0.12)
    p = brca_paths(shared_data)
    v = Variant("chr17", 43124118, "T", "G")
    scan = lm_scan(v, str(d), fasta=p["fasta"], contig_map=[p["contig_map"]], flank=4)
    assert scan.column == "grover_llr" and scan.llr.shape == (9, 4) and scan.ref_bases[4] == "T"
    assert np.isnan(scan.llr[np.arange(9), ["ACGT".index(b) for b in scan.ref_bases]]).all()
    assert np.isfinite(scan.llr).sum() == 27
    ref = TransformersReference(p["fasta"], BRCA_CONTIG, BRCA_OFFSET0, hf_model, hf_tok)
    assert scan.own == pytest.approx(ref.score(v.pos, "T", "G")["grover_llr"], abs=1e-4)
    for i, a in ((0, "C"), (8, "A")):
        b = scan.ref_bases[i]
        if a == b:
            continue
        assert scan.llr[i, "ACGT".index(a)] == pytest.approx(ref.score(v.pos - 4 + i, b, a)["grover_llr"], abs=1e-4)
    out = tmp_path / "g.svg"
    assert main(["plot", "--variant", str(v), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d),
                 "--flank", "4", "-o", str(out)]) == 0
    assert "GROVER: LLR of every substitution" in out.read_text()
