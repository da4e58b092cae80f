"""Outputs that cannot be lost or mixed up: clear write errors (directory, read-only folder, full
disk) that stay resumable, one writer per output (a lock; a killed run's lock taken over by
--resume), streaming to stdout/FIFOs without renaming over them, provenance in every format,
reader-sized Parquet row groups, and a sorted, indexed .vcf.gz of unsorted input.

Fast lookup-only runs (``--annotation`` with the kit's Ensembl GFF3 excerpt, no FASTA) on the kit's
ClinVar VCF (50 records on 25 contigs)."""
from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pysam
import pytest

from vareff.cli import main

CLINVAR = "clinvar/clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"
GFF = "annotation/Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz"


@pytest.fixture(scope="module")
def kit(shared_data):
    return {"vcf": str(shared_data / CLINVAR), "gff": str(shared_data / GFF)}


def _args(kit, vcf, *outs, extra=()):
    a = ["score", str(vcf), "--annotation", kit["gff"], "--no-progress", *extra]
    for o in outs:
        a += ["-o", str(o)]
    return a


@pytest.fixture(scope="module")
def reference(kit, tmp_path_factory):
    """An undisturbed run: Parquet, VCF and TSV written to regular files."""
    d = tmp_path_factory.mktemp("ref")
    outs = [d / "ref.parquet", d / "ref.vcf", d / "ref.tsv"]
    assert main(_args(kit, kit["vcf"], *outs, extra=["--chunk-size", "3"])) == 0
    return {"parquet": pl.read_parquet(outs[0]), "vcf": outs[1], "tsv": outs[2]}


def _records(path) -> list[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [ln for ln in fh if not ln.startswith("#")]


def _no_command(text: str) -> list[str]:
    """Lines of a text output but the recorded command (which names the output paths)."""
    return [ln for ln in text.splitlines() if not ln.startswith("##vareffCommand")]


def _one_error(err: str, *needles: str) -> None:
    """Exactly one ``vareff: error:`` line (a Hint may follow), no traceback, every needle present."""
    assert "Traceback" not in err, err
    assert sum(ln.startswith("vareff: error:") for ln in err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str, ro: bool = False):
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --- 10.2: write failures end in one clear error, and stay resumable ---------------------------

def test_output_is_a_directory_or_in_a_missing_folder(kit, tmp_path, capsys):
    (tmp_path / "d.parquet").mkdir()
    assert main(_args(kit, kit["vcf"], tmp_path / "d.parquet")) == 2
    _one_error(capsys.readouterr().err, "is an existing directory", str(tmp_path / "d.parquet"), "Hint:")
    assert main(_args(kit, kit["vcf"], tmp_path / "nope" / "o.parquet")) == 2
    _one_error(capsys.readouterr().err, "does not exist", str(tmp_path / "nope"))


def test_output_folder_not_writable(kit, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permissions: use a read-only filesystem
        ctx = _tmpfs(tmp_path / "ro", "1m", ro=True)
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        ctx = contextlib.nullcontext(tmp_path / "ro")
    with ctx as folder:
        assert main(_args(kit, kit["vcf"], folder / "o.parquet")) == 2
    _one_error(capsys.readouterr().err, "not writable", str(folder))


def test_full_disk_then_resume_gives_the_full_output(kit, reference, tmp_path, capsys):
    """A real 1 MB tmpfs, filled up: one error naming the path, exit 2; after freeing space,
    --resume writes the same rows as an undisturbed run."""
    with _tmpfs(tmp_path / "small", "1m") as fs:
        filler = fs / "filler"
        with open(filler, "wb", buffering=0) as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        out = fs / "o.parquet"
        args = _args(kit, kit["vcf"], out, fs / "o.vcf", extra=["--chunk-size", "3"])
        assert main(args) == 2
        _one_error(capsys.readouterr().err, "No space left on device", str(fs), "Hint:")
        assert not out.exists() and not list(fs.glob("*.tmp-*"))
        filler.unlink()
        assert main(args + ["--resume"]) == 0
        assert pl.read_parquet(out).equals(reference["parquet"])
        assert _records(fs / "o.vcf") == _records(reference["vcf"])
        assert sorted(p.name for p in fs.iterdir()) == ["o.parquet", "o.vcf"]


def test_disk_full_mid_run_and_in_final_assembly_stay_resumable(kit, reference, tmp_path, capsys, monkeypatch):
    import vareff.write.parts as parts

    real_write, real_parquet = parts._atomic_write_bytes, parts.write_parquet

    def full_at_chunk_4(path, data):
        if path.name.startswith("00000004."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    out = tmp_path / "o.parquet"
    manifest = tmp_path / ".o.parquet.vareff-parts" / "manifest.json"
    args = _args(kit, kit["vcf"], out, tmp_path / "o.tsv", extra=["--chunk-size", "3"])
    monkeypatch.setattr(parts, "_atomic_write_bytes", full_at_chunk_4)
    assert main(args) == 2
    _one_error(capsys.readouterr().err, "No space left on device", str(manifest.parent),
               "the 4 finished chunks are kept", "--resume")
    assert json.loads(manifest.read_text())["chunks"] == 4

    def full_in_assembly(path, *a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(parts, "_atomic_write_bytes", real_write)
    monkeypatch.setattr(parts, "write_parquet", full_in_assembly)
    assert main(args + ["--resume"]) == 2
    _one_error(capsys.readouterr().err, "No space left on device", str(out), "--resume")
    assert not out.exists() and not list(tmp_path.glob("o.parquet.tmp-*"))
    assert json.loads(manifest.read_text())["records"] == 50  # every chunk scored, kept

    monkeypatch.setattr(parts, "write_parquet", real_parquet)
    assert main(args + ["--resume"]) == 0
    assert pl.read_parquet(out).equals(reference["parquet"])
    assert _no_command((tmp_path / "o.tsv").read_text()) == _no_command(reference["tsv"].read_text())
    assert not manifest.parent.exists()


# --- 10.4: one output, one writer -------------------------------------------------------------

def _plain_vcf(kit) -> tuple[list[str], list[str]]:
    with gzip.open(kit["vcf"], "rt") as fh:
        lines = fh.readlines()
    return [ln for ln in lines if ln.startswith("#")], [ln for ln in lines if not ln.startswith("#")]


def _stdin_run(kit, out):
    cmd = [sys.executable, "-m", "vareff", *_args(kit, "-", out, extra=["--chunk-size", "5"])]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_chunks(manifest: Path, n: int, proc) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(manifest.read_text())["chunks"] >= n:
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the first run never finished a chunk")


@contextlib.contextmanager
def _stdin_from(path: Path):
    saved = os.dup(0)
    fd = os.open(path, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_second_writer_is_refused_and_a_killed_runs_lock_is_taken_over(kit, reference, tmp_path, capsys):
    head, body = _plain_vcf(kit)
    out = tmp_path / "o.parquet"
    manifest = tmp_path / ".o.parquet.vareff-parts" / "manifest.json"
    first, second = _stdin_run(kit, out), _stdin_run(kit, out)  # both start up (imports) at once
    try:
        first.stdin.write("".join(head + body[:10]).encode())
        first.stdin.flush()  # and keep it open: the first run holds the lock, waiting for records
        _wait_for_chunks(manifest, 1, first)
        _, err = second.communicate("".join(head + body).encode(), timeout=180)
        assert second.returncode == 2
        _one_error(err.decode(), "is being written by another vareff run", f"PID {first.pid}", str(out))
        assert first.poll() is None
    finally:
        first.kill()  # SIGKILL: no cleanup runs
        first.wait()
        second.kill()
    assert first.returncode == -signal.SIGKILL and not out.exists()
    lock = manifest.parent / "lock"
    assert lock.read_text().strip() == str(first.pid)  # the stale lock names the dead run

    full = tmp_path / "in.vcf"
    full.write_text("".join(head + body))
    args = _args(kit, "-", out, extra=["--chunk-size", "5"])
    with _stdin_from(full):
        assert main(args) == 2  # finished work is protected without --resume
    _one_error(capsys.readouterr().err, f"PID {first.pid}", "--resume")
    with _stdin_from(full):
        assert main(args + ["--resume"]) == 0
    assert f"took over the output lock of the interrupted run (PID {first.pid}" in capsys.readouterr().err
    assert pl.read_parquet(out).equals(reference["parquet"])
    assert not manifest.parent.exists()


def test_leftover_tmp_files_are_removed_by_the_next_successful_run(kit, tmp_path):
    out, vcf = tmp_path / "o.parquet", tmp_path / "o.vcf.gz"
    junk = [tmp_path / "o.parquet.tmp-99999", tmp_path / "o.vcf.gz.tmp-12345", tmp_path / "o.vcf.gz.tmp-12345.tbi"]
    keep = tmp_path / "o.parquet.tmp-notes"
    for p in junk + [keep]:
        p.write_text("half-written")
    assert main(_args(kit, kit["vcf"], out, vcf)) == 0
    assert not any(p.exists() for p in junk) and keep.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet", "o.parquet.tmp-notes", "o.vcf.gz",
                                                          "o.vcf.gz.tbi"]


# --- 10.5: stdout and FIFOs are streamed, never renamed over ----------------------------------

def test_stdout_pipe_streams_vcf_and_logs_go_to_stderr(kit, reference, tmp_path):
    head, body = _plain_vcf(kit)
    plain = tmp_path / "in.vcf"
    plain.write_text("".join(head + body))
    cat = subprocess.Popen(["cat", str(plain)], stdout=subprocess.PIPE)
    r = subprocess.run([sys.executable, "-m", "vareff", *_args(kit, "-", "-", extra=["--chunk-size", "7"])],
                       stdin=cat.stdout, capture_output=True)
    cat.stdout.close()
    cat.wait()
    assert r.returncode == 0, r.stderr.decode()
    assert b"done: 50 records" in r.stderr and b"vareff:" not in r.stdout
    got = tmp_path / "got.vcf"
    got.write_bytes(r.stdout)
    assert _records(got) == _records(reference["vcf"])
    with pysam.VariantFile(str(got)) as v:  # what bgzip/bcftools downstream would read
        assert sum(1 for rec in v if rec.info["vareff_status"] == ("ok",)) == 50
    pysam.tabix_index(str(got), preset="vcf", force=True)  # | bgzip | tabix works (sorted input)
    assert len(list(pysam.TabixFile(str(got) + ".gz").fetch("1"))) == 2


def test_resume_with_a_stream_is_refused(kit, tmp_path, capsys):
    assert main(_args(kit, kit["vcf"], "-", extra=["--resume"])) == 2
    _one_error(capsys.readouterr().err, "--resume cannot continue an output streamed to stdout")
    assert main(_args(kit, kit["vcf"], "-", extra=["-O", "parquet"])) == 2
    _one_error(capsys.readouterr().err, "Parquet cannot be streamed")


def _read_fifo_in_background(fifo: Path):
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    t.start()
    return t, got


def test_fifo_behind_a_symlink_is_streamed_and_stays(kit, reference, tmp_path):
    """Like ``-o /dev/stdout``: a symlink to a FIFO stays a symlink, the FIFO stays a FIFO."""
    fifo, link = tmp_path / "pipe", tmp_path / "stdout"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    t, got = _read_fifo_in_background(fifo)
    try:
        assert main(_args(kit, kit["vcf"], link, extra=["-O", "tsv", "--chunk-size", "4"])) == 0
    finally:
        t.join(30)
    assert link.is_symlink() and os.readlink(link) == str(fifo) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not list(tmp_path.glob(".*vareff-parts")) and not list(tmp_path.glob("*.tmp-*"))
    text = got[0].decode()
    ref = reference["tsv"].read_text()
    strip = _no_command
    assert strip(text) == strip(ref)

    # a symlink to a regular file: the target is replaced atomically, the link stays a link
    real, link2 = tmp_path / "real.tsv", tmp_path / "link.tsv"
    real.write_text("old")
    link2.symlink_to(real)
    assert main(_args(kit, kit["vcf"], link2)) == 0
    assert link2.is_symlink() and strip(real.read_text()) == strip(ref)


# --- 11.6: outputs that explain themselves ----------------------------------------------------

def test_provenance_in_vcf_tsv_and_parquet(kit, shared_data, tmp_path):
    table = tmp_path / "am.arrow"
    excerpt = shared_data / "alphamissense" / "AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
    assert main(["am-build", str(excerpt), "-o", str(table), "--no-progress"]) == 0
    outs = [tmp_path / "o.parquet", tmp_path / "o.vcf.gz", tmp_path / "o.tsv"]
    assert main(_args(kit, kit["vcf"], *outs, extra=["--alphamissense", str(table), "--chunk-size", "1"])) == 0

    meta = json.loads(pq.read_schema(outs[0]).metadata[b"vareff"])
    am, regions = meta["lookups"][0], meta["lookups"][1]
    assert am["source_sha256"] == hashlib.sha256(excerpt.read_bytes()).hexdigest()
    assert regions["sha256"] == hashlib.sha256(Path(kit["gff"]).read_bytes()).hexdigest()

    with pysam.VariantFile(str(outs[1])) as v:  # htslib keeps the lines (as bcftools does)
        vcf_lines = [str(r).rstrip("\n") for r in v.header.records if r.key.startswith("vareff")]
    tsv_lines = [ln for ln in outs[2].read_text().splitlines() if ln.startswith("#")]
    assert vcf_lines == tsv_lines
    by_key: dict[str, list] = {}
    for ln in vcf_lines:
        k, _, val = ln[2:].partition("=")
        by_key.setdefault(k, []).append(val)
    assert by_key["vareffVersion"] == [meta["version"]] and by_key["vareffCommand"] == [meta["command"]]
    assert [json.loads(x) for x in by_key["vareffLookup"]] == meta["lookups"]
    assert "--alphamissense" in meta["command"]
    # 25 contigs -> 50 one-record chunks, but readers get one row group
    assert pq.ParquetFile(outs[0]).metadata.num_row_groups == 1


def test_parquet_row_groups_are_merged_to_the_target_size(tmp_path, monkeypatch):
    import pyarrow as pa

    import vareff.write.parts as parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 16)
    rng = random.Random(1)
    tables, paths = [], []
    for i, n in enumerate([3, 1, 20, 7, 0, 19]):
        t = pa.table({"x": pa.array([rng.random() for _ in range(n)], pa.float64())})
        paths.append(tmp_path / f"{i}.parquet")
        pq.write_table(t, paths[-1])
        tables.append(t)
    parts.write_parquet(tmp_path / "o.parquet", tables[0].schema, paths)
    f = pq.ParquetFile(tmp_path / "o.parquet")
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [16, 16, 16, 2]
    assert f.read().equals(pa.concat_tables(tables))


# --- 11.7: an unsorted input still gets an indexed .vcf.gz ------------------------------------

@pytest.mark.parametrize("fan_in", [64, 2])
def test_unsorted_input_gives_a_sorted_indexed_vcf_gz(kit, reference, tmp_path, capsys, monkeypatch, fan_in):
    import vareff.write.sort as sort

    monkeypatch.setattr(sort, "FAN_IN", fan_in)  # 2: many merge passes over the sorted runs
    head, body = _plain_vcf(kit)
    shuffled = body[:]
    random.Random(7).shuffle(shuffled)
    vcf = tmp_path / "shuffled.vcf"
    vcf.write_text("".join(head + shuffled))
    outs = [tmp_path / "o.vcf.gz", tmp_path / "o.parquet"]
    assert main(_args(kit, vcf, *outs, extra=["--chunk-size", "4"])) == 0
    assert "the input is not sorted" in capsys.readouterr().err
    got = _records(outs[0])
    order = [m.group(1) for m in (re.match(r"##contig=<ID=([^,>]+)", ln) for ln in head) if m]
    keys = [(order.index(ln.split("\t")[0]), int(ln.split("\t")[1])) for ln in got]
    assert keys == sorted(keys)
    assert sorted(got) == sorted(_records(reference["vcf"]))  # the same records, INFO included
    assert pl.read_parquet(outs[1])["id"].to_list() == [ln.split("\t")[2] for ln in shuffled]  # input order
    with pysam.TabixFile(str(outs[0])) as tbx:
        assert len(list(tbx.fetch("17"))) == 2 and len(list(tbx.fetch("MT"))) == 2
    assert not list(tmp_path.glob(".*vareff-parts"))


# --- chunk size: model runs keep small chunks, host-only runs take large ones -----------------

def test_default_chunk_size_depends_on_models_and_samples(tmp_path):
    from vareff.config import HOST_CHUNK, MODEL_CHUNK, OutputSpec, RunConfig

    out = (OutputSpec(str(tmp_path / "o.parquet"), "parquet"),)
    host = RunConfig(input="in.vcf", outputs=out, models=())
    assert host.chunk_records(0) == HOST_CHUNK > MODEL_CHUNK
    assert host.chunk_records(3) == MODEL_CHUNK  # genotypes are held per chunk
    assert RunConfig(input="in.vcf", outputs=out, fasta="ref.fa").chunk_records(0) == MODEL_CHUNK
    assert RunConfig(input="in.vcf", outputs=out, models=(), chunk_size=7).chunk_records(0) == 7


def test_parts_are_arrow_ipc_and_assemble_to_the_same_parquet(tmp_path):
    import pyarrow as pa

    import vareff.write.parts as parts

    rng = random.Random(3)
    t = pa.table({"pos": pa.array([rng.randrange(10**9) for _ in range(50)], pa.int64()),
                  "s": pa.array([rng.choice(["A", None, "CT"]) for _ in range(50)])})
    p = tmp_path / f"00000000{parts.PART_SUFFIX}"
    p.write_bytes(parts.part_bytes(t))
    assert parts.read_part(p).equals(t)
    parts.write_parquet(tmp_path / "o.parquet", t.schema, [p])
    assert pq.read_table(tmp_path / "o.parquet").equals(t)
