"""``strands=both``: every score is the mean of the forward run and of a run on the reverse-complemented genome.

The reverse-strand reference here is independent of the strand code: the same scorer, default
``strands=forward``, on a FASTA holding the reverse complement of the contig, with the alleles moved
to it (position ``G - pos - len(ref)``, alleles reverse-complemented).  Window length, stride and
contig length are chosen so that the reverse-complemented grid is the grid itself, so both runs see
the same windows.  Tolerance: relative 1e-4, absolute 1e-8 (float32 passes, batched differently).
"""
from __future__ import annotations

import random

import numpy as np
import pysam
import pytest

import nt_fixtures as nf
from grover_fixtures import make_checkpoint
from vareff.errors import ConfigError
from vareff.score.base import AlleleBatch
from vareff.score.grover import make_scorer as make_grover
from vareff.score.lm import reverse_complement
from vareff.score.nt import make_scorer as make_nt
from vareff.window.genome import Genome

G = 6000
DIMS = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)
RTOL, ATOL = 1e-4, 1e-8


@pytest.fixture(scope="module")
def genomes(tmp_path_factory):
    d = tmp_path_factory.mktemp("strands")
    seq = nf.random_dna(G, random.Random(5))
    out = []
    for name, s in (("fwd", seq), ("rev", reverse_complement(seq))):
        fa = d / f"{name}.fa"
        fa.write_text(">chrT\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
        pysam.faidx(str(fa))
        out.append(Genome(fa))
    return seq, out[0], out[1]


def alleles(seq):
    """(pos0, ref, alt) trimmed alleles: SNVs, an MNV, a deletion, an insertion (away from grid ties)."""
    def other(c):
        return "G" if c != "G" else "T"

    items = [(p, seq[p], other(seq[p])) for p in (1000, 1013, 2222, 3350)]
    items += [(1500, seq[1500:1502], other(seq[1500]) + other(seq[1501])), (2610, seq[2610:2613], ""), (3731, "", "TTA")]
    return items


def batch(items):
    n = len(items)
    return AlleleBatch(chrom=["chrT"] * n, pos1=np.array([p + 1 for p, _, _ in items]), ref=[r for _, r, _ in items],
                       alt=[a for _, _, a in items], norm_pos1=np.array([p + 1 for p, _, _ in items]),
                       norm_ref=[r for _, r, _ in items], norm_alt=[a for _, _, a in items],
                       variant_type=["snv"] * n, status=["ok"] * n)


def reverse_items(items):
    return [(G - p - len(r), reverse_complement(r), reverse_complement(a)) for p, r, a in items]


def check(make, options, genomes, *, summed=()):
    seq, fwd_g, rev_g = genomes
    items = alleles(seq)
    both = make(dict(options, strands="both")).score(batch(items), fwd_g)
    single = make(options)
    for p, r, _ in items:  # the reverse-complemented grid is the grid: both runs read the same windows
        ws, we = single.place(p, len(r), (0, G))
        assert single.place(G - p - len(r), len(r), (0, G)) == (G - we, G - ws)
    fwd = single.score(batch(items), fwd_g)
    rev = make(options).score(batch(reverse_items(items)), rev_g)  # a fresh scorer: caches are per genome
    assert both.status == fwd.status == rev.status == [None] * len(items)
    for name in both.columns:
        b, f, r = (np.array(x.columns[name].to_pylist(), dtype=np.float64) for x in (both, fwd, rev))
        want = f + r if name in summed else (f + r) / 2
        np.testing.assert_allclose(b, want, rtol=RTOL, atol=ATOL, err_msg=name)
        if name not in summed:  # the strands do differ: the test has teeth
            assert (np.abs(f - r) > 100 * (RTOL * np.abs(want) + ATOL)).any(), name


def test_grover_strands_both_is_the_mean_of_both_strands(genomes, tmp_path):
    make_checkpoint(tmp_path / "g", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=40, seed=8, weight_std=0.12)
    opts = {"grover.window": 600, "grover.stride": 300, "grover.min_flank": 60}
    check(lambda o: make_grover(str(tmp_path / "g"), device="cpu", options=o), opts, genomes,
          summed=("grover_masked_tokens",))


def test_nt_strands_both_is_the_mean_of_both_strands(genomes, tmp_path):
    nf.make_nt_v2(tmp_path / "nt", seed=21, **DIMS)
    opts = {"nt.window": 600, "nt.stride": 300, "nt.min_flank": 60}
    check(lambda o: make_nt(str(tmp_path / "nt"), device="cpu", options=o), opts, genomes,
          summed=("nt_masked_tokens",))


def test_segment_nt_strands_both_is_the_mean_of_both_strands(genomes, tmp_path):
    nf.make_segment_nt(tmp_path / "seg", seed=31, **DIMS)
    opts = {"segmentnt.window": 480, "segmentnt.stride": 240, "segmentnt.min_flank": 48, "segmentnt.k": 20}
    check(lambda o: make_nt(str(tmp_path / "seg"), device="cpu", options=o), opts, genomes)


def test_strands_option_is_checked_and_recorded(tmp_path):
    nf.make_nt_v2(tmp_path / "nt", seed=21, **DIMS)
    with pytest.raises(ConfigError, match="strands"):
        make_nt(str(tmp_path / "nt"), device="cpu", options={"nt.strands": "reverse"})
    assert "strands" not in make_nt(str(tmp_path / "nt"), device="cpu").provenance()["nt.settings"]
    both = make_nt(str(tmp_path / "nt"), device="cpu", options={"nt.strands": "both"})
    assert both.provenance()["nt.settings"].endswith(" strands=both")
