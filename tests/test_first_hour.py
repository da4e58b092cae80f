"""A new user's first hour: progress, small chunks and clean interrupts, contigs that match nothing,
"scored" vs "no data", CLI habits and a discoverable Python API (lookup-only runs on kit data)."""
from __future__ import annotations

import io
import json
import logging
import os
import pydoc
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import polars as pl
import pyarrow as pa
import pytest
from rich.console import Console

import vareff
from vareff.cli import main
from vareff.config import OutputSpec, RunConfig
from vareff.engine import run as run_mod
from vareff.engine.progress import FilePosition, Progress, quick_record_count
from vareff.engine.checks import placement_problem
from vareff.engine.run import RunSummary, allele_cost, iter_chunks
from vareff.score.base import ScoreResult
from vareff.window.genome import ContigSlice, Genome

from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf, write_vcf

AM_TSV = ("alphamissense", "AlphaMissense_hg38.talos_test_excerpt.tsv.gz")
CLINVAR = ("clinvar", "clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz")


@pytest.fixture(scope="module")
def am_table(tmp_path_factory):
    from conftest import SHARED

    if not SHARED.is_dir():
        pytest.skip("shared test data not found")
    out = tmp_path_factory.mktemp("am") / "am.arrow"
    assert main(["am-build", str(SHARED.joinpath(*AM_TSV)), "-o", str(out), "-q"]) == 0
    return out


def _am_covered_vcf(shared, path, every=1000):
    """Records the AlphaMissense excerpt covers: every ``every``-th row of the kit's TSV, as a VCF."""
    am = pl.read_csv(shared.joinpath(*AM_TSV), separator="\t", skip_rows=3, infer_schema_length=0)
    rows = am.gather_every(every, offset=every - 1)
    return write_vcf(path, [(c, int(p), ".", r, a) for c, p, r, a in rows.select("#CHROM", "POS", "REF", "ALT").rows()])


# -- 1. progress -----------------------------------------------------------------------------------

def test_progress_log_lines_without_a_terminal(caplog):
    console = Console(file=io.StringIO(), force_terminal=False)
    with caplog.at_level(logging.INFO, logger="vareff"):
        p = Progress(True, total=200, interval=0.05, console=console)
        p.update(50, 80, "chr1:100")
        p.working("chr1:200")  # a long chunk in flight: heartbeats keep coming
        time.sleep(0.3)
        p.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scoring:")]
    assert len(lines) >= 2
    assert "50 / 200 records (25.0%)" in lines[-1] and "80 alleles" in lines[-1]
    assert "alleles/s" in lines[-1] and "ETA " in lines[-1] and "working for" in lines[-1]
    assert console.file.getvalue() == ""  # no bar without a terminal


def test_progress_bar_on_a_terminal():
    buf = io.StringIO()
    p = Progress(True, total=100, console=Console(file=buf, force_terminal=True, width=160), interval=0.05)
    assert p._bar is not None
    p.update(40, 60, "chr17:43044295")
    p.close()
    text = buf.getvalue()
    assert "40/100 records 40%" in text and "alleles/s" in text and "ETA" in text and "chr17:43044295" in text


def test_progress_fraction_from_bytes_read(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 1000)
    with open(f, "rb", buffering=0) as fh:
        fh.read(250)
        assert FilePosition(str(f)).fraction() == pytest.approx(0.25)
    vcf = write_vcf(tmp_path / "x.vcf", [("chr1", i, ".", "A", "C") for i in range(1, 8)])
    assert quick_record_count(str(vcf)) == 7 and quick_record_count("-") is None
    assert quick_record_count(str(vcf), max_bytes=10) is None  # large files: bytes read instead
    p = Progress(False, fraction=lambda: 0.5)
    p.update(10, 10)
    assert "10 / ~20 records (50.0%)" in p.figures() and "ETA" in p.figures()
    assert "0 / ? records" in Progress(False).figures()  # stdin: no total, no fraction


def test_cli_progress_lines_with_the_figures(shared_data, am_table, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAREFF_PROGRESS_INTERVAL", "0.01")
    monkeypatch.setattr(run_mod, "process_chunk", _slow(run_mod.process_chunk))
    assert main(["score", str(shared_data.joinpath(*CLINVAR)), "--alphamissense", str(am_table),
                 "--chunk-size", "10", "-o", str(tmp_path / "o.parquet")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "scoring:" in ln]
    assert lines and all("/ 50 records" in ln and "alleles/s" in ln and "ETA" in ln for ln in lines)  # total: index


def _slow(fn, seconds=0.03):
    def wrapped(*a, **kw):
        time.sleep(seconds)
        return fn(*a, **kw)
    return wrapped


# -- 2. chunks of about a minute, and interrupts ----------------------------------------------------

def _rec(chrom, pos, n_alt=1):
    return SimpleNamespace(CHROM=chrom, POS=pos, ALT=["A"] * n_alt, start=pos - 1, end=pos), (pos, None)


def test_chunks_close_on_estimated_model_time():
    items = [_rec("chr1", 100 + i, 1 + (i % 2)) for i in range(20)]
    sizes = lambda **kw: [len(c) for c in iter_chunks(iter(items), 1000, **kw)]  # noqa: E731
    assert sizes() == [20]
    # 20 s per allele, 60 s budget: records of 1, 2, 1, 2 ... alleles -> 20+40 = 60 closes every 2 records
    assert sizes(allele_cost=20.0) == [2] * 10
    assert sizes(allele_cost=20.0) == sizes(allele_cost=20.0)  # a pure function of the input
    assert [len(c) for c in iter_chunks(iter(items), 3, allele_cost=1.0)] == [3] * 6 + [2]  # --chunk-size wins


class _CostlyScorer:
    name = "fake"
    cost_per_allele = 60.0

    def schema(self):
        return pa.schema([])

    def info_fields(self):
        return []

    def provenance(self):
        return {"model": "fake"}

    def score(self, batch, genome):
        return ScoreResult(columns={}, status=[None] * len(batch))


def test_ray_engine_and_local_run_cut_the_same_chunks(shared_data, tmp_path, monkeypatch):
    from vareff.engine import distributed

    vcf = str(shared_data.joinpath(*CLINVAR))
    cfg = RunConfig(input=vcf, outputs=(OutputSpec(str(tmp_path / "o.parquet"), "parquet"),), models=(),
                    chunk_size=1000, progress=False)
    monkeypatch.setattr(run_mod, "build_scorers", lambda cfg: [_CostlyScorer()])
    monkeypatch.setattr(distributed, "build_scorers", lambda cfg: [_CostlyScorer()])
    written = []
    orig = run_mod.PartStore.write_chunk
    monkeypatch.setattr(run_mod.PartStore, "write_chunk",
                        lambda self, k, t, v, n, sc, *rest: (written.append(n), orig(self, k, t, v, n, sc, *rest)))
    summary = run_mod.run(cfg)
    assert summary.records == 50
    # 60 s per allele: one record per chunk (without the estimate: one chunk per contig, 2 records each)
    assert written == [1] * 50

    worker = distributed.ShardWorker(cfg, str(tmp_path / "parts"))
    cost = worker.describe()["allele_cost"]
    assert cost == allele_cost([_CostlyScorer()]) == 60.0
    chunks = distributed.plan_chunks(cfg, cost)
    assert [c.n_records for c in chunks] == written
    (tmp_path / "parts").mkdir()
    for shard in distributed.plan_shards(chunks, 4, indexed=True):  # raises if a worker cuts other chunks
        assert worker.score_shard(shard)["scored"] == shard.n_chunks


def test_sigterm_keeps_finished_chunks_and_says_how_to_resume(shared_data, am_table, tmp_path, capsys):
    # every row of the AlphaMissense excerpt as a VCF record, fed through stdin; htslib reads its
    # input in 64 kB blocks, so the run scores the first chunks, then waits for the rest
    vcf = _am_covered_vcf(shared_data, tmp_path / "am.vcf", every=1).read_text().splitlines(keepends=True)
    header, body = [ln for ln in vcf if ln.startswith("#")], [ln for ln in vcf if not ln.startswith("#")][:6000]
    out = tmp_path / "o.parquet"
    cmd = [sys.executable, "-m", "vareff", "score", "-", "--alphamissense", str(am_table), "--chunk-size", "300",
           "-o", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write("".join(header + body[:4500]))
    proc.stdin.flush()
    manifest = tmp_path / ".o.parquet.vareff-parts" / "manifest.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if json.loads(manifest.read_text())["chunks"] >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.stdin.close()  # the reader wakes up; the handler stops the run before the next chunk
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "rerun the same command with --resume" in err and "Traceback" not in err
    assert not out.exists()
    done = json.loads(manifest.read_text())["chunks"]
    assert 2 <= done < 20

    # the same command with --resume (in this process, stdin from a file): it scores only the rest
    full = tmp_path / "full.vcf"
    full.write_text("".join(header + body))
    saved, fd = os.dup(0), os.open(full, os.O_RDONLY)
    try:
        os.dup2(fd, 0)
        assert main(cmd[3:] + ["--resume"]) == 0
    finally:
        os.dup2(saved, 0)
        os.close(fd), os.close(saved)
    assert f"resuming after {done} finished chunks" in capsys.readouterr().err
    df = pl.read_parquet(out)
    assert df.height == len(body) and df["am_pathogenicity"].null_count() == 0
    assert df["pos"].to_list() == [int(ln.split("\t")[1]) for ln in body]


# -- 3. contigs -----------------------------------------------------------------------------------

def test_contig_map_keys_accept_aliases(shared_data):
    fa = brca_paths(shared_data)["fasta"]
    g = Genome(fa, contig_map=[ContigSlice.parse(f"17={BRCA_CONTIG}+{BRCA_OFFSET0}")])
    assert g.resolve("chr17") == ContigSlice("chr17", BRCA_CONTIG, BRCA_OFFSET0)
    assert g.covers("chr17", 43_044_294, 43_044_295)
    assert g.unused_map_keys(["chr17"]) == [] and g.unused_map_keys(["chr1"]) == ["17"]
    g = Genome(fa, contig_map=[ContigSlice.parse(f"chrM={BRCA_CONTIG}")])
    assert g.map_key_for("MT") == "chrM"


def _brca_lookup_run(shared_data, tmp_path, *extra):
    """A lookup-only run with the BRCA1 slice FASTA: alleles are placed (REF checked), no model."""
    p = brca_paths(shared_data)
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf")
    return main(["score", str(vcf), "-f", p["fasta"], "--annotation", p["annotation"], "--skip-malformed",
                 "--no-progress", "-o", str(tmp_path / "o.parquet"), *extra])


def test_contigs_that_match_nothing_warn_and_strict_fails(shared_data, tmp_path, capsys):
    assert _brca_lookup_run(shared_data, tmp_path) == 0
    err = capsys.readouterr().err
    assert "only 0 of 35 alleles could be placed on the FASTA" in err
    assert "VCF's contigs are chr17" in err and f"FASTA's are {BRCA_CONTIG}" in err and "--contig-map" in err
    assert "35 not placed on the FASTA" in err  # the summary
    os.unlink(tmp_path / "o.parquet")

    assert _brca_lookup_run(shared_data, tmp_path, "--strict") == 2
    err = capsys.readouterr().err
    assert "vareff: error: --strict: only 0 of 35" in err and "Hint:" in err
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / ".o.parquet.vareff-parts").exists()

    # an aliased key places them; a key naming no VCF contig is a warning
    assert _brca_lookup_run(shared_data, tmp_path, "--strict", "--contig-map", f"17={BRCA_CONTIG}+{BRCA_OFFSET0}",
                            "--contig-map", f"chr7={BRCA_CONTIG}") == 0
    err = capsys.readouterr().err
    assert "could be placed" not in err and "no contig of the VCF is named 'chr7'" in err
    assert set(pl.read_parquet(tmp_path / "o.parquet")["status"]) == {"ok", "malformed_record"}


def test_placement_problem_threshold():
    assert placement_problem({"ok": 1, "contig_not_in_fasta": 99}, ["1"], ["chr1"]) is None
    msg = placement_problem({"ok": 1, "contig_not_in_fasta": 200, "no_alt": 5}, ["1", "2"], ["chr1"])
    assert msg.startswith("only 1 of 201 alleles") and "1, 2" in msg and "chr1" in msg
    assert placement_problem({"no_alt": 3}, [], []) is None


# -- 4. scored vs no data ------------------------------------------------------------------------

def test_summary_counts_hits_and_warns_on_no_data(shared_data, am_table, tmp_path, capsys):
    assert main(["score", str(shared_data.joinpath(*CLINVAR)), "--alphamissense", str(am_table),
                 "--no-progress", "-o", str(tmp_path / "c.parquet")]) == 0
    err = capsys.readouterr().err
    assert "alphamissense: none of the 50 alleles got a value (no data)" in err
    assert "evidence: alphamissense 0 of 50" in err

    vcf = _am_covered_vcf(shared_data, tmp_path / "am.vcf")
    s = vareff.score_vcf(vcf, tmp_path / "a.parquet", alphamissense=str(am_table))
    assert s.alleles == 22 and s.hits == {"alphamissense": 22}
    assert "no data" not in capsys.readouterr().err
    assert pl.read_parquet(tmp_path / "a.parquet")["am_class"].null_count() == 0
    assert str(RunSummary(alleles=4, status_counts={"ok": 4}, hits={"annotation": 1})).endswith("annotation 1 of 4")


# -- 5. CLI habits ------------------------------------------------------------------------------

def test_global_options_before_or_after_the_subcommand(capsys):
    from vareff.cli import build_parser

    parse = build_parser().parse_args
    for argv in (["-q", "score", "x.vcf", "-o", "o.parquet"], ["score", "x.vcf", "-o", "o.parquet", "-q"]):
        assert parse(argv).quiet is True
    assert parse(["score", "x.vcf", "-o", "o.parquet", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert parse(["--log-level", "ERROR", "score", "x.vcf", "-o", "o.parquet"]).log_level == "ERROR"
    assert parse(["models", "-v"]).verbose is True
    with pytest.raises(SystemExit) as e:
        parse(["-V"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("vareff ")


@pytest.mark.parametrize("argv, says", [
    (["score", "x.vcf", "-o", "o.parquet", "--threads", "0"], "--threads: 0 is not allowed"),
    (["score", "x.vcf"], "the following arguments are required: -o/--output"),
    (["scroe"], "invalid choice: 'scroe'"),
])
def test_argparse_errors_have_the_vareff_shape(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("vareff: error: ") and says in err and "\nHint: " in err


def test_the_api_rejects_threads_zero_and_strict_on_ray(tmp_path):
    outs = (OutputSpec(str(tmp_path / "o.parquet"), "parquet"),)
    with pytest.raises(vareff.VareffError, match="--threads 0"):
        RunConfig(input="x.vcf", outputs=outs, models=(), threads=0)
    with pytest.raises(vareff.VareffError, match="--strict is checked by the local engine"):
        RunConfig(input="x.vcf", outputs=outs, models=(), engine="ray", strict=True)


def test_am_build_ends_with_a_readable_summary(shared_data, tmp_path, capsys):
    assert main(["am-build", str(shared_data.joinpath(*AM_TSV)), "-o", str(tmp_path / "t.arrow"), "--no-progress"]) == 0
    done = [ln for ln in capsys.readouterr().err.splitlines() if "done:" in ln]
    assert len(done) == 1 and "BuildStats(" not in done[0]
    assert "22,066 rows (hg38, canonical layout" in done[0] and "chr16 7,613" in done[0]


# -- 8. the Python API is discoverable ------------------------------------------------------------

def test_python_api_is_discoverable():
    names = {"score_vcf", "score_variants", "load_model", "calibrate_vcf"}
    assert names <= set(dir(vareff)) and names <= set(vareff.__all__)
    text = pydoc.render_doc(vareff, renderer=pydoc.plaintext)
    assert all(n in text for n in names)
    doc = vareff.score_vcf.__doc__
    assert all(f in doc for f in ("RunSummary", "status_counts", "hits", "not_placed", "outputs"))
    assert callable(vareff.calibrate_vcf)
