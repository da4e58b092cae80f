"""The batched scorer (shared reference passes, cone alts, gene masks, strands) against a plain
per-allele implementation of SpliceAI 1.3.1's published algorithm, written here independently."""
from __future__ import annotations

import numpy as np
import polars as pl
import pysam
import pytest
import torch

import vareff
from vareff.models.spliceai import load_spliceai

from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths


def _onehot(seq: str) -> np.ndarray:
    table = {"A": 0, "C": 1, "G": 2, "T": 3}
    x = np.zeros((len(seq), 4), np.float32)
    for i, c in enumerate(seq):
        if c in table:
            x[i, table[c]] = 1
    return x


def _genes(path):
    rows = []
    for line in open(path):
        if line.startswith("#"):
            continue
        name, chrom, strand, txs, txe, es, ee = line.rstrip("\n").split("\t")
        bounds = sorted(set([int(v) + 1 for v in es.split(",") if v] + [int(v) for v in ee.split(",") if v]))
        rows.append((name, strand, int(txs) + 1, int(txe), np.array(bounds)))
    return rows


_CACHE: dict[bytes, np.ndarray] = {}


def _run(model, x: np.ndarray) -> np.ndarray:
    """Model outputs for one one-hot window (cached: both mask settings use the same windows)."""
    k = x.tobytes()
    if k not in _CACHE:
        with torch.inference_mode():
            _CACHE[k] = model(torch.from_numpy(x.T[None].copy())).numpy()[0].T
    return _CACHE[k]


def official_scores(model, seq_of, genes, pos, ref, alt, D, mask):
    """SpliceAI's get_delta_scores for one allele, one full window per gene, no sharing."""
    cov, wid = 2 * D + 1, 10000 + 2 * D + 1
    out = []
    for name, strand, txs, txe, bounds in genes:
        if not (txs <= pos <= txe):
            continue
        seq = seq_of(pos - wid // 2, pos + wid // 2)  # 1-based inclusive
        d_start, d_end = txs - pos, txe - pos
        dists = bounds - pos
        d_bound = min(dists.tolist(), key=abs)
        pad0, pad1 = max(wid // 2 + d_start, 0), max(wid // 2 - d_end, 0)
        x_ref = "N" * pad0 + seq[pad0: wid - pad1] + "N" * pad1
        x_alt = x_ref[: wid // 2] + alt + x_ref[wid // 2 + len(ref):]
        xs = [_onehot(x_ref), _onehot(x_alt)]
        if strand == "-":
            xs = [x[::-1, ::-1].copy() for x in xs]
        ys = [_run(model, x) for x in xs]  # (L, 3)
        if strand == "-":
            ys = [y[::-1] for y in ys]
        y_ref, y_alt = ys
        rl, al = len(ref), len(alt)
        if rl > 1 and al == 1:
            y_alt = np.concatenate([y_alt[: cov // 2 + al], np.zeros((rl - al, 3), np.float32), y_alt[cov // 2 + al:]])
        elif rl == 1 and al > 1:
            y_alt = np.concatenate([y_alt[: cov // 2], y_alt[cov // 2: cov // 2 + al].max(0)[None], y_alt[cov // 2 + al:]])
        elif rl > 1 and al > 1 and rl != al:
            pytest.fail("complex alleles are not in the official algorithm")
        y = np.stack([y_ref, y_alt])
        i_pa, i_na = (y[1, :, 1] - y[0, :, 1]).argmax(), (y[0, :, 1] - y[1, :, 1]).argmax()
        i_pd, i_nd = (y[1, :, 2] - y[0, :, 2]).argmax(), (y[0, :, 2] - y[1, :, 2]).argmax()
        m_pa = mask and i_pa - cov // 2 == d_bound
        m_na = mask and i_na - cov // 2 != d_bound
        m_pd = mask and i_pd - cov // 2 == d_bound
        m_nd = mask and i_nd - cov // 2 != d_bound
        out.append("{}|{}|{:.2f}|{:.2f}|{:.2f}|{:.2f}|{}|{}|{}|{}".format(
            alt, name, (y[1, i_pa, 1] - y[0, i_pa, 1]) * (1 - m_pa), (y[0, i_na, 1] - y[1, i_na, 1]) * (1 - m_na),
            (y[1, i_pd, 2] - y[0, i_pd, 2]) * (1 - m_pd), (y[0, i_nd, 2] - y[1, i_nd, 2]) * (1 - m_nd),
            i_pa - cov // 2, i_na - cov // 2, i_pd - cov // 2, i_nd - cov // 2))
    return ",".join(out) if out else None


@pytest.fixture(scope="module")
def official_case(shared_data):
    """Alleles, the sequence accessor and the model for the per-allele comparison (loaded once;
    both mask settings read the same windows, cached by ``_run``)."""
    p = brca_paths(shared_data)
    fa = pysam.FastaFile(p["fasta"])
    seq_of = lambda a1, b1: fa.fetch(BRCA_CONTIG, a1 - 1 - BRCA_OFFSET0, b1 - BRCA_OFFSET0).upper()  # noqa: E731
    g = lambda pos1, n: seq_of(pos1, pos1 + n - 1)  # noqa: E731
    # BRCA1 (minus strand) sites close together (s, s + 3: one shared reference pass) and apart, a
    # gene end (N-masked window), MLX(+)/PSMC3IP(-) overlapping, and PTGES3L-AARSD1/AARSD1 (same
    # strand, different transcript ends); an SNV, an MNV, an insertion and a deletion at s, a
    # deletion at s + 3 and a 2 bp -> 1 bp deletion apart
    s, end, apart, two_strands, same_strand = 43_094_500, 43_124_118, 43_125_300, 42_572_500, 42_960_000
    variants = [(q, g(q, 1), "A" if g(q, 1) != "A" else "G") for q in (s, end, two_strands, same_strand)]  # SNVs
    variants += [(s, g(s, 3), "A" + g(s + 1, 2)[::-1] if g(s + 1, 2)[::-1] != g(s + 1, 2) else "ACT"),  # MNV-ish
                 (s, g(s, 1), g(s, 1) + "TTAG"),  # insertion
                 (s + 3, g(s + 3, 5), g(s + 3, 1)),  # deletion
                 (apart, g(apart, 2), g(apart, 1))]
    variants = [(ps, r, a) for ps, r, a in variants if r != a]
    return p, seq_of, _genes(p["annotation"]), variants, load_spliceai()


@pytest.mark.parametrize("mask", [False, True])
def test_batched_scorer_equals_per_allele_official_algorithm(official_case, mask):
    p, seq_of, genes, variants, model = official_case
    df = pl.DataFrame({"chrom": ["chr17"] * len(variants), "pos": [v[0] for v in variants],
                       "ref": [v[1] for v in variants], "alt": [v[2] for v in variants]})
    D = 25
    out = vareff.score_variants(df, fasta=p["fasta"], models=["spliceai"], contig_map=[p["contig_map"]],
                                spliceai_annotation=p["annotation"], spliceai_distance=D, spliceai_mask=mask,
                                batch_size=4)
    expected = [official_scores(model, seq_of, genes, ps, r, a, D, mask) for ps, r, a in variants]
    assert out["status"].to_list() == ["ok"] * len(variants)
    assert out["spliceai"].to_list() == expected
    assert sum(e.count("|") > 9 for e in expected) >= 2  # both two-gene sites overlap two genes


def test_contig_edge_is_padded_scored_and_flagged(shared_data, tmp_path):
    """A variant whose window runs past the start of a sliced FASTA is scored on N padding and flagged."""
    fasta = shared_data / "grch38" / "slc5a1_region" / "hg38_chr22_32000000_32300000.fa"
    genes = tmp_path / "genes.txt"
    genes.write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                     "EDGE1\t22\t+\t32000010\t32009000\t32000010,32000400,\t32000300,32009000,\n")
    seq = pysam.FastaFile(str(fasta)).fetch("chr22", 0, 20000).upper()
    p_edge, p_mid = 32_000_250, 32_008_000  # 1-based; the second is > 5,050 nt from the slice start
    df = pl.DataFrame({"chrom": ["chr22", "chr22"], "pos": [p_edge, p_mid],
                       "ref": [seq[p_edge - 32_000_001], seq[p_mid - 32_000_001]], "alt": ["T", "T"]})
    df = df.with_columns(pl.when(pl.col("ref") == "T").then(pl.lit("G")).otherwise(pl.col("alt")).alias("alt"))
    out = vareff.score_variants(df, fasta=fasta, contig_map=["chr22=chr22+32000000"], models=["spliceai"],
                                spliceai_annotation=str(genes), spliceai_distance=10)
    assert out["status"].to_list() == ["near_contig_edge", "ok"]
    assert out["spliceai_ds_max"].null_count() == 0
