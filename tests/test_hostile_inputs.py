"""Hostile inputs (issue 10, input side): broken records, headers, truncated or stale files, huge POS,
N blocks and symbolic alleles.  Each case runs the CLI on real kit records edited into a temporary
file, lookup-only (no model) so it is fast, and checks the exit code, the single ``vareff: error:``
line naming the file and line, no traceback and no output file; with ``--skip-malformed``, the rows."""
from __future__ import annotations

import os
import struct
import subprocess
import sys

import polars as pl
import pysam
import pytest

from vareff.cli import main
from vareff.normalize.alleles import is_symbolic

from engine_helpers import tubb8_paths, write_vcf

CLINVAR = "clinvar/clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"
EDITED = 10  # index of the record edited in each malformed case (a chr6 record)


@pytest.fixture(scope="module")
def clinvar(shared_data):
    """(header lines, record lines) of the ClinVar test VCF, as text without newlines."""
    with pysam.BGZFile(str(shared_data / CLINVAR), "rb") as fh:
        lines = fh.read().decode().splitlines()
    return [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]


@pytest.fixture(scope="module")
def annotation(shared_data):
    return tubb8_paths(shared_data)["annotation"]


@pytest.fixture(scope="module")
def clean_rows(clinvar, annotation, tmp_path_factory):
    """The rows of the unedited ClinVar records (a lookup-only run, as every case here)."""
    header, records = clinvar
    d = tmp_path_factory.mktemp("clean")
    (d / "clean.vcf").write_text("\n".join(header + records) + "\n")
    assert main(["score", str(d / "clean.vcf"), "-o", str(d / "clean.parquet"), "--annotation", annotation,
                 "--no-progress"]) == 0
    return pl.read_parquet(d / "clean.parquet")


def _run(capfd, annotation, inp, out, *extra):
    """``vareff score`` in this process; (exit code, stderr lines without htslib's own lines)."""
    rc = main(["score", str(inp), "-o", str(out), "--annotation", annotation, "--no-progress", *map(str, extra)])
    err = [x for x in capfd.readouterr().err.splitlines() if not x.startswith("[")]
    return rc, err


def _assert_error(rc, err, out, *needles):
    assert rc == 2
    assert "Traceback" not in "\n".join(err)
    errors = [x for x in err if x.startswith("vareff: error:")]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    assert not os.path.exists(out)
    return errors[0]


def _fields(line, i, value):
    f = line.split("\t")
    f[i] = value
    return "\t".join(f)


def _with_samples(header, records):
    fmt = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">'
    head = header[:-1] + [fmt, header[-1] + "\tFORMAT\tS1\tS2"]
    return head, [r + "\tGT\t0/1\t0/0" for r in records]


# (name, edit of one record line, extra check) -- lines htslib refuses and lines it would misread
MALFORMED = {
    "too_few_columns": (lambda r: "\t".join(r.split("\t")[:4]), "4 tab-separated columns"),
    "non_numeric_pos": (lambda r: _fields(r, 1, "X" + r.split("\t")[1]), "is not a positive integer"),
    "negative_pos": (lambda r: _fields(r, 1, "-" + r.split("\t")[1]), "is not a positive integer"),
    # (htslib keeps trailing spaces as part of a String INFO value, which changes no allele; after a
    # missing INFO, as in the Pangolin BRCA1 VCF, it refuses the line)
    "trailing_spaces": (lambda r: _fields(r, 7, ".") + "  ", "INFO '.  ' contains whitespace"),
    "trailing_space_in_alt": (lambda r: _fields(r, 4, r.split("\t")[4] + " "), "ALT"),
    "whitespace_in_chrom": (lambda r: "chr " + r, "CHROM 'chr 6' contains whitespace"),
    "space_separated": (lambda r: r.replace("\t", " "), "separated by spaces"),
    "sample_count": (lambda r: r.rsplit("\t", 1)[0], "1 sample columns but the header names 2"),
    "pos_past_int32": (lambda r: _fields(r, 1, str(2**32 + int(r.split("\t")[1]))), "2^31-1"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_stops_with_its_line_or_becomes_a_row(case, clinvar, clean_rows, annotation, tmp_path, capfd):
    header, records = clinvar
    edit, reason = MALFORMED[case]
    if case == "sample_count":
        header, records = _with_samples(header, records)
    bad = list(records)
    bad[EDITED] = edit(bad[EDITED])
    vcf = tmp_path / f"{case}.vcf"
    vcf.write_text("\n".join(header + bad) + "\n")
    out = tmp_path / "o.parquet"
    rc, err = _run(capfd, annotation, vcf, out)
    line = f"line {len(header) + EDITED + 1}:"
    _assert_error(rc, err, out, line, f"{case}.vcf", reason, "malformed VCF record")
    assert any(x.startswith("Hint:") and "--skip-malformed" in x for x in err)

    # --skip-malformed: one malformed_record row in its place, every other record as in a clean run
    rc, err = _run(capfd, annotation, vcf, tmp_path / "skip.parquet", "--skip-malformed")
    assert rc == 0 and any("malformed VCF record skipped" in x and line in x for x in err)
    got, want = pl.read_parquet(tmp_path / "skip.parquet"), clean_rows
    assert got.height == len(records) == want.height
    assert got["status"].to_list() == ["ok"] * EDITED + ["malformed_record"] + ["ok"] * (len(records) - EDITED - 1)
    assert got.row(EDITED, named=True)["pos"] is None and got.row(EDITED, named=True)["ref"] is None
    keys = ["chrom", "pos", "id", "ref", "alt", "allele_index"]
    others = lambda df: df.select(keys).with_row_index().filter(pl.col("index") != EDITED)  # noqa: E731
    assert others(got).equals(others(want))  # nothing after it is lost


def test_no_traceback_from_the_command_line(clinvar, annotation, tmp_path):
    """The same through ``python -m vareff`` in a subprocess: exit 2, one error line, no traceback."""
    header, records = clinvar
    bad = list(records)
    bad[EDITED] = "\t".join(bad[EDITED].split("\t")[:3])
    vcf = tmp_path / "cut.vcf"
    vcf.write_text("\n".join(header + bad) + "\n")
    out = tmp_path / "o.parquet"
    p = subprocess.run([sys.executable, "-m", "vareff", "score", str(vcf), "-o", str(out), "--annotation", annotation,
                        "--no-progress"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    errors = [x for x in p.stderr.splitlines() if x.startswith("vareff: error:")]
    assert len(errors) == 1 and f"line {len(header) + EDITED + 1}:" in errors[0] and "cut.vcf" in errors[0]
    assert not out.exists()


def test_vcf_without_chrom_header_line(clinvar, annotation, tmp_path, capfd):
    header, records = clinvar
    vcf = tmp_path / "nochrom.vcf"
    vcf.write_text("\n".join(header[:-1] + records) + "\n")
    out = tmp_path / "o.parquet"
    rc, err = _run(capfd, annotation, vcf, out)
    _assert_error(rc, err, out, "nochrom.vcf", "no #CHROM header line", f"line {len(header)}")


def _bgzip_blocks(path, header, records, per_block):
    """A BGZF file with the header in one block and ``per_block`` records in each further block."""
    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode())
        fh.flush()
        for i in range(0, len(records), per_block):
            fh.write(("\n".join(records[i:i + per_block]) + "\n").encode())
            fh.flush()
    data = path.read_bytes()
    starts, o = [], 0
    while o < len(data):
        starts.append(o)
        o += struct.unpack("<H", data[o + 16:o + 18])[0] + 1
    return data, starts


def test_truncated_bgzf_inputs(clinvar, annotation, tmp_path, capfd):
    header, records = clinvar
    data, starts = _bgzip_blocks(tmp_path / "full.vcf.gz", header, records, 10)
    assert len(starts) == 1 + 5 + 1  # header, 5 blocks of records, EOF marker
    # cut at a block boundary (after 2 record blocks): htslib alone reads 20 records and exits 0
    at_block = tmp_path / "at_block.vcf.gz"
    at_block.write_bytes(data[:starts[3]])
    out = tmp_path / "o.parquet"
    rc, err = _run(capfd, annotation, at_block, out)
    _assert_error(rc, err, out, "at_block.vcf.gz", "truncated", "end-of-file marker")
    assert any("--allow-truncated" in x for x in err if x.startswith("Hint:"))
    # cut inside a block
    mid = tmp_path / "mid_block.vcf.gz"
    mid.write_bytes(data[:starts[3] + 100])
    rc, err = _run(capfd, annotation, mid, out)
    _assert_error(rc, err, out, "mid_block.vcf.gz", "truncated")
    # ... and with --allow-truncated it still cannot be read past the cut: an error, not a silent stop
    rc, err = _run(capfd, annotation, mid, out, "--allow-truncated")
    _assert_error(rc, err, out, "mid_block.vcf.gz", "cannot be read past line", "corrupt or truncated")
    # opting out: the records of the complete blocks, and a warning
    rc, err = _run(capfd, annotation, at_block, tmp_path / "allowed.parquet", "--allow-truncated")
    assert rc == 0 and any("end-of-file marker" in x for x in err if "WARNING" in x)
    got = pl.read_parquet(tmp_path / "allowed.parquet")
    assert got["pos"].to_list() == [int(r.split("\t")[1]) for r in records[:20]]


def test_truncated_bgzf_from_stdin(clinvar, annotation, tmp_path):
    """htslib cannot check the end-of-file marker of a pipe: the same rule holds for `-` as for files."""
    header, records = clinvar
    data, starts = _bgzip_blocks(tmp_path / "full.vcf.gz", header, records, 10)

    def run(stream: bytes, out, *extra):
        r = subprocess.run([sys.executable, "-m", "vareff", "score", "-", "-o", str(out), "--annotation", annotation,
                            "--no-progress", *extra], input=stream, capture_output=True)
        return r.returncode, [x for x in r.stderr.decode().splitlines() if not x.startswith("[")]

    cut = data[:starts[3]]  # two record blocks and no marker
    rc, err = run(cut, tmp_path / "o.parquet")
    _assert_error(rc, err, tmp_path / "o.parquet", "from stdin", "truncated", "end-of-file marker")
    rc, err = run(cut, tmp_path / "allowed.parquet", "--allow-truncated")
    assert rc == 0 and any("end-of-file marker" in x for x in err if "WARNING" in x)
    assert pl.read_parquet(tmp_path / "allowed.parquet")["pos"].to_list() == \
        [int(r.split("\t")[1]) for r in records[:20]]
    rc, err = run(data, tmp_path / "whole.parquet")  # the complete stream: every record, no warning
    assert rc == 0 and not any("end-of-file" in x for x in err)
    assert pl.read_parquet(tmp_path / "whole.parquet").height == len(records)


def test_truncated_bcf(clinvar, shared_data, annotation, tmp_path, capfd):
    bcf = tmp_path / "in.bcf"
    with pysam.VariantFile(str(shared_data / CLINVAR)) as vin, \
            pysam.VariantFile(str(bcf), "wb", header=vin.header) as vo:
        for r in vin:
            vo.write(r)
    cut = tmp_path / "cut.bcf"
    cut.write_bytes(bcf.read_bytes()[:-28])  # without its EOF marker block
    out = tmp_path / "o.parquet"
    rc, err = _run(capfd, annotation, cut, out)
    _assert_error(rc, err, out, "cut.bcf", "truncated")


def test_stale_index(clinvar, annotation, tmp_path, capfd):
    header, records = clinvar
    vcf = tmp_path / "in.vcf"
    vcf.write_text("\n".join(header + records) + "\n")
    gz = pysam.tabix_index(str(vcf), preset="vcf", force=True)
    out = tmp_path / "o.parquet"
    rc, _ = _run(capfd, annotation, gz, out, "-r", "10:47000-48000")
    assert rc == 0 and pl.read_parquet(out)["pos"].to_list() == [47064, 47121]
    # the file is rewritten (the first 20 records dropped) and the old index kept: htslib finds nothing
    idx = gz + ".tbi"
    old = os.stat(idx).st_mtime
    data, _ = _bgzip_blocks(tmp_path / "new.vcf.gz", header, records[20:], 3)
    with open(gz, "wb") as fh:
        fh.write(data)
    os.utime(gz, (old + 10, old + 10))
    out2 = tmp_path / "o2.parquet"
    rc, err = _run(capfd, annotation, gz, out2, "-r", "10:47000-48000")
    _assert_error(rc, err, out2, "in.vcf.gz.tbi", "older than", "stale")
    assert any("tabix -f -p vcf" in x for x in err if x.startswith("Hint:"))
    # the same stale index made newer than the file (copied after it): its offsets for contig 10 now
    # land inside a block of other records
    os.utime(idx, (old + 20, old + 20))
    out3 = tmp_path / "o3.parquet"
    rc, err = _run(capfd, annotation, gz, out3, "-r", "10:47000-48000")
    _assert_error(rc, err, out3, "does not match", "in.vcf.gz", "contig 10")
    # a CSI index behaves alike
    os.remove(idx)
    vcf.write_text("\n".join(header + records) + "\n")
    gz = pysam.tabix_index(str(vcf), preset="vcf", force=True, csi=True)
    rc, _ = _run(capfd, annotation, gz, tmp_path / "csi.parquet", "-r", "10:47000-48000")
    assert rc == 0 and pl.read_parquet(tmp_path / "csi.parquet")["pos"].to_list() == [47064, 47121]
    with open(gz, "wb") as fh:
        fh.write(data)
    os.utime(gz + ".csi", (os.stat(gz).st_mtime + 5,) * 2)
    out4 = tmp_path / "o4.parquet"
    rc, err = _run(capfd, annotation, gz, out4, "-r", "10:47000-48000")
    _assert_error(rc, err, out4, "does not match", "in.vcf.gz.csi")


def test_ref_of_n_in_an_n_block(shared_data, tmp_path, capfd):
    """chr10:1-60000 of the TUBB8 test FASTA is an N block: REF N there matches but is unknown sequence."""
    p = tubb8_paths(shared_data)
    recs = [("chr10", 30000, "n_snv", "N", "A"), ("chr10", 30000, "n_del", "NNN", "N"),
            ("chr10", 94077, "real", "A", "C"), ("chr10", 30000, "mismatch", "A", "C")]
    vcf = write_vcf(tmp_path / "n.vcf", recs, contigs={"chr10": 110000})
    out = tmp_path / "o.parquet"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--annotation", p["annotation"], "-o", str(out), "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out)
    assert df.select("id", "status").rows() == [("n_snv", "n_in_window"), ("n_del", "n_in_window"),
                                                ("real", "ok"), ("mismatch", "ref_mismatch")]


SYMBOLIC = [".C", "C.", ".TGCA", "TGCA.", "<DEL>", "<INS:ME>", "<DUP:TANDEM>", "<*>", "<NON_REF>", "*",
            "G]17:198982]", "]13:123456]T", "C[2:321682[", "[17:198983[A", "A]chr17:43044295]", "N[<ctg1>:7["]


def test_symbolic_alleles(clinvar, annotation, tmp_path, capfd):
    header, records = clinvar
    base = records[EDITED].split("\t")  # C>T on chr6
    ref = base[3]
    recs = ["\t".join(base[:3] + [ref, alt] + base[5:]) for alt in SYMBOLIC]
    recs.append("\t".join(base[:3] + [ref, "T,.C,<DEL>"] + base[5:]))
    vcf = tmp_path / "sym.vcf"
    vcf.write_text("\n".join(header + recs) + "\n")
    out = tmp_path / "o.parquet"
    rc, _ = _run(capfd, annotation, vcf, out)
    assert rc == 0
    df = pl.read_parquet(out)
    assert df["alt"].to_list() == SYMBOLIC + ["T", ".C", "<DEL>"]
    assert df["status"].to_list() == ["symbolic_allele"] * len(SYMBOLIC) + ["ok", "symbolic_allele", "symbolic_allele"]
    assert all(is_symbolic(a) for a in SYMBOLIC) and not any(is_symbolic(a) for a in ("A", "ACGT", ".", "N"))


def test_consecutive_malformed_lines_keep_every_other_record(clinvar, clean_rows, annotation, tmp_path, capfd):
    """Two refused lines in a row and a misread one just after: three malformed rows, no desync."""
    header, records = clinvar
    bad = list(records)
    bad[5] = "\t".join(bad[5].split("\t")[:2])
    bad[6] = _fields(bad[6], 1, "12.5")
    bad[7] = "chr " + bad[7]
    vcf = tmp_path / "three.vcf"
    vcf.write_text("\n".join(header + bad) + "\n")
    rc, err = _run(capfd, annotation, vcf, tmp_path / "o.parquet", "--skip-malformed")
    assert rc == 0 and sum("malformed VCF record skipped" in x for x in err) == 3
    got = pl.read_parquet(tmp_path / "o.parquet")
    assert [i for i, s in enumerate(got["status"]) if s == "malformed_record"] == [5, 6, 7]
    keys = ["chrom", "pos", "ref", "alt"]
    keep = [i for i in range(len(records)) if i not in (5, 6, 7)]
    assert got[keep].select(keys).equals(clean_rows[keep].select(keys))


def test_refused_line_inside_a_region_query(clinvar, annotation, tmp_path, capfd):
    """cyvcf2's region iterator stops at a refused line, so inside -r it is an error even with --skip-malformed."""
    header, records = clinvar
    i = next(k for k, r in enumerate(records) if r.startswith("10\t"))
    bad = records[:i + 1] + ["\t".join(records[i].split("\t")[:4])] + records[i + 1:]
    vcf = tmp_path / "in.vcf"
    vcf.write_text("\n".join(header + bad) + "\n")
    gz = pysam.tabix_index(str(vcf), preset="vcf", force=True)
    out = tmp_path / "o.parquet"
    rc, err = _run(capfd, annotation, gz, out, "-r", "10", "--skip-malformed")
    _assert_error(rc, err, out, "in.vcf.gz", "record 2 of region 10", "cannot be parsed")
