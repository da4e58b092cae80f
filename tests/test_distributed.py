"""--engine ray: shards scored by Ray actors give the single-process files byte for byte; a killed
worker's shard is retried; failing shards are reported and --resume rescores only what is missing.

The tests start one small local Ray instance (2 CPUs, no dashboard) for the module.  Runs compare
with a single-process run with the same ``threads`` (float results of CPU kernels depend on the
torch thread count, so byte identity holds for equal ``threads``; see docs/scale-out.md).
"""
from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import pysam
import pytest

import vareff
from vareff.config import OutputSpec, RunConfig
from vareff.errors import MissingDependencyError

from engine_helpers import brca_paths, shifted_pangolin_vcf, write_vcf

ray = pytest.importorskip("ray")

from vareff.engine import distributed  # noqa: E402
from vareff.engine.distributed import ShardsFailedError, plan_chunks, plan_shards  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _same_files(a: list[Path], b: list[Path]) -> None:
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), f"{x.name} differs from {y.name}"


def _outputs(tmp: Path, stem: str, exts=("parquet", "vcf.gz", "vcf", "tsv")) -> list[Path]:
    return [tmp / f"{stem}.{e}" for e in exts]


def _dense_vcf(tmp: Path) -> Path:
    """A sorted, bgzipped, indexed VCF over three contigs with blocks denser than a chunk, a
    deletion that starts before a 1 Mb block boundary and reaches into the next block, and
    multi-allelic records; lookup-only runs need no FASTA, so the alleles are random."""
    rng = random.Random(6)
    recs = []
    for chrom, spans in [("chr1", [(1_000, 900_000, 60), (2_000_100, 2_300_000, 25), (3_000_000, 3_999_999, 40)]),
                         ("chr2", [(5_000, 80_000, 12)]), ("chrX", [(10_000_000, 12_500_000, 15)])]:
        for lo, hi, n in spans:
            for pos in sorted(rng.randint(lo, hi) for _ in range(n)):
                ref = rng.choice("ACGT")
                alt = ",".join(rng.sample([b for b in "ACGT" if b != ref], rng.choice([1, 1, 2])))
                recs.append((chrom, pos, f"r{len(recs)}", ref, alt))
        if chrom == "chr1":  # overlaps block 1 but starts in block 0
            recs.append(("chr1", 999_998, "span", "ACGTAC", "A"))
    recs.sort(key=lambda r: (["chr1", "chr2", "chrX"].index(r[0]), r[1]))
    plain = write_vcf(tmp / "dense.vcf", recs, contigs={"chr1": 5_000_000, "chr2": 1_000_000, "chrX": 20_000_000})
    gz = tmp / "dense.vcf.gz"
    pysam.tabix_compress(str(plain), str(gz))
    pysam.tabix_index(str(gz), preset="vcf")
    return gz


def test_without_ray_the_engine_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, ".", "A", "C")])
    with pytest.raises(MissingDependencyError, match=r"vareff\[ray\]"):
        vareff.score_vcf(vcf, tmp_path / "o.parquet", models=[], engine="ray")
    from vareff.cli import main

    assert main(["score", str(vcf), "-f", "ref.fa", "-o", str(tmp_path / "o.parquet"), "--engine", "ray"]) == 2
    assert "pip install 'vareff[ray]'" in capsys.readouterr().err


def test_shards_cut_the_single_process_chunks(tmp_path):
    gz = _dense_vcf(tmp_path)
    cfg = RunConfig(input=str(gz), outputs=(OutputSpec("x.parquet", "parquet"),),
                    models=(), chunk_size=8)
    chunks = plan_chunks(cfg)
    shards = plan_shards(chunks, 7, indexed=True)
    assert len(shards) == 7
    assert [s.first_chunk for s in shards] == sorted(s.first_chunk for s in shards)
    assert sum(s.n_chunks for s in shards) == len(chunks) and sum(s.n_records for s in shards) == 153
    assert any(s.segments[0].skip > 0 for s in shards), "some shard should start inside a dense block"
    assert any(len(s.segments) > 1 for s in shards), "some shard should span two contigs"


@pytest.mark.parametrize("name", ["idx", pytest.param("plain", marks=pytest.mark.slow),
                                  pytest.param("regions", marks=pytest.mark.slow)])  # idx: the fast run's case
def test_ray_output_is_the_single_process_output_model_free(ray_local, tmp_path, name):
    """Indexed input (shards through the index), the same file unindexed (record ranges), and -r regions."""
    gz = _dense_vcf(tmp_path)
    plain = tmp_path / "dense.vcf"
    kw = dict(models=[], chunk_size=8, command="vareff score (test)")
    inp, extra = {"idx": (gz, {}), "plain": (plain, {}),
                  "regions": (gz, {"regions": ["chr1:500000-3500000", "chrX"]})}[name]
    ref, got = _outputs(tmp_path, f"{name}_local"), _outputs(tmp_path, f"{name}_ray")
    s1 = vareff.score_vcf(inp, ref, **kw, **extra)
    s2 = vareff.score_vcf(inp, got, engine="ray", shards=7, **kw, **extra)
    assert s2.records == s1.records and s2.status_counts == s1.status_counts
    assert s2.chunks_scored > 1 and s2.shards > 2
    _same_files(ref + [tmp_path / f"{name}_local.vcf.gz.tbi"], got + [tmp_path / f"{name}_ray.vcf.gz.tbi"])
    if name == "plain":
        assert s1.records == 153


@pytest.mark.slow  # the Python API path runs Ray in the fast suite (killed-worker and model-free tests)
def test_cli_engine_ray(ray_local, shared_data, tmp_path):
    """The CLI path (a lookup-only run): Parquet content and VCF records equal (the recorded command differs)."""
    import polars as pl

    from vareff.cli import main

    gz = _dense_vcf(tmp_path)
    base = ["score", str(gz), "--chunk-size", "5", "--no-progress", "--annotation", brca_paths(shared_data)["annotation"]]
    assert main(base + ["-o", str(tmp_path / "a.parquet"), "-o", str(tmp_path / "a.vcf")]) == 0
    assert main(base + ["-o", str(tmp_path / "b.parquet"), "-o", str(tmp_path / "b.vcf"),
                        "--engine", "ray", "--shards", "3"]) == 0
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))
    body = lambda p: [x for x in p.read_text().splitlines() if not x.startswith("##vareffCommand")]  # noqa: E731
    assert body(tmp_path / "a.vcf") == body(tmp_path / "b.vcf")


# --- the real SpliceAI model on the BRCA1 slice (13 records, one malformed) ---------------------

N_RECORDS, N_CHUNKS = 13, 7  # the malformed first record has a chunk of its own; 12 SNVs, 2 a chunk


def _spliceai_kw(shared):
    p = brca_paths(shared)
    return dict(fasta=p["fasta"], contig_map=[p["contig_map"]], spliceai_annotation=p["annotation"],
                spliceai_distance=20, skip_malformed=True, chunk_size=2, threads=1, command="vareff score (test)")


@pytest.fixture(scope="module")
def spliceai_reference(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spliceai_ref")
    vcf = shifted_pangolin_vcf(shared_data, tmp / "brca.vcf", records=N_RECORDS)
    outs = _outputs(tmp, "local", ("parquet", "vcf.gz"))
    vareff.score_vcf(vcf, outs, **_spliceai_kw(shared_data))
    return vcf, outs


@pytest.mark.slow  # the killed-worker test below checks the same bytes (after a retry) in the default run
def test_ray_output_is_the_single_process_output_spliceai(ray_local, shared_data, spliceai_reference, tmp_path):
    vcf, ref = spliceai_reference
    got = _outputs(tmp_path, "ray", ("parquet", "vcf.gz"))
    s = vareff.score_vcf(vcf, got, engine="ray", shards=4, **_spliceai_kw(shared_data))
    assert s.status_counts == {"ok": N_RECORDS - 1, "malformed_record": 1} and s.workers == 2 and not s.retried
    _same_files(ref, got)


def _busy_workers(psutil) -> list:
    """This test's Ray worker processes that are scoring a shard.  Only descendants of this process
    (the local Ray instance of ``ray_local``): another Ray session on the machine is left alone."""
    busy = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("ShardWorker.score_shard" in c for c in p.cmdline()):
                busy.append(p)
        except psutil.Error:  # ended meanwhile
            pass
    return busy


def _kill_a_busy_worker(parts: Path, stop: threading.Event, killed: list) -> None:
    """Once a chunk is finished (the first shards are running, more wait), SIGKILL a worker that is
    scoring a shard.  Waits on those two conditions, however slow the machine."""
    import psutil

    while not stop.is_set():
        if any(parts.glob("*.done.json")):
            for p in _busy_workers(psutil):
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    continue
                killed.append(p.pid)
                return
        time.sleep(0.02)


def _run_with_a_kill(vcf, outs, kw):
    pytest.importorskip("psutil")  # installed with ray[default]; finds the worker processes
    parts = outs[0].with_name(f".{outs[0].name}.vareff-parts")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(parts, stop, killed), daemon=True)
    killer.start()
    try:
        return vareff.score_vcf(vcf, outs, engine="ray", shards=4, **kw), killed
    finally:
        stop.set()
        killer.join()


def test_killed_worker_is_replaced_and_its_shard_retried(ray_local, shared_data, spliceai_reference, tmp_path):
    vcf, ref = spliceai_reference
    got = _outputs(tmp_path, "ray", ("parquet", "vcf.gz"))
    s, killed = _run_with_a_kill(vcf, got, _spliceai_kw(shared_data))
    assert killed, "no worker was caught scoring"
    assert len(s.retried) == 1 and "worker died" in s.retried[0] and "chr17:" in s.retried[0]
    assert s.status_counts == {"ok": N_RECORDS - 1, "malformed_record": 1} and s.workers == 2
    _same_files(ref, got)


@pytest.mark.slow  # resume of a local run is in the fast suite (tests/test_resume.py)
def test_shard_lost_with_its_worker_then_resume_scores_only_the_missing_chunks(
        ray_local, shared_data, spliceai_reference, tmp_path, monkeypatch):
    vcf, ref = spliceai_reference
    got = _outputs(tmp_path, "ray", ("parquet", "vcf.gz"))
    kw = _spliceai_kw(shared_data)
    monkeypatch.setattr(distributed, "SHARD_RETRIES", 0)  # no retry: the killed worker's shard fails
    with pytest.raises(ShardsFailedError, match=r"1 of 4 shards failed[\s\S]*chr17:\d+-\d+[\s\S]*worker died"):
        _run_with_a_kill(vcf, got, kw)
    assert not got[0].exists()
    parts = got[0].with_name(f".{got[0].name}.vareff-parts")
    finished = len(list(parts.glob("*.done.json")))
    assert 0 < finished < N_CHUNKS
    monkeypatch.undo()
    s = vareff.score_vcf(vcf, got, engine="ray", shards=4, resume=True, **kw)
    assert s.chunks_reused == finished and s.chunks_scored == N_CHUNKS - finished
    _same_files(ref, got)
    assert not parts.exists()


@pytest.mark.slow  # the killed-worker test keeps the retry path in the fast suite
def test_failing_shard_is_reported_while_the_others_finish(ray_local, shared_data, tmp_path):
    """A malformed record (line 30) fails its shard on every attempt; the other shards finish and
    a rerun with --resume tries only that shard again."""
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf")
    out = tmp_path / "o.parquet"
    parts = tmp_path / ".o.parquet.vareff-parts"
    kw = dict(models=[], chunk_size=3, engine="ray", shards=4)
    pattern = r"1 of 4 shards failed after 3 attempts:\n  shard 0 \(chr17:[^;]+; chunks 0-3, [^:]+: MalformedRecordError: line 30: malformed"
    with pytest.raises(ShardsFailedError, match=pattern):
        vareff.score_vcf(vcf, out, **kw)
    assert not out.exists()
    kept = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.done.json")}
    assert sorted(kept) == [f"{k:08d}.done.json" for k in range(4, 13)]
    with pytest.raises(ShardsFailedError, match=pattern):
        vareff.score_vcf(vcf, out, resume=True, **kw)
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("*.done.json")} == kept


def test_options_the_ray_engine_cannot_honour_are_refused(ray_local, tmp_path):
    from vareff.errors import ConfigError

    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, ".", "A", "C")])
    with pytest.raises(ConfigError, match="cannot read stdin"):
        vareff.score_vcf("-", tmp_path / "o.parquet", models=[], engine="ray")
    with pytest.raises(ConfigError, match="more CPUs per worker than the Ray cluster has"):
        vareff.score_vcf(vcf, tmp_path / "o.parquet", models=[], engine="ray", threads=4)
    with pytest.raises(ConfigError, match="apply to the Ray engine"):
        vareff.score_vcf(vcf, tmp_path / "o.parquet", models=[], shards=3)
