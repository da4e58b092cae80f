"""The columnar host path (vareff.read.columnar) against the record-by-record cyvcf2 path
(``VAREFF_HOST_PATH=cyvcf2``): the same Parquet table, the same error text (file, line, reason) or
the same ``--skip-malformed`` rows, on real kit VCFs and on synthetic files with every malformed
case, compressed or not, cut into small blocks so the handover happens mid-file and mid-chunk."""
from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pysam
import pytest

import vareff
import vareff.engine.run as run_mod
import vareff.read.columnar as columnar
from vareff.cli import main
from vareff.errors import VareffError
from vareff.read.columnar import ColumnChunk, cut_points
from vareff.engine.run import iter_chunks

from engine_helpers import tubb8_paths
from host_fixtures import CONTIG, EDITED, EDITS, FASTA, HEADER, OFFSET, synthetic_records

@pytest.fixture(autouse=True)
def compiled_passes(monkeypatch):
    """Small test files take the compiled passes (numba) that large inputs take;
    test_small_inputs_take_the_numpy_and_polars_passes covers the others."""
    monkeypatch.setattr(columnar, "COMPILED_MIN_BYTES", 0)


@pytest.fixture
def spy(monkeypatch):
    """Counts the chunks served as columns."""
    seen = []
    real = run_mod._process_column_chunk

    def counting(pipe, chunk):
        seen.append(len(chunk))
        return real(pipe, chunk)

    monkeypatch.setattr(run_mod, "_process_column_chunk", counting)
    return seen


@pytest.fixture(scope="module")
def seq(shared_data):
    return pysam.FastaFile(str(shared_data / FASTA)).fetch(CONTIG).upper()


def _write(path, lines, how: str) -> str:
    text = ("\n".join(lines) + "\n").encode()
    if how == "plain":
        path.write_bytes(text)
    elif how == "gzip":
        path.write_bytes(gzip.compress(text))
    else:
        with pysam.BGZFile(str(path), "wb") as fh:
            fh.write(text)
    return str(path)


def _score(vcf: str, out, fasta: str, mode: str, monkeypatch, **kw):
    """(error type and text, or None; the output table, or None) of one no-model run."""
    if mode == "cyvcf2":
        monkeypatch.setenv(columnar.ENV, "cyvcf2")
    else:
        monkeypatch.delenv(columnar.ENV, raising=False)
    kw.setdefault("contig_map", [f"chr17={CONTIG}+{OFFSET}"])
    try:
        vareff.score_vcf(vcf, str(out), fasta=fasta, models=[], chunk_size=16, **kw)
    except VareffError as e:
        return (type(e).__name__, str(e)), None
    return None, pq.read_table(out)


def _both(vcf, tmp_path, fasta, monkeypatch, **kw):
    """Both paths on one input, each into a fresh folder (a failed run leaves its parts for --resume)."""
    runs = []
    for mode in ("cyvcf2", "columnar"):
        d = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        d.mkdir()
        runs.append(_score(vcf, d / "out.parquet", fasta, mode, monkeypatch, **kw))
    return runs


@pytest.mark.parametrize("case", sorted(EDITS))
def test_columnar_and_cyvcf2_paths_agree_on_each_case(case, seq, shared_data, tmp_path, monkeypatch, spy):
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 700)  # several blocks, handover mid-file
    lines = synthetic_records(seq)
    lines[EDITED] = EDITS[case](lines[EDITED])
    fasta = str(shared_data / FASTA)
    for how in ("plain", "bgzf") if case in ("clean", "non_numeric_pos", "empty_line") else ("plain",):
        vcf = _write(tmp_path / f"{case}.vcf{'.gz' if how != 'plain' else ''}", HEADER + lines, how)
        for skip in (False, True):
            spy.clear()
            (old_err, old), (new_err, new) = _both(vcf, tmp_path, fasta, monkeypatch, skip_malformed=skip)
            assert old_err == new_err, (how, skip)
            assert (old is None) == (new is None)
            if old is not None:
                assert old.num_rows >= len(lines) - 1
                assert new.equals(old), (how, skip)
            assert spy, "the columnar path served no chunk"
            if case in ("clean", "leading_zeros_pos"):
                assert sum(spy) == len(lines)  # every record as columns
            else:
                assert sum(spy) <= EDITED  # ... up to the chunk holding the edited line at most


@pytest.mark.parametrize("how", ["gzip", "bgzf"])
def test_compressed_inputs_and_files_without_records(how, seq, shared_data, tmp_path, monkeypatch):
    fasta = str(shared_data / FASTA)
    lines = synthetic_records(seq)
    for name, body in (("multi", lines), ("header_only", []), ("one", lines[:1])):
        vcf = _write(tmp_path / f"{name}.vcf.gz", HEADER + body, how)
        (old_err, old), (new_err, new) = _both(vcf, tmp_path, fasta, monkeypatch)
        assert old_err == new_err is None
        assert new.equals(old) and new.num_rows >= len(body)
    # a header longer than several blocks
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 700)
    long_header = HEADER[:1] + [f"##contig=<ID=c{i},length=1000>" for i in range(300)] + HEADER[1:]
    vcf = _write(tmp_path / "long_header.vcf.gz", long_header + lines, how)
    (old_err, old), (new_err, new) = _both(vcf, tmp_path, fasta, monkeypatch)
    assert old_err == new_err is None and new.equals(old)
    # no newline after the last record
    vcf = tmp_path / "no_newline.vcf"
    vcf.write_text("\n".join(HEADER + lines))
    (old_err, old), (new_err, new) = _both(str(vcf), tmp_path, fasta, monkeypatch)
    assert old_err == new_err is None and new.equals(old)
    # an empty file: the same error
    (tmp_path / "empty.vcf").write_text("")
    (old_err, _), (new_err, _) = _both(str(tmp_path / "empty.vcf"), tmp_path, fasta, monkeypatch)
    assert old_err is not None and old_err == new_err


def test_truncated_and_corrupt_compressed_data(seq, shared_data, tmp_path, monkeypatch):
    fasta = str(shared_data / FASTA)
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 500)
    vcf = _write(tmp_path / "full.vcf.gz", HEADER + synthetic_records(seq, n=400), "bgzf")
    data = open(vcf, "rb").read()
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(data[: len(data) // 2])
    for kw in ({}, {"allow_truncated": True}, {"allow_truncated": True, "skip_malformed": True}):
        (old_err, old), (new_err, new) = _both(str(cut), tmp_path, fasta, monkeypatch, **kw)
        assert old_err is not None and old_err == new_err, kw
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF  # one flipped byte inside a compressed block
    (tmp_path / "flip.vcf.gz").write_bytes(bytes(bad))
    (old_err, _), (new_err, _) = _both(str(tmp_path / "flip.vcf.gz"), tmp_path, fasta, monkeypatch,
                                       skip_malformed=True)
    assert old_err is not None and old_err == new_err


def test_real_kit_vcfs_give_identical_tables(shared_data, tmp_path, monkeypatch, spy):
    clinvar = shared_data / "clinvar" / "clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"
    annotation = tubb8_paths(shared_data)["annotation"]
    tables = {}
    for mode in ("cyvcf2", "columnar"):
        if mode == "cyvcf2":
            monkeypatch.setenv(columnar.ENV, "cyvcf2")
        else:
            monkeypatch.delenv(columnar.ENV, raising=False)
        out = tmp_path / f"{mode}.parquet"
        assert main(["score", str(clinvar), "-o", str(out), "--annotation", annotation, "--no-progress",
                     "--chunk-size", "9"]) == 0
        tables[mode] = pq.read_table(out)
    assert tables["columnar"].equals(tables["cyvcf2"]) and sum(spy) == tables["cyvcf2"].num_rows
    golden = str(shared_data / "golden" / "spliceai" / "input.vcf")
    fasta = tubb8_paths(shared_data)["fasta"]
    (old_err, old), (new_err, new) = _both(golden, tmp_path, fasta, monkeypatch, contig_map=["1=chr10"])
    assert old_err == new_err is None and new.equals(old) and old.num_rows > 0


class _V:
    """The fields iter_chunks reads of a record."""

    def __init__(self, chrom, pos, n_alt):
        self.CHROM, self.POS, self.ALT, self.start, self.end = chrom, pos, ["A"] * n_alt, pos - 1, pos


@pytest.mark.parametrize("cost", [0.0, 0.37, 1.0 / 3])
def test_cut_points_are_the_chunks_of_iter_chunks(cost):
    rng = np.random.default_rng(5)
    n = 3000
    chrom = np.repeat(["1", "2", "10"], [1200, 900, 900])
    pos = np.concatenate([np.sort(rng.integers(1, 5_000_000, k)) for k in (1200, 900, 900)])
    n_alt = rng.integers(0, 4, n)
    want = [len(c) for c in iter_chunks([(_V(c, int(p), int(a)), None) for c, p, a in zip(chrom, pos, n_alt)],
                                        50, block=1_000_000, allele_cost=cost, budget=7.0)]
    chunk = ColumnChunk(pl.Series(chrom), pos.astype(np.int64), pl.Series([None] * n, dtype=pl.Utf8),
                        pl.Series(["A"] * n), pl.Series([["A"] * a for a in n_alt]), np.maximum(n_alt, 1), 1)
    # fed in pieces, as the blocks come: complete chunks only until the last piece
    got, start = [], 0
    for stop in (700, 1500, 2999, n):
        ends = cut_points(chunk.slice(start, stop), 50, 1_000_000, cost, 7.0, final=stop == n)
        got += list(np.diff([0, *ends]))
        start += ends[-1] if ends else 0
    assert got == want


def test_sample_columns_are_read_by_cyvcf2(seq, shared_data, tmp_path, monkeypatch, spy):
    """htslib refuses sample fields the columnar checks do not parse (more subfields than FORMAT
    keys, a letter in an Integer field): a VCF with samples is read record by record."""
    fmt = ['##FORMAT=<ID=GT,Number=1,Type=String,Description="g">',
           '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="d">']
    header = HEADER[:-1] + fmt + [HEADER[-1] + "\tFORMAT\tS1\tS2"]
    lines = [r + "\tGT:DP\t0/1:3\t0|0:5" for r in synthetic_records(seq)]
    lines[5] = lines[5].replace("0/1:3", "0/1:3:7")
    lines[9] = lines[9].replace("0/1:3", "0/1:abc")
    vcf = _write(tmp_path / "samples.vcf", header + lines, "plain")
    for skip in (False, True):
        (old_err, old), (new_err, new) = _both(vcf, tmp_path, str(shared_data / FASTA), monkeypatch,
                                               skip_malformed=skip, samples="none")
        assert old_err == new_err and (old_err is not None) != skip
        assert skip is False or new.equals(old)
    assert not spy



@pytest.mark.parametrize("handover", [False, "space", "contig", "filter", "info"])
def test_undeclared_header_names_warn_as_htslib_does(handover, seq, shared_data, tmp_path, monkeypatch, capfd):
    """htslib warns once per contig, FILTER or INFO name the header lacks; the columnar path prints
    the same lines in the same order, and no line twice when it hands over mid-file."""
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 700)
    lines = synthetic_records(seq, n=60)
    for i in range(0, len(lines) - 2, 7):  # new names spread over several blocks
        f = lines[i].split("\t")
        f[6] = f"q{i % 3};lowQ{i}" if i % 2 else "PASS"
        f[7] = f"DP=1;NEW{i}=x=y;FLAG{i % 4}" if i % 3 else "."
        lines[i] = "\t".join(f)
    lines.insert(30, "chrUn\t5\t.\tA\tC\t.\tzz\tXX=1")
    lines.insert(31, "*bad{name}\t5\t.\tA\tC\t.\tz(z\t1x=1;a-b;ok.key")  # names htslib calls invalid
    if handover == "space":
        lines[40] = lines[40].replace("\t", "  ", 1)  # a line the columnar reader hands over
    elif handover:  # an undeclared name that breaks htslib's dummy header line: a malformed record
        f = lines[40].split("\t")
        f[{"contig": 0, "filter": 6, "info": 7}[handover]] = "chr1,5" if handover == "contig" else "new,name"
        lines[40] = "\t".join(f)
    vcf = _write(tmp_path / "undeclared.vcf", HEADER + lines, "plain")
    warned, tables = [], []
    for mode in ("cyvcf2", "columnar"):
        capfd.readouterr()
        err, table = _score(vcf, tmp_path / f"{mode}.parquet", str(shared_data / FASTA), mode, monkeypatch,
                            skip_malformed=True)
        assert err is None and table.num_rows >= len(lines)
        tables.append(table)
        warned.append([x for x in capfd.readouterr().err.splitlines() if x.startswith(("[W::", "[E::"))])
    assert warned[1] == warned[0] and tables[1].equals(tables[0])
    assert len(set(warned[0])) == len(warned[0]) > 10
    assert "[W::bcf_hrec_check] Invalid contig name: \"*bad{name}\"" in warned[0]
    assert "[W::bcf_hrec_check] Invalid tag name: \"1x\"" in warned[0] and not any("ok.key\"" in x for x in warned[0])
    if handover not in (False, "space"):
        assert "malformed_record" in tables[0].column("status").to_pylist()
    assert any("Contig 'chrUn'" in x for x in warned[0]) and any("FILTER 'lowQ7'" in x for x in warned[0])
    assert any("INFO 'NEW" in x for x in warned[0]) and not any("'DP'" in x or "'PASS'" in x for x in warned[0])


def test_streamed_parquet_is_the_assembled_file_byte_for_byte(seq, shared_data, tmp_path, monkeypatch):
    """The Parquet output written while the run goes on (vareff/write/streamed.py) has the bytes of
    the one assembled from the part files at the end, row groups cut across chunks included."""
    import vareff.write.parts as parts

    monkeypatch.setattr(parts, "ROW_GROUP_ROWS", 23)
    vcf = _write(tmp_path / "s.vcf", HEADER + synthetic_records(seq, n=200), "plain")
    fasta = str(shared_data / FASTA)
    streamed = []
    real = parts.StreamedParquet.close
    monkeypatch.setattr(parts.StreamedParquet, "close", lambda self, *a: streamed.append(real(self, *a)) or streamed[-1])
    _, a = _score(vcf, tmp_path / "a.parquet", fasta, "columnar", monkeypatch)
    assert streamed == [True]
    monkeypatch.setattr(parts.PartStore, "stream_parquet", lambda self, schema: None)
    _, b = _score(vcf, tmp_path / "b.parquet", fasta, "columnar", monkeypatch)
    assert a.equals(b) and a.num_rows > 200
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == -(-a.num_rows // 23)


def test_prefetched_blocks_raise_and_stop():
    def items():
        yield 1
        yield 2
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for x in columnar.prefetched(items()):
            got.append(x)
    assert got == [1, 2]
    closed = []

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            closed.append(True)

    for x in columnar.prefetched(endless()):
        if x == 3:
            break
    import gc

    gc.collect()
    assert closed == [True]  # leaving early stops the producer and closes its input


def test_reader_memory_does_not_grow_with_the_input(seq, tmp_path, monkeypatch):
    """Python/numpy memory held while blocks are read (tracemalloc: the text, the byte scan) is
    that of a block or two, whatever the number of blocks."""
    import gc
    import tracemalloc

    from vareff.read.vcf import VcfReader

    lines = synthetic_records(seq, n=400)
    peaks = []
    for copies in (40, 40, 400):  # 4 and 40 blocks; the first pass warms up (imports, compiled code)
        vcf = _write(tmp_path / f"m{copies}.vcf", HEADER + lines * copies, "plain")
        r = VcfReader(vcf)
        gc.collect()
        tracemalloc.start()
        n = sum(len(p) for p, _ in columnar.record_blocks(vcf, r.header_lines, 8, block_bytes=16_384))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        r.close()
        assert n == len(lines) * copies
    # 10x the blocks: a block kept per block would be ~10x the peak; small Python garbage varies
    assert peaks[2] < 2 * peaks[1] and peaks[2] < 12 * 16_384


@pytest.mark.parametrize("case", ["clean", "alt_dot_token", "space_in_info"])
def test_small_inputs_take_the_numpy_and_polars_passes(case, seq, shared_data, tmp_path, monkeypatch, spy):
    import vareff.normalize.kernel as kernel

    monkeypatch.setattr(columnar, "COMPILED_MIN_BYTES", 1 << 40)
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 700)
    called = []
    monkeypatch.setattr(kernel, "split_chunk", lambda *a: called.append(1))
    lines = synthetic_records(seq)
    lines[EDITED] = EDITS[case](lines[EDITED])
    vcf = _write(tmp_path / f"{case}.vcf", HEADER + lines, "plain")
    for skip in (False, True):
        (old_err, old), (new_err, new) = _both(vcf, tmp_path, str(shared_data / FASTA), monkeypatch,
                                               skip_malformed=skip)
        assert old_err == new_err and (old is None) == (new is None)
        assert old is None or new.equals(old)
    assert spy and not called
