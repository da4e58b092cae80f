"""vareff store export/import: a round trip keeps the keys exactly; a published SpliceAI VCF and a
generic Parquet are imported under their declared provenance and served with --store-use."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_helpers import tubb8_paths
from store_helpers import (FakeScorer, check_result, config, fake_batch, info_values, random_seq, run_pipeline,
                           write_fasta)
from vareff.cli import main
from vareff.errors import ConfigError
from vareff.normalize.alleles import Record
from vareff.store.admin import info
from vareff.store.hook import StoreHook
from vareff.window.genome import Genome


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("tr")
    seqs = {"chrA": random_seq(30_000, 3), "chrB": random_seq(20_000, 4)}
    return write_fasta(d / "g.fa", seqs), seqs


def test_export_then_import_restores_the_same_keys(fasta, tmp_path):
    fa, seqs = fasta
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "x.parquet"
    batches = [fake_batch(seqs, 200, s, pool=100) for s in range(3)]
    hook = StoreHook(a, [sc := FakeScorer()], Genome(fa))
    for bt in batches:
        hook.score(sc, bt)
    (c,) = info(a)["configs"]
    assert main(["store", "export", str(a), "--config", c["config"], "-o", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df.height == c["entries"] and set(df["chrom"]) == {"chrA", "chrB"}
    for row in df.head(20).iter_rows(named=True):
        st, x, k, s, inf = FakeScorer.expected(row["pos"], row["ref"], row["alt"])
        assert row["fake_s"] == s and row["info.FAKE"] == inf
    assert main(["store", "import", str(b), "--parquet", str(out)]) == 0
    assert info(b)["configs"][0]["config"] == c["config"]
    hook = StoreHook(b, [sc := FakeScorer()], Genome(fa))
    for bt in batches:
        check_result(bt, hook.score(sc, bt))
    assert sc.scored == 0


def test_generic_parquet_import_is_served_with_store_use(fasta, tmp_path):
    fa, seqs = fasta
    bt = fake_batch(seqs, 50, 9)
    rows = [FakeScorer.expected(int(p), r, a) for p, r, a in zip(bt.pos1, bt.ref, bt.alt)]
    t = pa.table({"chrom": bt.chrom, "pos": bt.pos1, "ref": [r.lower() for r in bt.ref], "alt": bt.alt,
                  "status": [x[0] for x in rows], "fake_x": pa.array([x[1] for x in rows], pa.float32()),
                  "fake_n": pa.array([x[2] for x in rows], pa.int32()), "fake_s": [x[3] for x in rows]})
    src = tmp_path / "t.parquet"
    pq.write_table(t, src)
    store = tmp_path / "s"
    assert main(["store", "import", str(store), "--parquet", str(src), "-f", fa, "--name", "lab-v1",
                 "--backend", "fake"]) == 0
    (c,) = info(store)["configs"]
    assert "lab-v1" in c["description"] and c["imported"] == "t.parquet"
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa), use=[c["config"]])
    res = hook.score(sc, bt)
    assert hook.counts()["fake"]["served"] == 50
    xs = res.columns["fake_x"].to_pylist()
    assert all((x is None) == (e[1] is None) and (x is None or np.float32(x) == np.float32(e[1]))
               for x, e in zip(xs, rows))
    assert info_values(res, "FAKE") == [None] * 50  # the table had no INFO values
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))  # without --store-use: not served
    hook.score(sc, bt)
    assert hook.counts()["fake"]["served"] == 0 and sc.scored == 50


def test_spliceai_vcf_import_served_with_declared_provenance(shared_data, tmp_path):
    from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer

    p = tubb8_paths(shared_data)
    seq = open(p["fasta"]).read().split("\n", 1)[1].replace("\n", "")
    recs = [(94070, seq[94069], "A", "A|TUBB8|0.01|0.00|0.12|0.00|-3|1|2|-7"),
            (94077, seq[94076], "C", "C|TUBB8|0.00|0.05|0.00|0.00|4|-1|0|3,C|OTHER|0.20|0.00|0.00|0.00|1|1|1|1")]
    lines = ["##fileformat=VCFv4.2", '##INFO=<ID=SpliceAI,Number=.,Type=String,Description="SpliceAIv1.3">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr10\t{pos}\t.\t{ref}\t{alt}\t.\t.\tSpliceAI={s}" for pos, ref, alt, s in recs]
    vcf = tmp_path / "spliceai_scores.masked.snv.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s"
    assert main(["store", "import", str(store), "--spliceai-vcf", str(vcf), "-f", p["fasta"], "--name",
                 "spliceai-1.3-precomputed", "--distance", "10"]) == 0
    (c,) = info(store)["configs"]
    assert c["entries"] == 2
    sc = SpliceAIScorer(SpliceAIOptions(distance=10, annotation=p["annotation"]), device="cpu")
    cfg = config(p["fasta"], str(store), spliceai_distance=10, store_use=(c["config"],))
    records = [Record("chr10", pos, None, ref, (alt,)) for pos, ref, alt, _ in recs]
    table, infos, counts, _ = run_pipeline(cfg, [sc], records)
    assert counts["spliceai"]["served"] == 2 and counts["spliceai"]["computed"] == 0
    assert [i["SpliceAI"] for i in infos] == [r[3] for r in recs]
    df = pl.from_arrow(table)
    assert df["spliceai_gene"].to_list() == ["TUBB8", "OTHER"]
    assert df["spliceai_ds_max"].to_list() == pytest.approx([0.12, 0.20])
    assert df["spliceai_dp_dg"][0] == 2
    other = SpliceAIScorer(SpliceAIOptions(distance=50, annotation=p["annotation"]), device="cpu", model=sc.model)
    with pytest.raises(ConfigError, match="declared distance=10"):
        run_pipeline(config(p["fasta"], str(store), store_use=(c["config"],)), [other], records)
