"""The command line: subcommands, exit codes, error messages, the end-of-run summary."""
from __future__ import annotations

import subprocess
import sys

import polars as pl

from vareff.cli import main

from engine_helpers import tubb8_paths, write_vcf


def test_models_lists_backends(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "spliceai" in out and "bert" in out


def test_python_m_version():
    r = subprocess.run([sys.executable, "-m", "vareff", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("vareff ")


def test_errors_exit_nonzero_with_a_hint(tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing.vcf"), "-o", str(tmp_path / "o.parquet"), "-f", "x.fa"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Hint:" in err
    vcf = write_vcf(tmp_path / "in.vcf", [("chr10", 94077, ".", "A", "C")])
    assert main(["score", str(vcf), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "needs the reference FASTA" in capsys.readouterr().err
    assert main(["score", str(vcf), "-f", "x.fa", "-m", "no_such_model", "-o", str(tmp_path / "o.parquet")]) == 2


def test_score_logs_progress_and_summary(shared_data, tmp_path):
    p = tubb8_paths(shared_data)
    vcf = write_vcf(tmp_path / "in.vcf", [("chr10", 94077, ".", "A", "C,T"), ("chr10", 94078, ".", "G", "A")])
    out = tmp_path / "o.tsv"
    r = subprocess.run([sys.executable, "-m", "vareff", "--log-level", "INFO", "score", str(vcf), "-f", p["fasta"],
                        "--spliceai-annotation", p["annotation"], "--spliceai-distance", "5", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "done: 2 records, 3 alleles" in r.stderr and "alleles/s" in r.stderr and "ok 2, ref_mismatch 1" in r.stderr
    df = pl.read_csv(out, separator="\t", null_values=".", comment_prefix="#")
    assert df["status"].to_list() == ["ok", "ok", "ref_mismatch"]


def test_model_option_flags_reach_the_backends():
    from vareff.cli import build_parser, model_options

    args = build_parser().parse_args(["score", "in.vcf", "-o", "o.parquet", "--segmentnt-k", "50",
                                      "--model-option", "grover.window=800", "--model-option", "nt.stride=3000",
                                      "--profiles", "p.parquet"])
    assert model_options(args) == {"grover.window": 800, "nt.stride": 3000, "segmentnt.k": 50,
                                   "segmentnt.profiles": "p.parquet"}
