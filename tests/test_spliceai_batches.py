"""SpliceAI scores do not depend on which other alleles share a batch; a warm store loads no weights;
folded BatchNorms keep the network's outputs; bfloat16 stays near float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_helpers import tubb8_paths
from store_helpers import config, run_pipeline, snv_records, with_store
from vareff.models.spliceai import SpliceAIModel, _read_h5, load_spliceai
from vareff.models.spliceai_files import wheel_weights_dir
from vareff.normalize.alleles import Record
from vareff.score.base import AlleleBatch
from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer
from vareff.store.hook import subset
from vareff.window.genome import Genome

D = 10
DS = ("spliceai_ds_ag", "spliceai_ds_al", "spliceai_ds_dg", "spliceai_ds_dl")


@pytest.fixture(scope="module")
def tubb8(shared_data):
    p = tubb8_paths(shared_data)
    opts = SpliceAIOptions(distance=D, annotation=p["annotation"], keep_raw=True)
    scorer = SpliceAIScorer(opts, model=load_spliceai())
    return p, scorer, Genome(p["fasta"])


def _batch(genome: Genome) -> AlleleBatch:
    """SNVs, a deletion, an insertion and an MNV at neighbouring TUBB8 sites (some sharing a site)."""
    rows = []
    for p in (94060, 94061, 94069, 94075, 94560, 94562):
        r = genome.fetch("chr10", p - 1, p)
        rows.append((p, r, "A" if r != "A" else "G"))
    rows += [(94061, genome.fetch("chr10", 94060, 94063), genome.fetch("chr10", 94060, 94061)),
             (94069, genome.fetch("chr10", 94068, 94069), genome.fetch("chr10", 94068, 94069) + "TTG"),
             (94560, genome.fetch("chr10", 94559, 94561), "CA")]
    n = len(rows)
    pos = np.array([r[0] for r in rows], dtype=np.int64)
    return AlleleBatch(["chr10"] * n, pos, [r[1] for r in rows], [r[2] for r in rows], pos.copy(),
                       [r[1] for r in rows], [r[2] for r in rows], ["snv"] * n, ["ok"] * n)


def test_scores_are_bit_identical_whatever_the_batch(tubb8):
    """One batch vs subsets (odd rows, one allele): every float equal, bit for bit."""
    _, sc, genome = tubb8
    batch = _batch(genome)
    n = len(batch)
    full = sc.score(batch, genome)
    raw_full = {(r.allele, r.gene): r for r in sc.raw}
    assert all(v is not None for v in full.columns["spliceai_ds_ag"])
    for idx in (np.arange(1, n, 2), np.array([n - 1])):  # an odd-sized batch, a single allele
        part = sc.score(subset(batch, idx), genome)
        for c in DS:
            assert [np.float32(part.columns[c][k]) for k in range(len(idx))] == \
                [np.float32(full.columns[c][i]) for i in idx], (c, idx)
        for r in sc.raw:
            ref = raw_full[(int(idx[r.allele]), r.gene)]
            assert np.array_equal(r.y_ref, ref.y_ref) and np.array_equal(r.y_alt, ref.y_alt), idx


def test_warm_store_run_loads_no_weights(tubb8, tmp_path):
    """A run served entirely from the store never builds the SpliceAI models; its output is the cold run's."""
    p, sc, _ = tubb8
    seq = open(p["fasta"]).read().split("\n", 1)[1].replace("\n", "")
    recs = snv_records("chr10", seq, 0, [94069], alts_per_site=2)
    cfg = with_store(config(p["fasta"], None, spliceai_distance=D), tmp_path / "store")
    cold = run_pipeline(cfg, [sc], recs)
    lazy = SpliceAIScorer(SpliceAIOptions(distance=D, annotation=p["annotation"]))
    assert not lazy.weights_loaded
    warm = run_pipeline(cfg, [lazy], recs)
    assert warm[2]["spliceai"]["computed"] == 0 and warm[2]["spliceai"]["served"] == len(recs[0].alts)
    assert not lazy.weights_loaded
    assert warm[0].equals(cold[0]) and warm[1] == cold[1]
    # a miss loads them
    miss = [Record("chr10", 94080, None, seq[94079].upper(), ("A" if seq[94079].upper() != "A" else "C",))]
    run_pipeline(cfg, [lazy], miss)
    assert lazy.weights_loaded


def test_folded_network_equals_the_unfolded_graph():
    """BatchNorms folded into the convolutions: same outputs as the graph run layer by layer."""
    nodes, weights = _read_h5(wheel_weights_dir() / "spliceai2.h5")
    plain, fused = SpliceAIModel(nodes, weights, fuse=False), SpliceAIModel(nodes, weights)
    assert {n.kind for n in fused.nodes} == {"input", "conv", "clamp", "add", "crop"}
    assert sum(n.kind == "bn" for n in plain.nodes) == 32
    g = torch.Generator().manual_seed(5)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 2 * plain.context + 21), generator=g), 4)
    x = x.float().permute(0, 2, 1).contiguous()
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), plain(x), atol=2e-6, rtol=1e-5)


def test_bfloat16_is_opt_in_and_close(tubb8):
    """--dtype bfloat16 runs the same scorer in bf16: delta scores within 0.05 of float32."""
    p, sc, genome = tubb8
    default = SpliceAIScorer(SpliceAIOptions(annotation=p["annotation"]))
    assert sc.dtype == torch.float32 and default.dtype == torch.float32 and not default.weights_loaded
    bf = SpliceAIScorer(SpliceAIOptions(distance=D, annotation=p["annotation"]), dtype=torch.bfloat16)
    batch = subset(_batch(genome), np.array([0, 6, 7]))
    a, b = sc.score(batch, genome), bf.score(batch, genome)
    for c in DS:
        np.testing.assert_allclose(b.columns[c], a.columns[c], atol=0.05)
    assert bf.provenance()["dtype"] == "bfloat16" and sc.provenance()["dtype"] == "float32"


def test_warm_cli_run_imports_no_torch(shared_data, tmp_path):
    """`vareff score --store` served entirely from the store starts without torch (issue 14: a warm
    re-run is start-up bound); the cold run in the same test needs it."""
    import subprocess
    import sys

    p = tubb8_paths(shared_data)
    genome = Genome(p["fasta"])
    ref = genome.fetch("chr10", 94068, 94069)
    vcf = tmp_path / "in.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chr10\t94069\t.\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\t.\t.\n")
    probe = ("import sys\nfrom vareff.cli import main\n"
             "rc = main(sys.argv[1:])\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)\n")
    args = [str(vcf), "-f", p["fasta"], "--spliceai-annotation", p["annotation"], "--spliceai-distance", str(D),
            "--store", str(tmp_path / "store"), "--device", "cpu", "--no-progress"]
    out = []
    for name in ("cold", "warm"):
        r = subprocess.run([sys.executable, "-c", probe, "score", *args, "-o", str(tmp_path / f"{name}.parquet")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.split()[-2:])
    assert out == [["TORCH", "0"], ["NO-TORCH", "0"]]
    import polars as pl

    assert pl.read_parquet(tmp_path / "warm.parquet").equals(pl.read_parquet(tmp_path / "cold.parquet"))
