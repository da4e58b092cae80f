"""GroverScorer.score on the real GRCh38 BRCA1 slice, recomputed independently with transformers.

The reference side uses ``transformers.BertForMaskedLM`` + its fast tokenizer (offsets from
``return_offsets_mapping``), pysam for the sequence, and plain Python loops over the vocabulary for
the base marginals, i.e. none of vareff's model, tokenizer or scoring code.  Tolerance 1e-4 (fp32).
"""
from __future__ import annotations

import csv

import numpy as np
import pysam
import pytest
import torch
from grover_fixtures import TransformersReference, make_checkpoint
from vareff.score.base import AlleleBatch
from vareff.score.grover import GroverOptions, make_scorer, window_for
from vareff.window.genome import ContigSlice, Genome

BRCA1_FA = "grch38/brca1_region/chr17_42425000_43600000.fwd.fa"
CONTIG = "chr17_42425000_43600000"
OFFSET0 = 42_424_999  # genomic 0-based = slice 0-based + OFFSET0
WINDOW, STRIDE = 600, 300


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_scores")
    hf_model, hf_tok = make_checkpoint(d, vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=48, seed=4, weight_std=0.12)
    return d, hf_model, hf_tok


@pytest.fixture(scope="module")
def genome(shared_data):
    return Genome(shared_data / BRCA1_FA, [ContigSlice("chr17", CONTIG, OFFSET0)])


def _batch(rows, status=None):
    """rows: (chrom, pos1, ref, alt), already trimmed (norm = vcf form)."""
    n = len(rows)
    return AlleleBatch(
        chrom=[r[0] for r in rows], pos1=np.array([r[1] for r in rows], dtype=np.int64),
        ref=[r[2] for r in rows], alt=[r[3] for r in rows],
        norm_pos1=np.array([r[1] for r in rows], dtype=np.int64), norm_ref=[r[2] for r in rows],
        norm_alt=[r[3] for r in rows], variant_type=["x"] * n, status=status or ["ok"] * n,
    )


def _s5_snvs(shared_data, n):
    rows = []
    with open(shared_data / "grch38/brca1_region/alphamissense_s5.chr17_42425000-43600000.csv") as fh:
        for r in csv.DictReader(fh):
            chrom, pos, ref, alt, _ = r["variant_id"].split("_")
            rows.append((chrom, int(pos), ref, alt))
    return rows[:: max(1, len(rows) // n)][:n]


def test_scores_match_independent_transformers_recomputation(ckpt, genome, shared_data):
    d, hf_model, hf_tok = ckpt
    scorer = make_scorer(d, device="cpu", batch_size=5, options={"window": WINDOW, "stride": STRIDE})
    fa = pysam.FastaFile(str(shared_data / BRCA1_FA))
    base = lambda p1, n=1: fa.fetch(CONTIG, p1 - 1 - OFFSET0, p1 - 1 - OFFSET0 + n).upper()
    rows = _s5_snvs(shared_data, 6)  # real ClinVar missense SNVs (AlphaMissense S5)
    p = 43_094_500  # BRCA1 exon region: a site with all three alts, an MNV, an insertion, deletions
    r = base(p)
    rows += [("chr17", p, r, a) for a in "ACGT" if a != r]
    rows += [("chr17", p + 7, base(p + 7, 3), "".join({"A": "C", "C": "G", "G": "T", "T": "A"}[c] for c in base(p + 7, 3)))]
    rows += [("chr17", p + 20, "", "GATTACA"), ("chr17", p + 40, base(p + 40, 5), ""), ("chr17", p + 60, base(p + 60, 1), "")]
    rows += [("chr17", p + 80, base(p + 80, 2), "T")]  # complex: 2 bp -> 1 bp
    res = scorer.score(_batch(rows), genome)
    assert res.status == [None] * len(rows)
    ref = TransformersReference(shared_data / BRCA1_FA, CONTIG, OFFSET0, hf_model, hf_tok, window=WINDOW, stride=STRIDE)
    got = {k: v.to_pylist() for k, v in res.columns.items()}
    llrs = []
    for i, (_, p1, rr, aa) in enumerate(rows):
        want = ref.score(p1, rr, aa)
        for k, v in want.items():
            assert got[k][i] == pytest.approx(v, abs=1e-4), (k, rows[i], got[k][i], v)
        llrs.append(want["grover_llr"])
    assert np.std(llrs) > 0.1  # the random model gives non-trivial, varied scores


def test_one_masked_pass_per_site_for_all_alts_and_shared_ref(ckpt, genome):
    d, _, _ = ckpt
    scorer = make_scorer(d, device="cpu", options={"window": WINDOW, "stride": STRIDE})
    p = 43_100_010
    r = genome.fetch("chr17", p - 1, p)
    rows = [("chr17", p, r, a) for a in "ACGT" if a != r]
    res = scorer.score(_batch(rows), genome)
    assert all(v is not None for v in res.columns["grover_llr"].to_pylist())
    # 1 shared ref window + 1 masked pass for the site + 3 alt windows
    assert scorer.stats["passes"] == 5
    # a second site in the same grid window adds its masked pass and alt window only
    scorer.stats["passes"] = 0
    q = p + 40
    rq = genome.fetch("chr17", q - 1, q)
    scorer.score(_batch(rows + [("chr17", q, rq, "A" if rq != "A" else "C")]), genome)
    assert window_for(p - 1, 1, scorer.opts) == window_for(q - 1, 1, scorer.opts)
    assert scorer.stats["passes"] == 7


def test_window_grid_keeps_flanks_and_is_deterministic():
    o = GroverOptions(window=1000, stride=500, min_flank=100)
    for pos0 in range(10_000, 12_000, 37):
        for n in (1, 5, 200):
            s, e = window_for(pos0, n, o)
            assert e - s == 1000 and s % 500 == 0  # on the grid: shared by every allele of the cell
            assert pos0 - s >= 150 and e - (pos0 + n) >= 150  # (window - stride)/2 - max_allele/2
    centred = GroverOptions(window=1000, stride=1)
    assert window_for(5000, 1, centred) == (4501, 5501)  # allele centre 5000.5 -> 499 | 500 flanks
    assert window_for(5000, 2, centred) == (4501, 5501)
    narrow = GroverOptions(window=300, stride=250, min_flank=100)  # grid flank would be < 100: centre instead
    s, e = window_for(1000, 1, narrow)
    assert min(1000 - s, e - 1001) >= 149


def test_statuses(ckpt, genome, tmp_path):
    d, _, _ = ckpt
    scorer = make_scorer(d, device="cpu", options={"grover.window": WINDOW, "grover.stride": STRIDE, "max_allele": 10})
    p = 43_100_500
    r = genome.fetch("chr17", p - 1, p)
    rows = [("chr17", p, r, "A" if r != "A" else "G"),  # ok
            ("chr17", p, "A" if r != "A" else "G", r),  # REF does not match the FASTA
            ("chr17", p, genome.fetch("chr17", p - 1, p + 11), ""),  # 12 bp > max_allele
            ("chr17", p, r, "<DEL>"),  # already skipped upstream: left alone
            ("chrZ", 100, "A", "C")]
    res = scorer.score(_batch(rows, ["ok", "ok", "ok", "symbolic_allele", "ok"]), genome)
    assert res.status == [None, "ref_mismatch", "allele_too_long", None, "contig_not_in_fasta"]
    llr = res.columns["grover_llr"].to_pylist()
    assert llr[0] is not None and llr[1:] == [None] * 4
    assert res.info["GROVER_LLR"][0] == f"{llr[0]:.4f}" and res.info["GROVER_LLR"][1] is None

    # GROVER's vocabulary has no N: an N inside the window -> n_in_window (not scored on [UNK]s)
    fa = tmp_path / "n.fa"
    seq = genome.fetch("chr17", p - 1000, p + 1000)
    seq = seq[:1150] + "N" * 5 + seq[1155:]
    fa.write_text(">x\n" + seq + "\n")
    pysam.faidx(str(fa))
    g2 = Genome(fa)
    res = scorer.score(_batch([("x", 1001, seq[1000], "A" if seq[1000] != "A" else "C"),
                               ("x", 101, seq[100], "A" if seq[100] != "A" else "C")]), g2)
    assert res.status == ["n_in_window", None]  # the second allele's window ends before the N run


def test_schema_info_and_provenance(ckpt):
    d, _, _ = ckpt
    scorer = make_scorer(d, device="cpu")
    assert scorer.schema().names == ["grover_llr", "grover_embedding_distance", "grover_embedding_l2", "grover_masked_tokens"]
    assert [f.id for f in scorer.info_fields()] == ["GROVER_LLR", "GROVER_EMB"]
    prov = scorer.provenance()
    assert prov["grover.weights"].startswith("sha256:") and "window=1000 " in prov["grover.settings"]
    from vareff.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown GROVER option"):
        make_scorer(d, options={"grover.windw": 5})


@pytest.mark.parametrize("precision, llr_tol, emb_rtol", [("bf16-delta", 1e-3, 5e-3), ("bf16", 0.05, 0.3)])
def test_bfloat16_precisions_against_float32(ckpt, genome, precision, llr_tol, emb_rtol):
    """bf16-delta stays float32-class (measured here: |dLLR| ~1e-6, emb ~0.07%); plain bf16 only roughly (~3e-3, ~6%)."""
    d, _, _ = ckpt
    p = 43_094_500
    rows = [("chr17", q, genome.fetch("chr17", q - 1, q), "A" if genome.fetch("chr17", q - 1, q) != "A" else "G")
            for q in range(p, p + 400, 37)]
    rows += [("chr17", p + 5, genome.fetch("chr17", p + 4, p + 7), "")]  # a deletion (token count changes)
    opts = {"window": WINDOW, "stride": STRIDE, "precision": precision}
    f32 = make_scorer(d, device="cpu", options=opts).score(_batch(rows), genome)
    sc = make_scorer(d, device="cpu", dtype=torch.bfloat16, options=opts)
    assert sc.precision == precision
    low = sc.score(_batch(rows), genome)
    a, b = (np.array(r.columns["grover_llr"].to_pylist()) for r in (f32, low))
    assert np.abs(a - b).max() < llr_tol
    a, b = (np.array(r.columns["grover_embedding_distance"].to_pylist()) for r in (f32, low))
    assert (np.abs(a - b) / a).max() < emb_rtol


def test_substitution_no_token_can_spell_falls_back_to_token_level(ckpt, genome, shared_data):
    """An SNV deep inside a long token, where no vocabulary token has the alt base at that offset,
    gets the token-level LLR (as an indel would), not a null; checked against the reference."""
    d, hf_model, hf_tok = ckpt
    scorer = make_scorer(d, device="cpu", options={"window": WINDOW, "stride": STRIDE})
    found = None
    for start in range(43_090_000, 43_110_000, 1000):
        seq = genome.fetch("chr17", start, start + 1000)
        enc = scorer.tok.encode([seq])[0]
        for a, b in zip(enc.starts, enc.ends):
            for o in range(1, b - a):
                miss = [c for c in "ACGT" if c != seq[a + o] and not scorer._supported(o, c)]
                if a >= 0 and miss and scorer._supported(o, seq[a + o]):
                    found = ("chr17", start + a + o + 1, seq[a + o], miss[0])
                    break
            if found:
                break
        if found:
            break
    assert found, "no unsupported offset in the test region"
    res = scorer.score(_batch([found]), genome)
    got = {k: v.to_pylist()[0] for k, v in res.columns.items()}
    assert got["grover_llr"] is not None
    want = TransformersReference(shared_data / BRCA1_FA, CONTIG, OFFSET0, hf_model, hf_tok,
                                 window=WINDOW, stride=STRIDE).score(*found[1:])
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-4), k
