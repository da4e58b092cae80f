"""The AlphaMissense table format: what :mod:`~vareff.lookup.am_build` writes and :mod:`~vareff.lookup.alphamissense` reads.

AlphaMissense (Cheng et al., *Science* 2023) publishes its predictions as variant-level
tables, not as a model.  Three of them are keyed by genomic allele:

=================================  =============  ==========================================
file                               rows           columns after ``#CHROM POS REF ALT genome``
=================================  =============  ==========================================
``AlphaMissense_hg38.tsv.gz``      71,697,556     ``uniprot_id transcript_id protein_variant
                                                  am_pathogenicity am_class``
``AlphaMissense_hg19.tsv.gz``      ~71.7 M        same as hg38
``AlphaMissense_isoforms_hg38``    more (every    ``transcript_id protein_variant
``.tsv.gz``                        isoform)       am_pathogenicity am_class`` (no UniProt id)
=================================  =============  ==========================================

Each starts with comment lines (copyright, licence) and a ``#CHROM ...`` header line.
:func:`build_table` streams any of them (gzip, bgzip or plain text) into one Arrow IPC
file ("Feather v2", uncompressed) sorted by contig and allele key, with one record batch
per contig.  :class:`AlphaMissenseLookup` memory-maps that file, so opening it costs
nothing and a query touches only the pages it needs; a lookup is a binary search
(:func:`numpy.searchsorted`) of a 32-bit allele key per contig, then a gather of the
payload columns for the hits.  Strings (transcript, UniProt id, class) are stored
dictionary-encoded and the protein variant as ``(protein_ref, protein_pos,
protein_alt)``, which is what keeps the 71.7 M-row table at about 1.7 GB (24 bytes per
row) and the lookup at millions of alleles per second.

Table layout (the file is an ordinary Arrow IPC file; ``polars.scan_ipc`` reads it):

``chrom`` (dictionary), ``pos`` (uint32, 1-based), ``ref``/``alt`` (dictionary over
``A C G T``), ``key`` (uint32, ``pos * 16 + 4 * ref_code + alt_code`` with A, C, G, T =
0..3), ``am_pathogenicity`` (float32, exactly the published 4-decimal value rounded to
float32), ``am_class`` (dictionary), ``transcript_id`` (dictionary), ``uniprot_id``
(dictionary, null for the isoforms file), ``protein_pos`` (uint32), ``protein_ref`` /
``protein_alt`` (dictionary over amino-acid letters).  Within a contig rows are sorted
by ``key``, then by ``am_pathogenicity`` descending, then by ``transcript_id``; the
schema metadata key ``vareff`` holds a JSON object with the source file name, its
SHA-256, the detected layout and genome, row counts per contig and the format version.
"""
from __future__ import annotations

import polars as pl
import pyarrow as pa

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CLASS_THRESHOLDS", "OUTPUT_SCHEMA", "BASES", "BASE_CODE",
           "BASE_CODE_ANYCASE", "MAX_POS", "table_schema"]

#: name and version written into every table; :meth:`AlphaMissenseLookup.open` checks both
FORMAT_NAME = "vareff-alphamissense"
FORMAT_VERSION = 1

#: published class thresholds on ``am_pathogenicity`` (likely benign below the first,
#: likely pathogenic above the second)
CLASS_THRESHOLDS = (0.34, 0.564)

#: output columns of :meth:`AlphaMissenseLookup.annotate`, in order, with their dtypes
OUTPUT_SCHEMA = {
    "am_pathogenicity": pl.Float32,
    "am_class": pl.String,
    "am_transcript_id": pl.String,
    "am_protein_variant": pl.String,
    "am_uniprot_id": pl.String,
}

#: allele codes of the ``key`` column (A, C, G, T = 0..3)
BASES = ("A", "C", "G", "T")
BASE_CODE = {b: i for i, b in enumerate(BASES)}
BASE_CODE_ANYCASE = {**BASE_CODE, **{b.lower(): i for i, b in enumerate(BASES)}}
MAX_POS = (1 << 28) - 1  # pos * 16 + 15 must fit in uint32; chr1 is 248,956,422 bp


def table_schema(n_contigs: int, n_transcripts: int, n_uniprot: int, max_protein_pos: int) -> pa.Schema:
    """Schema of the built table; index and position widths are the narrowest that fit."""
    idx = lambda n: pa.int8() if n <= 127 else pa.int16() if n <= 32_767 else pa.int32()  # noqa: E731
    return pa.schema([
        ("chrom", pa.dictionary(idx(n_contigs), pa.string())),
        ("pos", pa.uint32()),
        ("ref", pa.dictionary(pa.int8(), pa.string())),
        ("alt", pa.dictionary(pa.int8(), pa.string())),
        ("key", pa.uint32()),
        ("am_pathogenicity", pa.float32()),
        ("am_class", pa.dictionary(pa.int8(), pa.string())),
        ("transcript_id", pa.dictionary(idx(n_transcripts), pa.string())),
        ("uniprot_id", pa.dictionary(idx(max(n_uniprot, 1)), pa.string())),
        ("protein_pos", pa.uint16() if max_protein_pos <= 65_535 else pa.uint32()),
        ("protein_ref", pa.dictionary(pa.int8(), pa.string())),
        ("protein_alt", pa.dictionary(pa.int8(), pa.string())),
    ])
