"""GROVER precision policies and the wild-type-marginal LLR (docs/grover.md).

* ``mixed`` (bfloat16 matmuls with split hi+lo weights, float32 LayerNorm/residual/head) stays
  within |dLLR| <= 0.05 of float32 on a random model; ``float32`` is bit-identical to the default
  on a model below the ``mixed`` size threshold.
* ``llr=wt-marginal`` equals an independent recomputation with ``transformers.BertForMaskedLM``
  (log-ratio of base marginals at the covering tokens of the unmasked reference window).
* precision and LLR definition are part of the provenance and so of the store key.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf
from grover_fixtures import TransformersReference, make_checkpoint
from test_grover_scores import BRCA1_FA, CONTIG, OFFSET0, STRIDE, WINDOW, _batch
from vareff.score.grover import make_scorer
from vareff.store.key import config_descriptor, digest
from vareff.window.genome import ContigSlice, Genome


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_precision")
    hf_model, hf_tok = make_checkpoint(d, vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                       intermediate_size=128, seed=11, weight_std=0.1)
    return d, hf_model, hf_tok


@pytest.fixture(scope="module")
def genome(shared_data):
    return Genome(shared_data / BRCA1_FA, [ContigSlice("chr17", CONTIG, OFFSET0)])


def _rows(genome, n=12):
    p = 43_094_500
    rows = []
    for q in range(p, p + 37 * n, 37):
        r = genome.fetch("chr17", q - 1, q)
        rows.append(("chr17", q, r, "A" if r != "A" else "G"))
    rows += [("chr17", p + 5, genome.fetch("chr17", p + 4, p + 7), ""), ("chr17", p + 90, "", "TTAG")]  # indels
    return rows


OPTS = {"window": WINDOW, "stride": STRIDE}


def _cols(res, *names):
    return [np.array(res.columns[c].to_pylist(), dtype=float) for c in names]


def test_mixed_within_tolerance_of_float32_and_default_is_exact(ckpt, genome):
    d, _, _ = ckpt
    rows = _rows(genome)
    f32 = make_scorer(d, device="cpu", dtype="float32", options=OPTS)
    default = make_scorer(d, device="cpu", options=OPTS)
    mixed = make_scorer(d, device="cpu", dtype="mixed", options=OPTS)
    assert f32.precision == "fp32" and mixed.precision == "mixed"
    assert default.precision == "fp32"  # the CPU default is float32 (docs/grover.md 6.5)
    a, b, c = (sc.score(_batch(rows), genome) for sc in (f32, default, mixed))
    for col in ("grover_llr", "grover_embedding_distance", "grover_embedding_l2"):
        assert a.columns[col].to_pylist() == b.columns[col].to_pylist()  # bit-identical
    (la, ea), (lc, ec) = _cols(a, "grover_llr", "grover_embedding_distance"), _cols(c, "grover_llr", "grover_embedding_distance")
    assert np.std(la) > 0.1 and not np.isnan(lc).any()
    assert np.abs(la - lc).max() <= 0.05
    assert np.median(np.abs(ea - ec) / ea) < 0.05 and (np.abs(ea - ec) / ea).max() < 0.3
    # the policy really runs bfloat16 matmuls: split weights whose parts sum to the float32 weight
    layer = mixed.model.module.layers[0]
    for lin, parts in ((layer.fc1, 3), (layer.fc2, 2)):  # FFN-in also splits its float32 input
        w2, k = lin.__dict__["weight_split"], lin.weight.shape[1]
        assert w2.dtype == torch.bfloat16 and w2.shape == (lin.weight.shape[0], parts * k)
        total = w2[:, (parts - 2) * k:(parts - 1) * k].float() + w2[:, (parts - 1) * k:].float()
        assert (total - lin.weight).abs().max() < 1e-5 * lin.weight.abs().max()


def test_wt_marginal_matches_transformers(ckpt, genome, shared_data):
    d, hf_model, hf_tok = ckpt
    rows = _rows(genome, 8)
    sc = make_scorer(d, device="cpu", dtype="float32", options={**OPTS, "llr": "wt-marginal"})
    res = sc.score(_batch(rows), genome)
    assert res.status == [None] * len(rows)
    ref = TransformersReference(shared_data / BRCA1_FA, CONTIG, OFFSET0, hf_model, hf_tok, window=WINDOW, stride=STRIDE)
    got = {k: v.to_pylist() for k, v in res.columns.items()}
    for i, (_, p1, r, a) in enumerate(rows):
        want = ref.score(p1, r, a, wt_marginal=True)
        for k, v in want.items():
            assert got[k][i] == pytest.approx(v, abs=1e-4), (k, rows[i], got[k][i], v)
    assert got["grover_masked_tokens"][0] == 0  # substitution: no masked pass
    assert got["grover_masked_tokens"][-1] > 0  # indels keep the masked definition
    # one shared unmasked reference pass + one alt pass per SNV; the masked scorer adds one masked pass per SNV
    masked = make_scorer(d, device="cpu", dtype="float32", options=OPTS)
    snvs = rows[:8]
    masked.score(_batch(snvs), genome)
    sc.stats["passes"] = 0
    sc.score(_batch(snvs), genome)
    assert sc.stats["passes"] == masked.stats["passes"] - len(snvs)


def test_precision_and_definition_are_in_the_store_key(ckpt):
    d, _, _ = ckpt
    keys = {digest(config_descriptor(make_scorer(d, device="cpu", dtype=dt, options=o)))
            for dt, o in (("float32", None), ("mixed", None), ("float32", {"llr": "wt-marginal"}),
                          ("mixed", {"llr": "wt-marginal"}), (torch.bfloat16, None))}
    assert len(keys) == 5
    prov = make_scorer(d, device="cpu").provenance()["grover.settings"]
    assert "precision=fp32" in prov and "llr=" not in prov  # default runs keep their old key
    from vareff.errors import ConfigError

    with pytest.raises(ConfigError, match="llr"):
        make_scorer(d, device="cpu", options={"llr": "unmasked"})


def test_cli_accepts_mixed_and_wt_marginal(ckpt, shared_data, tmp_path):
    from vareff.cli import main

    d, hf_model, hf_tok = ckpt
    p = brca_paths(shared_data)
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca_grch38.vcf")
    out = tmp_path / "s.parquet"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d), "-o", str(out),
               "--skip-malformed", "--device", "cpu", "--no-progress", "--dtype", "mixed", "--grover-llr", "wt-marginal"])
    assert rc == 0
    ok = pl.read_parquet(out).filter(pl.col("status") == "ok")
    assert ok.height == 35 and ok["grover_llr"].null_count() == 0 and (ok["grover_masked_tokens"] == 0).all()
    ref = TransformersReference(p["fasta"], BRCA_CONTIG, BRCA_OFFSET0, hf_model, hf_tok)
    row = ok.row(0, named=True)
    want = ref.score(row["norm_pos"], row["norm_ref"], row["norm_alt"], wt_marginal=True)
    assert row["grover_llr"] == pytest.approx(want["grover_llr"], abs=0.05)
    assert main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d), "-o",
                 str(tmp_path / "x.parquet"), "--device", "cpu", "--no-progress", "--grover-llr", "bogus"]) == 2
