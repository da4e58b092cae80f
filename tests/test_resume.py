"""Nothing lost: atomic outputs, and --resume after a kill gives the rows of an uninterrupted run."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import polars as pl
import pytest

import vareff
from vareff.errors import ResumeError

from engine_helpers import brca_paths, shifted_pangolin_vcf


def _cmd(shared, vcf, out, *extra):
    p = brca_paths(shared)
    # one torch thread: every run computes the same floats, and a busy machine is not oversubscribed
    return [sys.executable, "-m", "vareff", "score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"],
            "--spliceai-annotation", p["annotation"], "--spliceai-distance", "20", "--skip-malformed",
            "--chunk-size", "2", "--threads", "1", "-o", str(out), "--no-progress", *extra]


def _finished_chunks(manifest) -> int:
    try:
        return json.loads(manifest.read_text())["chunks"]
    except (OSError, ValueError, KeyError):  # not written yet
        return 0


def _wait_until(cond, proc, what: str, timeout: float = 900) -> None:
    """Poll ``cond`` until it holds; fail (not kill at a random point) if the run ends or hangs first."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.02)


N_RECORDS, N_CHUNKS = 9, 5  # the malformed first record and 8 SNVs, 2 records a chunk


def test_resume_after_kill_gives_the_same_rows(shared_data, tmp_path):
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf", records=N_RECORDS)
    ref_out = tmp_path / "full.parquet"
    subprocess.run(_cmd(shared_data, vcf, ref_out), check=True)
    assert pl.read_parquet(ref_out).height == N_RECORDS

    out = tmp_path / "killed.parquet"
    manifest = tmp_path / ".killed.parquet.vareff-parts" / "manifest.json"
    proc = subprocess.Popen(_cmd(shared_data, vcf, out))
    try:
        _wait_until(lambda: _finished_chunks(manifest) >= 2, proc, "two finished chunks")
    finally:
        proc.kill()  # SIGKILL mid-run (the next chunk takes a SpliceAI pass); a no-op if it has ended
        proc.wait()
    assert not out.exists(), "a killed run must not leave a final output"
    done = _finished_chunks(manifest)
    assert 2 <= done < N_CHUNKS

    # without --resume the finished work is protected
    r = subprocess.run(_cmd(shared_data, vcf, out), capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr

    subprocess.run(_cmd(shared_data, vcf, out, "--resume"), check=True)
    assert pl.read_parquet(out).equals(pl.read_parquet(ref_out))
    assert not manifest.parent.exists()


def test_resume_refuses_other_options(shared_data, tmp_path):
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf")
    out = tmp_path / "o.parquet"
    parts = tmp_path / ".o.parquet.vareff-parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"fingerprint": "other", "chunks": 1, "records": 3,
                                                     "status_counts": {}}))
    p = brca_paths(shared_data)
    with pytest.raises(ResumeError, match="other inputs or options"):
        vareff.score_vcf(vcf, out, fasta=p["fasta"], contig_map=[p["contig_map"]], resume=True,
                         spliceai_annotation=p["annotation"], skip_malformed=True)
