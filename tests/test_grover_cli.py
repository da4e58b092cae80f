"""`vareff score -m <GROVER checkpoint dir>` on a real VCF and the real GRCh38 BRCA1 slice.

The VCF is Pangolin's BRCA1 example (real records, moved to GRCh38 as the shared-data README
documents); the checkpoint is a tiny random BertForMaskedLM saved by transformers.  A handful of
alleles are recomputed independently (transformers + pysam, tests/grover_fixtures.py) from the
CLI's own Parquet output; tolerance 1e-4 (fp32).
"""
from __future__ import annotations

import polars as pl
import pytest

from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf
from grover_fixtures import TransformersReference, make_checkpoint
from vareff.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_cli")
    hf_model, hf_tok = make_checkpoint(d, vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=40, seed=8, weight_std=0.12)
    return d, hf_model, hf_tok


def test_cli_writes_grover_scores_that_match_an_independent_recomputation(ckpt, shared_data, tmp_path):
    d, hf_model, hf_tok = ckpt
    p = brca_paths(shared_data)
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca_grch38.vcf")
    out_pq, out_vcf = tmp_path / "scores.parquet", tmp_path / "scores.vcf"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d),
               "-o", str(out_pq), "-o", str(out_vcf), "--skip-malformed", "--device", "cpu", "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out_pq)
    assert {"grover_llr", "grover_embedding_distance", "grover_embedding_l2", "grover_masked_tokens"} <= set(df.columns)
    ok = df.filter(pl.col("status") == "ok")
    assert ok.height == 35 and ok["grover_llr"].null_count() == 0  # 35 SNVs; the malformed line is kept, unscored
    assert df.filter(pl.col("status") == "malformed_record")["grover_llr"].null_count() == 1

    ref = TransformersReference(p["fasta"], BRCA_CONTIG, BRCA_OFFSET0, hf_model, hf_tok)  # CLI defaults: 1000/500
    for row in ok.sample(6, seed=1).iter_rows(named=True):
        want = ref.score(row["norm_pos"], row["norm_ref"], row["norm_alt"])
        for k, v in want.items():
            assert row[k] == pytest.approx(v, abs=1e-4), (k, row["pos"], row["alt"])

    # VCF output: Number=A INFO fields carry the same values as the Parquet rows
    text = out_vcf.read_text()
    assert '##INFO=<ID=GROVER_LLR,Number=A,Type=Float' in text
    body = [line.split("\t") for line in text.splitlines() if line.startswith("chr17\t")]
    first = ok.row(0, named=True)
    rec = next(f for f in body if int(f[1]) == first["pos"] and f[4] == first["alt"])
    info = dict(kv.split("=", 1) for kv in rec[7].split(";") if "=" in kv)
    assert float(info["GROVER_LLR"]) == pytest.approx(first["grover_llr"], abs=1e-4)
