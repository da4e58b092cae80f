"""Ray workers share one score store: a cold distributed run fills it, a warm one is served from it,
and both give the single-process rows without a store."""
from __future__ import annotations

import json

import polars as pl
import pyarrow.parquet as pq
import pytest

import grover_fixtures as gf
import vareff
from store_helpers import random_seq, write_fasta
from vareff.store.admin import info

ray = pytest.importorskip("ray")

OPTS = {"grover.window": 600, "grover.stride": 300, "grover.min_flank": 60}


@pytest.mark.slow  # concurrent processes on one store are in the fast suite (tests/test_store_safety.py)
def test_ray_workers_share_one_store(tmp_path):
    seq = random_seq(6000, seed=12)
    fa = write_fasta(tmp_path / "g.fa", {"chrT": seq})
    gf.make_checkpoint(tmp_path / "ckpt", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=40, seed=8, weight_std=0.12)
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chrT,length=6000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in range(700, 5300, 150):
        b = seq[p - 1]
        lines.append(f"chrT\t{p}\t.\t{b}\t{'A' if b != 'A' else 'C'}\t.\t.\t.")
    vcf = tmp_path / "in.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    n = len(lines) - 3
    kw = dict(fasta=fa, models=[str(tmp_path / "ckpt")], device="cpu", threads=1, chunk_size=8, model_options=OPTS)
    vareff.score_vcf(vcf, tmp_path / "local.parquet", store="", **kw)
    store = tmp_path / "store"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        vareff.score_vcf(vcf, tmp_path / "cold.parquet", store=store, engine="ray", shards=2, **kw)
        assert info(store)["configs"][0]["entries"] == n  # the workers' write-backs, all in one store
        segments = sorted(store.glob("data/*/*/*/seg-*"))
        warm = vareff.score_vcf(vcf, tmp_path / "warm.parquet", store=store, engine="ray", shards=2, **kw)
    finally:
        ray.shutdown()
    assert sorted(store.glob("data/*/*/*/seg-*")) == segments  # warm: nothing computed, nothing added
    assert sum(r["served"] for r in info(store, last_runs=100)["runs"]) > 0
    assert warm.store["grover"]["served"] == n and warm.store["grover"]["computed"] == 0
    meta = json.loads(pq.read_schema(tmp_path / "warm.parquet").metadata[b"vareff"])
    assert meta["store"]["grover"]["served"] == n
    local = pl.read_parquet(tmp_path / "local.parquet")
    for name in ("cold", "warm"):
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(local), name
