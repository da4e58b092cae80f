"""Which runs read their input as columns (docs/host-path.md), and what the run loop needs to know
of a chunk of either kind (a :class:`~vareff.read.columnar.ColumnChunk` or a list of cyvcf2 items)."""
from __future__ import annotations

from vareff.config import RunConfig
from vareff.read.columnar import ColumnChunk, forced_off
from vareff.read.vcf import VcfReader, is_malformed


def columnar_input(cfg: RunConfig, reader: VcfReader, pipe, want_vcf: bool) -> int | None:
    """The column count of the input's lines when the columnar reader can serve this run (a text
    VCF file without sample columns, read whole, no VCF output or INFO values needed), else None.
    (htslib refuses some FORMAT/sample fields, e.g. more subfields than FORMAT keys, which the
    columnar checks do not parse: a VCF with samples is read by cyvcf2.)"""
    if (forced_off() or cfg.regions or cfg.input == "-" or reader.header_lines is None or want_vcf
            or pipe.samples is not None or pipe.max_af or reader.n_samples):
        return None
    n_cols = len(reader.vcf.raw_header.rstrip("\n").rsplit("\n", 1)[-1].split("\t"))
    return n_cols if n_cols == 8 else None


def chunk_contig(chunk) -> str | None:
    """The contig of a chunk (a chunk never spans two): its first well-formed record's CHROM."""
    if isinstance(chunk, ColumnChunk):
        return chunk.chrom[0]
    first = next((v for v, _ in chunk if not is_malformed(v)), None)
    return first.CHROM if first is not None else None


def chunk_start(chunk) -> str:
    """``CHROM:POS`` of a chunk's first record (for progress heartbeats)."""
    if isinstance(chunk, ColumnChunk):
        return f"{chunk.chrom[0]}:{chunk.pos[0]}"
    v0 = chunk[0][0]
    return f"{v0.CHROM}:{v0.POS}"
