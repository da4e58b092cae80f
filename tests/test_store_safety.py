"""Score store safety: concurrent writers, SIGKILL mid-write, corrupt files, foreign versions, a full
disk, --resume with the store, and Ray workers sharing one store."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import vareff
import vareff.engine.run as engine_run
import vareff.store.folder as store_folder
import vareff.store.key as store_key
from store_helpers import FakeScorer, check_result, fake_batch, random_seq, write_fasta
from vareff.store.hook import StoreHook
from vareff.store.segments import SEGMENT_GLOB, read_segment
from vareff.window.genome import Genome

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("store_genome")
    seqs = {"chrA": random_seq(2_100_000, 1), "chrB": random_seq(50_000, 2)}
    return write_fasta(d / "g.fa", seqs), seqs


def _writer(store, fa, seed, batches, pool):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS)] + sys.path))
    return subprocess.Popen([sys.executable, str(TESTS / "store_writer.py"), str(store), fa, str(seed), str(batches),
                             str(pool)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _all_entries(store: Path) -> pl.DataFrame:
    """Every segment must read whole; returns all entries."""
    frames = []
    for p in sorted(store.glob(f"data/*/*/*/{SEGMENT_GLOB}")):
        t, meta = read_segment(p)
        frames.append(pl.from_arrow(t).with_columns(pl.lit(meta["contig"]).alias("contig")))
    return pl.concat(frames) if frames else pl.DataFrame()


def _check_entries(df: pl.DataFrame) -> None:
    for row in df.iter_rows(named=True):
        st, x, k, s, inf = FakeScorer.expected(row["pos"], row["ref"], row["alt"])
        assert row["status"] == st and row["info.FAKE"] == inf and row["fake_s"] == s
        assert (row["fake_x"] is None) if x is None else np.float32(row["fake_x"]) == np.float32(x)


def test_two_concurrent_writers_leave_a_consistent_store(fasta, tmp_path):
    fa, seqs = fasta
    store = tmp_path / "store"
    procs = [_writer(store, fa, seed, 6, 400) for seed in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "ok" in out
    df = _all_entries(store)
    _check_entries(df)
    # a third client sees every entry: all of both writers' alleles are hits
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    for seed in (1, 2):
        for b in range(6):
            batch = fake_batch(seqs, 300, seed * 100_000 + b, pool=400)
            check_result(batch, hook.score(sc, batch))
    assert hook.counts()["fake"]["computed"] == 0 and sc.scored == 0


def test_sigkill_mid_write_leaves_a_readable_store_without_partial_entries(fasta, tmp_path):
    fa, seqs = fasta
    store = tmp_path / "store"
    for delay in (0.0, 0.3):
        p = _writer(store, fa, 7 + int(delay * 10), -1, 0)  # writes new segments until killed
        assert p.stdout.readline().strip() == "running"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    df = _all_entries(store)  # raises if any visible segment is not whole
    assert df.height > 0
    _check_entries(df)
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    batch = fake_batch(seqs, 300, 7 * 100_000, pool=None)
    check_result(batch, hook.score(sc, batch))
    assert hook.counts()["fake"]["served"] > 0


def test_corrupt_and_truncated_files_are_reported_by_name_and_skipped(fasta, tmp_path, caplog):
    fa, seqs = fasta
    store = tmp_path / "store"
    sc = FakeScorer()
    batches = [fake_batch(seqs, 200, s) for s in range(3)]
    hook = StoreHook(store, [sc], Genome(fa))
    for b in batches:
        hook.score(sc, b)
    segs = sorted(store.glob(f"data/*/*/*/{SEGMENT_GLOB}"), key=lambda p: p.stat().st_size)
    truncated, flipped = segs[-1], segs[-2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a data page: the page CRC catches it
    flipped.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, "vareff")
    hook = StoreHook(store, [sc2 := FakeScorer()], Genome(fa))
    for b in batches:
        check_result(b, hook.score(sc2, b))
    text = caplog.text
    assert str(truncated) in text and str(flipped) in text
    assert 0 < hook.counts()["fake"]["computed"] < 600


def test_store_of_another_format_or_score_definitions_is_ignored_with_a_warning(fasta, tmp_path, caplog, monkeypatch):
    fa, seqs = fasta
    caplog.set_level(logging.WARNING, "vareff")
    store = tmp_path / "store"
    batch = fake_batch(seqs, 100, 3)
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    hook.score(sc, batch)
    monkeypatch.setitem(store_key.DEFINITIONS, "fake", 99)  # this vareff defines the scores anew
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    check_result(batch, hook.score(sc, batch))
    assert hook.counts()["fake"]["served"] == 0 and "score definitions" in caplog.text
    head = store / "STORE.json"
    head.write_text(json.dumps({"format": 999}))
    before = sorted(p.name for p in store.rglob("*"))
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    check_result(batch, hook.score(sc, batch))
    assert hook.counts()["fake"]["served"] == 0 and "format 999" in caplog.text
    assert sorted(p.name for p in store.rglob("*")) == before  # nothing added


def _vcf(path: Path, seqs: dict[str, str], n: int) -> Path:
    rng = np.random.default_rng(0)
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chrA,length=2100000>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in sorted(rng.choice(1_900_000, n, replace=False) + 1000):
        r = seqs["chrA"][p - 1]
        lines.append(f"chrA\t{p}\t.\t{r}\t{'A' if r != 'A' else 'G'}\t.\t.\t.")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_full_disk_while_writing_back_loses_no_output(fasta, tmp_path, monkeypatch, caplog):
    fa, seqs = fasta
    vcf = _vcf(tmp_path / "in.vcf", seqs, 60)
    monkeypatch.setattr(engine_run, "build_scorers", lambda cfg: [FakeScorer()])

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_folder, "write_segment", full)
    caplog.set_level(logging.WARNING, "vareff")
    s = vareff.score_vcf(vcf, [tmp_path / "o.parquet", tmp_path / "o.vcf"], fasta=fa, models=["fake"],
                         store=tmp_path / "store", chunk_size=20)
    assert s.alleles == 60 and "No space left" in caplog.text
    df = pl.read_parquet(tmp_path / "o.parquet")
    assert df.height == 60 and df["fake_s"].null_count() == (df["fake_status"] == "outside_gene").sum()
    assert sum(1 for x in (tmp_path / "o.vcf").read_text().splitlines() if not x.startswith("#")) == 60


def test_resume_and_store_work_together(fasta, tmp_path, monkeypatch):
    fa, seqs = fasta
    vcf = _vcf(tmp_path / "in.vcf", seqs, 60)
    monkeypatch.setattr(engine_run, "build_scorers", lambda cfg: [FakeScorer()])
    full = tmp_path / "full.parquet"
    vareff.score_vcf(vcf, full, fasta=fa, models=["fake"], chunk_size=20, store="")
    from vareff.write.parts import PartStore

    real = PartStore.write_chunk

    def dies_at_chunk_2(self, k, *a, **kw):
        if k == 2:
            raise KeyboardInterrupt  # killed after chunk 2 was scored (and stored), before it was written
        return real(self, k, *a, **kw)

    out, store = tmp_path / "o.parquet", tmp_path / "store"
    monkeypatch.setattr(PartStore, "write_chunk", dies_at_chunk_2)
    with pytest.raises(KeyboardInterrupt):
        vareff.score_vcf(vcf, out, fasta=fa, models=["fake"], chunk_size=20, store=store)
    monkeypatch.setattr(PartStore, "write_chunk", real)
    s = vareff.score_vcf(vcf, out, fasta=fa, models=["fake"], chunk_size=20, store=store, resume=True)
    assert pl.read_parquet(out).equals(pl.read_parquet(full))
    served = s.store["fake"]["served"]  # chunk 2, scored and stored before the kill, is served
    assert served > 0 and s.store["fake"]["added"] == s.store["fake"]["computed"]
    meta = json.loads(pq.read_schema(out).metadata[b"vareff"])
    assert meta["store"]["fake"]["served"] == served


def test_store_info_compact_prune(fasta, tmp_path, capsys):
    from vareff.cli import main
    from vareff.store.admin import info

    fa, seqs = fasta
    store = tmp_path / "store"
    batches = [fake_batch(seqs, 100, s, pool=50) for s in range(4)]
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    for b in batches:
        hook.score(sc, b)
    reader = StoreHook(store, [sc2 := FakeScorer()], Genome(fa))
    check_result(batches[0], reader.score(sc2, batches[0]))  # a reader with every partition in memory
    d = info(store)
    (c,) = d["configs"]
    unique = len({(ch, int(p), r, a) for b in batches for ch, p, r, a in zip(b.chrom, b.pos1, b.ref, b.alt)})
    assert c["entries"] == unique and set(c["contigs"]) == {"chrA", "chrB"} and c["segments"] > 3
    assert d["runs"][-1]["served"] > 0
    assert main(["store", "compact", str(store)]) == 0
    d2 = info(store)
    assert d2["configs"][0]["entries"] == unique and d2["configs"][0]["segments"] == 4  # one per partition
    for b in batches:  # the reader sees the compacted store (its old files vanished) with the same results
        check_result(b, reader.score(sc2, b))
    assert reader.counts()["fake"]["computed"] == 0
    assert main(["store", "info", str(store)]) == 0
    assert "chrA" in capsys.readouterr().out
    assert main(["store", "prune", str(store), "--config", c["config"]]) == 0
    assert info(store)["configs"] == []


def test_read_only_store_is_still_read(fasta, tmp_path, monkeypatch, caplog):
    fa, seqs = fasta
    store = tmp_path / "store"
    batch = fake_batch(seqs, 100, 5)
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    hook.score(sc, batch)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store_folder, "atomic_write_text", denied)
    monkeypatch.setattr(store_folder, "write_segment", denied)
    caplog.set_level(logging.WARNING, "vareff")
    hook = StoreHook(store, [sc := FakeScorer(salt="1")], Genome(fa))  # a new configuration: cannot be recorded
    check_result(batch, hook.score(sc, batch))
    assert "Permission denied" in caplog.text and not hook.writable
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))  # the stored one is served
    check_result(batch, hook.score(sc, batch))
    assert hook.counts()["fake"]["served"] == 100
