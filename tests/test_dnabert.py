"""DNABERT (v1): tokenizer and forward parity with transformers, scores vs an independent
recomputation (tests/dnabert_fixtures.py), and a CLI run on real BRCA1 records.  Tolerance 1e-4 (fp32)."""
from __future__ import annotations

import random

import numpy as np
import polars as pl
import pysam
import pytest
import torch

from dnabert_fixtures import Reference, kmer_text, make_checkpoint
from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf, write_vcf
from vareff import score_vcf
from vareff.cli import main
from vareff.models.load import load_model

TOL = 1e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("dnabert")
    model, tok = make_checkpoint(d, seed=4)
    return d, model, tok


def test_tokenizer_and_forward_match_transformers(ckpt):
    d, hf, tok = ckpt
    m = load_model(d, device="cpu")
    assert m.family == "dnabert" and m.tokenizer.k == 6
    rng = random.Random(1)
    seqs = ["".join(rng.choice("ACGTacgtN" if i % 3 == 0 else "ACGT") for _ in range(rng.randint(6, 90)))
            for i in range(12)]
    for s in seqs:
        assert m.tokenizer.encode_one(s).ids.tolist() == tok(kmer_text(s.upper(), 6))["input_ids"], s
    ids, mask = m.tokenize(seqs[:4])
    out = m.forward(ids, mask)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    real = mask.bool()
    assert (out.logits[real] - want.logits[real]).abs().max() < TOL
    assert (out.last_hidden_state[real] - want.hidden_states[-1][real]).abs().max() < TOL


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    d = tmp_path_factory.mktemp("dnabert_genome")
    rng = random.Random(7)
    s = "".join(rng.choice("ACGT") for _ in range(3000))
    s = s[:2000] + "N" * 5 + s[2005:]
    fa = d / "g.fa"
    fa.write_text(">chrT\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    pysam.faidx(str(fa))
    return fa, s


def test_scores_equal_an_independent_recomputation(ckpt, genome, tmp_path):
    d, hf, tok = ckpt
    fa, g = genome

    def other(c):
        return "G" if c != "G" else "T"

    recs = [("chrT", 501, ".", g[500], other(g[500])), ("chrT", 1203, ".", g[1202:1204], other(g[1202]) + other(g[1203])),
            ("chrT", 800, ".", g[799], g[799] + "TTA"), ("chrT", 1500, ".", g[1499:1503], g[1499]),
            ("chrT", 2001, ".", g[2000], other(g[2000])), ("chrT", 20, ".", g[19], other(g[19]))]
    vcf = write_vcf(tmp_path / "a.vcf", recs, contigs={"chrT": len(g)})
    out = tmp_path / "s.parquet"
    opts = {"dnabert.window": 200, "dnabert.stride": 100, "dnabert.min_flank": 30}
    score_vcf(vcf, out, fasta=fa, models=[str(d)], device="cpu", model_options=opts)
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok", "ok", "ok", "ok", "n_in_window", "ok"]
    ref = Reference(fa, "chrT", 0, hf, tok, window=200, stride=100, min_flank=30)
    for row in df.filter(pl.col("status") == "ok").iter_rows(named=True):
        for key, v in ref.score(row["norm_pos"], row["norm_ref"], row["norm_alt"]).items():
            assert row[key] == pytest.approx(v, abs=TOL), (key, row["pos"])
    assert df["dnabert_masked_tokens"][0] == 6  # an SNV masks the six 6-mers holding it
    assert np.std(df["dnabert_llr"].drop_nulls().to_numpy()) > 0.05  # varied, non-trivial scores


def test_cli_on_real_brca1_records_and_models_listing(ckpt, shared_data, tmp_path, capsys):
    d, hf, tok = ckpt
    p = brca_paths(shared_data)
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca_grch38.vcf")
    out = tmp_path / "scores.parquet"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d), "-o", str(out),
               "--skip-malformed", "--device", "cpu", "--no-progress"])
    assert rc == 0
    ok = pl.read_parquet(out).filter(pl.col("status") == "ok")
    assert ok.height == 35 and ok["dnabert_llr"].null_count() == 0
    ref = Reference(p["fasta"], BRCA_CONTIG, BRCA_OFFSET0, hf, tok)  # CLI defaults 500 / 250 / 50
    for row in ok.sample(3, seed=2).iter_rows(named=True):
        for key, v in ref.score(row["norm_pos"], row["norm_ref"], row["norm_alt"]).items():
            assert row[key] == pytest.approx(v, abs=TOL), (key, row["pos"])
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "dnabert" in capsys.readouterr().out
