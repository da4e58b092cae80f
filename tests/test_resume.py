"""Nothing lost: atomic outputs, and --resume after a kill gives the rows of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
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
    return [sys.executable, "-m", "vareff", "score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"],
            "--spliceai-annotation", p["annotation"], "--spliceai-distance", "20", "--skip-malformed",
            "--chunk-size", "3", "-o", str(out), "--no-progress", *extra]


def test_resume_after_kill_gives_the_same_rows(shared_data, tmp_path):
    vcf = shifted_pangolin_vcf(shared_data, tmp_path / "brca.vcf")
    ref_out = tmp_path / "full.parquet"
    subprocess.run(_cmd(shared_data, vcf, ref_out), check=True)

    out = tmp_path / "killed.parquet"
    manifest = tmp_path / ".killed.parquet.vareff-parts" / "manifest.json"
    proc = subprocess.Popen(_cmd(shared_data, vcf, out))
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if json.loads(manifest.read_text())["chunks"] >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run must not leave a final output"
    done = json.loads(manifest.read_text())["chunks"]
    assert 2 <= done < 12

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
