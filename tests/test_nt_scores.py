"""NT and SegmentNT scores vs an independent recomputation of the definitions in docs/nt_segmentnt.md.

The references here use ``transformers`` (the tokenizer and the reference models of nt_fixtures),
``pysam`` for the sequence and plain Python loops for the window rule, the masked marginals and the
delta reduction; none of vareff's tokenizer, model or scoring code.  Tolerance 1e-4 (fp32).
"""
from __future__ import annotations

import math
import random

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pysam
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nt_fixtures as nf
from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf, write_vcf
from vareff import score_vcf
from vareff.cli import main
from vareff.errors import ConfigError
from vareff.score.lm import grid_window
from vareff.score.nt import NTOptions, make_scorer
from vareff.score.segment_nt import SegmentNTOptions, alt_on_reference, signed_max_delta

TOL = 1e-4
DIMS = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)


# --------------------------------------------------------------------------- pure helpers


@settings(max_examples=200, deadline=None)
@given(pos0=st.integers(0, 50_000), ref_len=st.integers(0, 40), seed=st.integers(0, 3))
def test_grid_window_contains_the_allele_with_its_flanks(pos0, ref_len, seed):
    window, stride, flank = [(600, 300, 60), (480, 192, 48), (30000, 12000, 2000), (6000, 3000, 500)][seed]
    span = (0, 10**6)
    ws, we = grid_window(pos0, ref_len, window, stride, flank, span)
    assert we - ws == window and ws % 6 == 0
    if ws > 0:
        assert pos0 - ws >= flank and we - (pos0 + ref_len) >= flank
    # alleles of one grid cell share it
    if ws % stride == 0 and ws > 0:
        centre = ws + window // 2
        other = grid_window(centre - stride // 2 + 1, 1, window, stride, flank, span)
        assert other == (ws, we)


def test_grid_window_at_contig_edges():
    assert grid_window(5, 1, 600, 300, 60, (0, 10_000)) == (0, 600)
    assert grid_window(9_990, 1, 600, 300, 60, (0, 10_000)) == (9_400, 10_000)
    assert grid_window(130, 1, 600, 300, 60, (100, 400), multiple=24) == (100, 388)  # short contig: 288 nt
    assert grid_window(399, 1, 600, 300, 60, (100, 400), multiple=24) == (112, 400)


def test_alt_on_reference_and_signed_max_delta():
    # SNV at 5: identity map
    j, a = alt_on_reference(5, 1, 1, 2, 9, 20)
    assert j.tolist() == a.tolist() == list(range(2, 9))
    # deletion of 2 bases at 5..6 (ref_len 2, alt_len 0): 5, 6 skipped, after shifts by -2
    j, a = alt_on_reference(5, 2, 0, 3, 10, 20)
    assert j.tolist() == [3, 4, 7, 8, 9] and a.tolist() == [3, 4, 5, 6, 7]
    # insertion of 3 bases before 5 (ref_len 0): positions >= 5 shift by +3; past the window end dropped
    j, a = alt_on_reference(5, 0, 3, 2, 20, 20)
    assert j.tolist() == list(range(2, 17)) and a.tolist() == list(range(2, 5)) + list(range(8, 20))
    p_ref = np.array([[0.25, 0.5], [0.5, 0.5], [0.75, 0.5]], np.float32)  # exact in binary: real ties
    p_alt = np.array([[0.5, 0.25], [0.5, 0.75], [0.5, 0.5]], np.float32)
    d = signed_max_delta(p_ref, p_alt, np.arange(3), np.arange(3))
    assert d.tolist() == [0.25, -0.25]  # the first of the tied magnitudes wins, sign kept
    assert signed_max_delta(p_ref, p_alt, np.arange(1, 3), np.array([0, 1])).tolist() == [-0.25, -0.25]


def test_options_parsing_and_validation():
    o = SegmentNTOptions.from_mapping({"segmentnt.k": "25", "window": 2400, "grover.window": 7, "nt.window": 12,
                                       "segmentnt.profiles": "p.parquet", "segmentnt.rescaling_factor": "auto"})
    assert (o.k, o.window, o.profiles, o.rescaling_factor) == (25, 2400, "p.parquet", None)
    assert NTOptions.from_mapping({"nt.window": "1200", "segmentnt.k": 5}).window == 1200
    with pytest.raises(ConfigError, match="multiple of 24"):
        SegmentNTOptions.from_mapping({"segmentnt.window": 1000})
    with pytest.raises(ConfigError, match="unknown SegmentNT option"):
        SegmentNTOptions.from_mapping({"segmentnt.kk": 3})
    with pytest.raises(ConfigError, match="multiples of 6"):
        NTOptions.from_mapping({"nt.window": 1001})


# --------------------------------------------------------------------------- a synthetic genome


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A random 6 kb contig with an N block at 4000-4009 (0-based), written as FASTA with soft-masked runs."""
    d = tmp_path_factory.mktemp("genome")
    rng = random.Random(42)
    seq = list(nf.random_dna(6000, rng))
    for i in range(4000, 4010):
        seq[i] = "N"
    for i in range(700, 900):  # soft-masked repeat: read as upper case
        seq[i] = seq[i].lower()
    fa = d / "g.fa"
    s = "".join(seq)
    fa.write_text(">chrT\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    pysam.faidx(str(fa))
    return fa, s.upper()


def ref_window(pos0, ref_len, L, S, flank, lo, hi):
    """The documented window rule, re-implemented on genomic coordinates: nearest grid window, else
    centred (start floored to a multiple of 6); kept inside the contig [lo, hi)."""
    t = math.floor((pos0 + ref_len / 2 - L / 2) / S + 0.5)
    start = t * S
    if min(pos0 - start, start + L - pos0 - ref_len) < flank:
        start = math.floor(pos0 + ref_len / 2 - L / 2)
        start -= start % 6
    return min(max(start, lo), hi - L)


def alleles_vcf(path, genome_seq, items):
    """VCF records (1-based) whose REF is read from the genome: items are (pos0, ref_len, alt)."""
    recs = []
    for k, (pos0, ref_len, alt) in enumerate(items):
        if ref_len == 0:  # insertion: VCF anchor base before
            anchor = genome_seq[pos0 - 1]
            recs.append(("chrT", pos0, f"v{k}", anchor, anchor + alt))
        elif alt == "":  # deletion: anchor before
            anchor = genome_seq[pos0 - 1]
            recs.append(("chrT", pos0, f"v{k}", anchor + genome_seq[pos0:pos0 + ref_len], anchor))
        else:
            recs.append(("chrT", pos0 + 1, f"v{k}", genome_seq[pos0:pos0 + ref_len], alt))
    return write_vcf(path, recs, contigs={"chrT": len(genome_seq)})


# --------------------------------------------------------------------------- NT


class NTReference:
    """nt_llr / nt_embedding_* of docs/nt_segmentnt.md from transformers + pysam."""

    def __init__(self, hf, tok, genome_seq, L=600, S=300, flank=60, offset0=0):
        self.hf, self.tok, self.g, self.L, self.S, self.flank = hf, tok, genome_seq, L, S, flank
        self.offset0 = offset0  # genomic 0-based = index into genome_seq + offset0

    def tokens(self, seq):
        ids = self.tok(seq)["input_ids"]
        toks = self.tok.convert_ids_to_tokens(ids)
        spans, x = [None], 0
        for t in toks[1:]:
            spans.append((x, x + len(t)))
            x += len(t)
        return ids, spans

    def run(self, ids, masked=()):
        x = torch.tensor([ids])
        for k in masked:
            x[0, k] = self.tok.mask_token_id
        with torch.no_grad():
            h = self.hf.esm(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            logits = self.hf.lm_head(h)
        return h[0].double(), nf.log_softmax64(logits[0])

    @staticmethod
    def covering(spans, a, b):
        if b <= a:
            a, b = a - 1, a + 1
        return [k for k, sp in enumerate(spans) if sp and sp[0] < b and sp[1] > a]

    def score(self, pos0, ref, alt):
        o = self.offset0
        ws = ref_window(pos0, len(ref), self.L, self.S, self.flank, o, o + len(self.g)) - o
        pos0 -= o
        seq = self.g[ws:ws + self.L]
        s = pos0 - ws
        alt_seq = seq[:s] + alt + seq[s + len(ref):]
        ir, sr = self.tokens(seq)
        ia, sa = self.tokens(alt_seq)
        if len(ref) == len(alt) and sr == sa:
            diff = [x for x in range(len(ref)) if ref[x] != alt[x]]
            cov = self.covering(sr, s + diff[0], s + diff[-1] + 1)
            _, lp = self.run(ir, cov)
            llr = sum(lp[k, ia[k]] - lp[k, ir[k]] for k in cov).item()
            n = len(cov)
        else:
            cr, ca = self.covering(sr, s, s + len(ref)), self.covering(sa, s, s + len(alt))
            _, lpr = self.run(ir, cr)
            _, lpa = self.run(ia, ca)
            llr = (sum(lpa[k, ia[k]] for k in ca) - sum(lpr[k, ir[k]] for k in cr)).item()
            n = len(cr)
        er, ea = self.run(ir)[0][1:].mean(0), self.run(ia)[0][1:].mean(0)
        cos = (er @ ea / (er.norm() * ea.norm())).item()
        return {"nt_llr": llr, "nt_embedding_distance": 1 - cos, "nt_embedding_l2": (er - ea).norm().item(),
                "nt_masked_tokens": n}


@pytest.fixture(scope="module")
def nt_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("nt_v2")
    hf, tok = nf.make_nt_v2(d, seed=21, **DIMS)
    return d, hf, tok


NT_OPTS = {"nt.window": 600, "nt.stride": 300, "nt.min_flank": 60}


def test_nt_scores_equal_an_independent_recomputation(nt_ckpt, genome, tmp_path):
    d, hf, tok = nt_ckpt
    fa, g = genome
    items = [(1000, 1, "G" if g[1000] != "G" else "A"), (1001, 1, "T" if g[1001] != "T" else "C"),
             (1500, 2, "".join("A" if c != "A" else "C" for c in g[1500:1502])),  # MNV
             (2000, 0, "TTA"), (2500, 4, ""),  # insertion, deletion
             (3990, 1, "C" if g[3990] != "C" else "G"),  # window with the N block
             (800, 1, "A" if g[800] != "A" else "T")]  # in the soft-masked run
    vcf = alleles_vcf(tmp_path / "a.vcf", g, items)
    out = tmp_path / "s.parquet"
    score_vcf(vcf, out, fasta=fa, models=[str(d)], device="cpu", model_options=NT_OPTS)
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok"] * len(items)
    ref = NTReference(hf, tok, g)
    for row in df.iter_rows(named=True):
        want = ref.score(row["norm_pos"] - 1, row["norm_ref"], row["norm_alt"])
        for k, v in want.items():
            assert row[k] == pytest.approx(v, abs=TOL), (k, row["pos"], row["alt"])
    assert df.filter(pl.col("id") == "v0")["nt_masked_tokens"][0] == 1


def test_nt_v1_scores_with_token_dropout_equal_the_recomputation(genome, tmp_path):
    """NT v1: learned positions and token dropout (the masked passes rescale the embeddings)."""
    d = tmp_path / "v1"
    hf, tok = nf.make_nt_v1(d, seed=22, **DIMS)
    fa, g = genome
    items = [(1100, 1, "G" if g[1100] != "G" else "A"), (2200, 3, ""), (2600, 0, "CAT")]
    vcf = alleles_vcf(tmp_path / "a.vcf", g, items)
    out = tmp_path / "s.parquet"
    score_vcf(vcf, out, fasta=fa, models=[str(d)], device="cpu", model_options=NT_OPTS)
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok"] * 3
    ref = NTReference(hf, tok, g)
    for row in df.iter_rows(named=True):
        for k, v in ref.score(row["norm_pos"] - 1, row["norm_ref"], row["norm_alt"]).items():
            assert row[k] == pytest.approx(v, abs=TOL), (k, row["pos"])


def test_models_command_describes_both(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "Nucleotide Transformer" in text and "SegmentNT" in text and "segmentnt_" in text


def test_nt_reference_passes_are_shared_and_cached(nt_ckpt, genome):
    from vareff.score.base import AlleleBatch
    from vareff.window.genome import Genome

    d, _, _ = nt_ckpt
    fa, g = genome
    sc = make_scorer(str(d), device="cpu", batch_size=8, options=NT_OPTS)
    pos = [1200, 1201, 1202, 1210]  # one window; 1200-1202 share a 6-mer ([1200, 1206))
    rows = [(p, g[p], a) for p in pos for a in "ACGT" if a != g[p]]
    b = AlleleBatch(chrom=["chrT"] * len(rows), pos1=np.array([r[0] + 1 for r in rows]), ref=[r[1] for r in rows],
                    alt=[r[2] for r in rows], norm_pos1=np.array([r[0] + 1 for r in rows]), norm_ref=[r[1] for r in rows],
                    norm_alt=[r[2] for r in rows], variant_type=["snv"] * len(rows), status=["ok"] * len(rows))
    gen = Genome(fa)
    sc.score(b, gen)
    # 1 unmasked ref pass + 2 masked ref passes (two covering 6-mers) + 12 alt passes
    assert sc.stats["passes"] == 1 + 2 + len(rows)
    sc.score(b, gen)  # the same alleles again: everything comes from the cache
    assert sc.stats["passes"] == 1 + 2 + len(rows) and sc.stats["cached"] == 1 + 2 + len(rows)


# --------------------------------------------------------------------------- SegmentNT


SEG_OPTS = {"segmentnt.window": 480, "segmentnt.stride": 192, "segmentnt.min_flank": 48, "segmentnt.k": 20}


@pytest.fixture(scope="module")
def seg_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("segment_nt")
    hf, head, tok = nf.make_segment_nt(d, seed=31, **DIMS)
    return d, hf, head, tok


def seg_reference(hf, head, tok, g, pos0, ref, alt, *, L=480, S=192, flank=48, k=20, offset0=0):
    """Signed max-|delta| per feature (docs definition) with plain loops over reference positions.

    ``pos0`` is genomic (0-based); ``g[i]`` is genomic position ``i + offset0``.  Returns the deltas,
    the window start as an index into ``g``, both profiles and the (ref, alt) offset pairs.
    """
    ws = ref_window(pos0, len(ref), L, S, flank, offset0, offset0 + len(g)) - offset0
    pos0 -= offset0
    seq = g[ws:ws + L]
    s = pos0 - ws
    alt_seq = (seq[:s] + alt + g[ws + s + len(ref): ws + L + max(0, len(ref) - len(alt))])[:L]
    pr = nf.segment_nt_reference_window(hf, head, seq, tok).numpy()
    pa_ = nf.segment_nt_reference_window(hf, head, alt_seq, tok).numpy()
    pairs = []
    for j in range(max(0, s - k), min(L, s + len(ref) + k)):
        if j < s + min(len(ref), len(alt)):
            a = j
        elif j < s + len(ref):
            continue  # deleted base
        else:
            a = j + len(alt) - len(ref)
        if 0 <= a < L:
            pairs.append((j, a))
    best = []
    for f in range(pr.shape[1]):
        vals = [pa_[a, f] - pr[j, f] for j, a in pairs]
        best.append(max(vals, key=abs))
    return np.array(best), ws, pr, pa_, pairs


def test_segment_nt_deltas_equal_an_independent_recomputation(seg_ckpt, genome, tmp_path):
    d, hf, head, tok = seg_ckpt
    fa, g = genome
    items = [(1000, 1, "G" if g[1000] != "G" else "A"), (1003, 1, "C" if g[1003] != "C" else "T"),
             (2000, 0, "TTA"), (2500, 4, ""), (3000, 3, "GA"),  # insertion, deletion, complex
             (3990, 1, "C" if g[3990] != "C" else "G"),  # window holds N: status
             (800, 1, "A" if g[800] != "A" else "T")]  # soft-masked
    vcf = alleles_vcf(tmp_path / "a.vcf", g, items)
    out, prof = tmp_path / "s.parquet", tmp_path / "profiles.parquet"
    opts = dict(SEG_OPTS, **{"segmentnt.profiles": str(prof)})
    score_vcf(vcf, out, fasta=fa, models=[str(d)], device="cpu", model_options=opts)
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok"] * 5 + ["n_in_window", "ok"]
    assert df.filter(pl.col("status") == "n_in_window")["segmentnt_exon_delta"][0] is None
    cols = [c for c in df.columns if c.startswith("segmentnt_") and c.endswith("_delta")]
    assert len(cols) == 14 and cols[6] == "segmentnt_5utr_delta" and cols[8] == "segmentnt_ctcf_bound_delta"
    profiles = pl.read_parquet(prof)
    for row in df.filter(pl.col("status") == "ok").iter_rows(named=True):
        want, ws, pr, pa_, pairs = seg_reference(hf, head, tok, g, row["norm_pos"] - 1, row["norm_ref"], row["norm_alt"])
        got = np.array([row[c] for c in cols], dtype=np.float64)
        assert np.abs(got - want).max() < TOL, (row["pos"], row["alt"])
        assert np.abs(want).max() > 1e-3  # the alleles do move the random model's probabilities
        # profile rows: the whole window on reference coordinates
        p = profiles.filter((pl.col("pos") == row["pos"]) & (pl.col("alt") == row["alt"])).sort("position")
        assert p.height == 480 and p["position"][0] == ws + 1
        assert np.abs(p["ref_exon"].to_numpy() - pr[:, 2]).max() < TOL
        alt_exon = p["alt_exon"].to_numpy()  # nulls (deleted bases) come back as NaN
        for j, a in pairs:
            assert abs(alt_exon[j] - pa_[a, 2]) < TOL
    assert not list(tmp_path.glob(".profiles.parquet.tmp-*"))  # written atomically, nothing left over
    meta = pq.read_schema(prof).metadata
    assert b"vareff.segmentnt" in meta


def test_reference_pass_is_shared_by_nearby_alleles(seg_ckpt, genome, tmp_path):
    from vareff.score.base import AlleleBatch
    from vareff.window.genome import Genome

    d, _, _, _ = seg_ckpt
    fa, g = genome
    sc = make_scorer(str(d), device="cpu", batch_size=8,
                     options=dict(SEG_OPTS, **{"segmentnt.profiles": str(tmp_path / "p.parquet"),
                                               "segmentnt.profile_alleles": "chrT:1301", "segmentnt.profile_flank": 10}))
    pos = [1300, 1310, 1320, 1330, 1340]  # one grid cell: one reference pass for all five
    rows = [(p, g[p], "A" if g[p] != "A" else "C") for p in pos]
    b = AlleleBatch(chrom=["chrT"] * 5, pos1=np.array([r[0] + 1 for r in rows]), ref=[r[1] for r in rows],
                    alt=[r[2] for r in rows], norm_pos1=np.array([r[0] + 1 for r in rows]), norm_ref=[r[1] for r in rows],
                    norm_alt=[r[2] for r in rows], variant_type=["snv"] * 5, status=["ok"] * 5)
    res = sc.score(b, Genome(fa))
    assert res.status == [None] * 5
    assert sc.stats["ref_passes"] == 1 and sc.stats["alt_passes"] == 5
    sc.score(b, Genome(fa))  # next chunk, same window: the reference comes from the cache
    assert sc.stats["ref_passes"] == 1 and sc.stats["ref_cached"] == 1
    prof = pl.read_parquet(tmp_path / "p.parquet")  # only the requested allele, +-10 nt
    assert set(prof["pos"].to_list()) == {1301} and prof.height == 2 * 21


def test_a_real_vcf_on_the_real_brca1_slice_through_the_cli(seg_ckpt, nt_ckpt, shared_data, tmp_path):
    """`vareff score -m SEGMENTNT -m NT` with the default windows (30 kb, 6 kb) on GRCh38 BRCA1."""
    ds, hf_s, head, tok_s = seg_ckpt
    dn, hf_n, tok_n = nt_ckpt
    p = brca_paths(shared_data)
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca_grch38.vcf")
    out_pq, out_vcf = tmp_path / "scores.parquet", tmp_path / "scores.vcf"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(ds), "-m", str(dn),
               "-o", str(out_pq), "-o", str(out_vcf), "--skip-malformed", "--device", "cpu", "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out_pq)
    ok = df.filter(pl.col("status") == "ok")
    assert ok.height == 35
    seg_cols = [c for c in df.columns if c.startswith("segmentnt_") and c.endswith("_delta")]
    assert len(seg_cols) == 14 and ok.select(seg_cols).null_count().sum_horizontal()[0] == 0
    assert ok["nt_llr"].null_count() == 0 and ok["nt_embedding_distance"].null_count() == 0

    # two alleles recomputed independently with the defaults (30 kb / 12 kb grid, k = 100; 6 kb / 3 kb)
    contig = pysam.FastaFile(p["fasta"]).fetch(BRCA_CONTIG)
    nt_ref = NTReference(hf_n, tok_n, contig, L=6000, S=3000, flank=500, offset0=BRCA_OFFSET0)
    for row in ok.sample(2, seed=3).iter_rows(named=True):
        pos0 = row["norm_pos"] - 1
        want, *_ = seg_reference(hf_s, head, tok_s, contig, pos0, row["norm_ref"], row["norm_alt"],
                                 L=30000, S=12000, flank=2000, k=100, offset0=BRCA_OFFSET0)
        got = np.array([row[c] for c in seg_cols], dtype=np.float64)
        assert np.abs(got - want).max() < TOL, (row["pos"], row["alt"])
        for key, v in nt_ref.score(pos0, row["norm_ref"], row["norm_alt"]).items():
            assert row[key] == pytest.approx(v, abs=TOL), (key, row["pos"], row["alt"])
    text = out_vcf.read_text()
    assert "##INFO=<ID=SegmentNT,Number=A,Type=String" in text and "Format: protein_coding_gene|lncRNA" in text
    assert "##INFO=<ID=NT_LLR,Number=A,Type=Float" in text
