"""The compiled normalization pass (vareff.normalize.kernel) against the polars one
(``split_series``): identical frames on random chunks of every allele kind, with and without a
FASTA, REFs inside, across and outside the slice, and on a contig the FASTA lacks."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from vareff.normalize.alleles import split_series
from vareff.normalize.kernel import split_chunk
from vareff.read.columnar import ColumnChunk
from vareff.window.genome import ContigSlice, Genome

from host_fixtures import CONTIG, FASTA, OFFSET

TOKENS = ["<DEL>", "<INS:ME>", "*", "G]17:198982]", "]13:123456]T", ".C", "C.", ".TGCA", "A.C", "<*>", ".", "a.",
          ".1", "N", "n", "X", "ACGTX", "[", "AC*"]


def _alleles(rng, seq: str, p: int) -> tuple[str, list[str]]:
    """A REF near ``p`` (from the FASTA or not, any case) and 1-3 ALTs of every kind."""
    k = rng.integers(0, 6)
    ref = (seq[p: p + int(rng.integers(1, 6))] or "A") if k < 4 else "".join(rng.choice(list("ACGTNacgtnRX"), rng.integers(1, 4)))
    if k == 1:
        ref = ref.lower()
    alts = []
    for _ in range(int(rng.integers(1, 4))):
        u = rng.integers(0, 8)
        if u < 3:
            alts.append("".join(rng.choice(list("ACGT"), rng.integers(1, 7))))
        elif u == 3:
            alts.append(ref[0] + "".join(rng.choice(list("ACGTacgt"), rng.integers(0, 4))))
        elif u == 4:
            alts.append(ref if rng.random() < 0.5 else ref.swapcase())
        elif u == 5:
            alts.append(str(rng.choice(TOKENS)))
        elif u == 6:
            alts.append(ref[1:] + ref[:1] if len(ref) > 1 else "T")
        else:
            alts.append("A" * int(rng.integers(8, 14)))  # longer than max_len below
    return ref, alts


def _chunk(rng, seq: str, n: int, chrom: str, start: int) -> ColumnChunk:
    pos = np.sort(rng.integers(start, start + 5000, n))
    rows = [_alleles(rng, seq, int(p) - 1 - OFFSET if chrom == "chr17" else 100) for p in pos]
    ids = [None if i % 3 else f"rs{i}" for i in range(n)]
    alts = pl.Series([a for _, a in rows], dtype=pl.List(pl.Utf8))
    return ColumnChunk(pl.Series([chrom] * n), pos.astype(np.int64), pl.Series(ids, dtype=pl.Utf8),
                       pl.Series([r for r, _ in rows]), alts, np.array([len(a) for _, a in rows]), 1)


@pytest.fixture(scope="module")
def genome(shared_data):
    return Genome(str(shared_data / FASTA), contig_map=[ContigSlice.parse(f"chr17={CONTIG}+{OFFSET}")])


@pytest.mark.parametrize("seed", range(6))
def test_kernel_rows_equal_the_polars_rows(seed, genome):
    rng = np.random.default_rng(seed)
    span = genome.span("chr17")
    seq = genome.fetch("chr17", *span)
    # inside the slice, straddling its end, on a contig the FASTA lacks; with and without the FASTA
    for chrom, start in (("chr17", OFFSET + 200), ("chr17", span[1] - 2500), ("chr9", 100)):
        chunk = _chunk(rng, seq, 400, chrom, start)
        for g in (genome, None):
            got = split_chunk(chunk, g, 10)
            want = split_series(chunk.chrom, chunk.pos, chunk.id, chunk.ref, chunk.alts, chunk.n_alleles, g, 10)
            assert got is not None
            assert_frame_equal(got.df, want.df)
            assert want.df.get_column("status").n_unique() >= 4  # many statuses in play


def test_chunks_the_kernel_does_not_serve(genome):
    rng = np.random.default_rng(1)
    seq = genome.fetch("chr17", OFFSET, OFFSET + 20_000)
    chunk = _chunk(rng, seq, 10, "chr17", OFFSET + 200)
    two = ColumnChunk(pl.Series(["chr17"] * 5 + ["chr9"] * 5), chunk.pos, chunk.id, chunk.ref, chunk.alts,
                      chunk.n_alleles, 1)
    assert split_chunk(two, genome, 10) is None


def _good_line(line: bytes, n_cols: int) -> bool:
    """The byte checks, written out per line (the reference for the compiled scan)."""
    fields = line.split(b"\t")
    return (len(fields) == n_cols and all(fields)
            and all(33 <= c <= 126 for f in fields for c in f))


@pytest.mark.parametrize("seed", range(4))
def test_byte_scan_equals_the_rules_written_per_line(seed):
    from vareff.read.columnar import BAD_BYTE, scan_numpy
    from vareff.read.scan import scan_lines

    rng = np.random.default_rng(seed)
    alphabet = [b"A", b"C", b"1", b".", b"\t", b"\t", b" ", b"\r", b"\xc3\xa9", b"#", b"\x00"]
    for _ in range(50):
        lines = []
        for _ in range(int(rng.integers(1, 30))):
            if rng.random() < 0.7:  # mostly well-formed lines, so the first bad one moves around
                lines.append(b"\t".join(b"AC"[: int(rng.integers(1, 3))] for _ in range(4)))
            else:
                lines.append(b"".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), rng.integers(0, 12))))
        buf = b"\n".join(lines) + b"\n"
        good = next((i for i, x in enumerate(lines) if not _good_line(x, 4)), len(lines))
        end = sum(len(x) + 1 for x in lines[:good])
        a = np.frombuffer(buf, dtype=np.uint8)
        assert scan_lines(a, 4, BAD_BYTE) == scan_numpy(a, 4) == (good, len(lines), end)
