"""Build the AlphaMissense lookup table (``vareff am-build``) from a published variant-level file.

:func:`build_table` streams ``AlphaMissense_hg38.tsv.gz``, ``_hg19`` or ``_isoforms_hg38`` (gzip,
bgzip or plain text) into the sorted Arrow IPC table described in :mod:`vareff.lookup.am_table`,
spilling per-contig runs to a temporary folder so that memory stays under 1 GiB; the lookup is
:mod:`vareff.lookup.alphamissense`.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from vareff._version import __version__
from vareff.engine.progress import Progress
from vareff.errors import ConfigError, InputError
from vareff.lookup.am_table import BASE_CODE, BASES, FORMAT_NAME, FORMAT_VERSION, MAX_POS, table_schema

log = logging.getLogger(__name__)

__all__ = ["BuildStats", "build_table"]

_CANONICAL_COLUMNS = (
    "CHROM", "POS", "REF", "ALT", "genome", "uniprot_id", "transcript_id",
    "protein_variant", "am_pathogenicity", "am_class",
)
_ISOFORMS_COLUMNS = (
    "CHROM", "POS", "REF", "ALT", "genome", "transcript_id", "protein_variant",
    "am_pathogenicity", "am_class",
)
# other AlphaMissense downloads, recognised to say precisely why they cannot be used
_NOT_VARIANT_LEVEL = {
    ("uniprot_id", "protein_variant", "am_pathogenicity", "am_class"):
        "the protein-level AlphaMissense_aa_substitutions table (no genomic coordinates)",
    ("transcript_id", "mean_am_pathogenicity"):
        "a gene-level AlphaMissense_gene_* table (one mean per transcript)",
    ("uniprot_id", "mean_am_pathogenicity"):
        "a gene-level AlphaMissense table (one mean per protein)",
}
_BUILD_HINT = (
    "vareff am-build takes one of the published variant-level files, unmodified: "
    "AlphaMissense_hg38.tsv.gz, AlphaMissense_hg19.tsv.gz or AlphaMissense_isoforms_hg38.tsv.gz "
    "(gzip or bgzip), whose last comment line is the header '#CHROM\\tPOS\\tREF\\tALT\\tgenome\\t...'"
)

_CLASSES = ("likely_benign", "ambiguous", "likely_pathogenic")
_CLASS_CODE = {c: i for i, c in enumerate(_CLASSES)}
_AMINO = tuple(chr(65 + i) for i in range(26))  # letters A..Z (20 amino acids + a few codes)
_AMINO_CODE = {a: i for i, a in enumerate(_AMINO)}
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_SPILL_SCHEMA = pa.schema([
    ("pos", pa.uint32()), ("ref", pa.uint8()), ("alt", pa.uint8()),
    ("score", pa.float32()), ("cls", pa.uint8()), ("tx", pa.int32()), ("up", pa.int32()),
    ("ppos", pa.uint32()), ("pref", pa.uint8()), ("palt", pa.uint8()),
])



@dataclass
class BuildStats:
    """What :func:`build_table` did.

    Attributes
    ----------
    rows : int
        Variant rows read from the source and written to the table.
    seconds : float
        Wall time of the whole build.
    peak_rss_bytes : int
        High-water mark of the process's resident memory at the end of the build
        (``getrusage``; it includes whatever the process held before the call).
    source : str
        The source file as given.
    source_sha256 : str
        SHA-256 of the source file's bytes (computed while streaming it).
    source_bytes : int
        Size of the source file.
    layout : str
        ``"canonical"`` (hg38 / hg19 files, with ``uniprot_id``) or ``"isoforms"``.
    genome : str
        Value of the ``genome`` column (``hg38`` or ``hg19``).
    table : str
        Path of the written table.
    table_bytes : int
        Size of the written table.
    contigs : dict
        Rows per contig, in table order.
    transcripts : int
        Distinct transcript ids.
    duplicate_rows : int
        Rows repeating an (allele, transcript) pair already seen (kept, reported).
    """

    rows: int
    seconds: float
    peak_rss_bytes: int
    source: str
    source_sha256: str
    source_bytes: int
    layout: str
    genome: str
    table: str
    table_bytes: int
    contigs: dict[str, int] = field(default_factory=dict)
    transcripts: int = 0
    duplicate_rows: int = 0


class _HashingReader(io.RawIOBase):
    """A raw binary reader that hashes (SHA-256) and counts the bytes passing through."""

    def __init__(self, path: str):
        self._f = open(path, "rb")
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self.sha256.update(memoryview(b)[:n])
            self.nbytes += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _open_text_stream(path: str) -> tuple[_HashingReader, object]:
    """(hashing raw reader, decompressed byte stream) for a gzip/bgzip/plain file."""
    raw = _HashingReader(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return raw, pa.CompressedInputStream(raw, "gzip")
    return raw, io.BufferedReader(raw, buffer_size=1 << 20)


def _check_bgzf_eof(path: str) -> None:
    """A BGZF file must end with the 28-byte empty EOF block; without it it was cut short."""
    with open(path, "rb") as f:
        head = f.read(18)
        is_bgzf = len(head) >= 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"
        if not is_bgzf:
            return
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - len(_BGZF_EOF)))
        tail = f.read()
    if tail != _BGZF_EOF:
        raise InputError(
            f"{path!r} is bgzip-compressed but lacks the BGZF end-of-file block: the file is "
            "truncated (an interrupted download or copy)",
            "download the file again and compare its size / checksum with the published one",
        )


def _read_header(path: str) -> tuple[int, tuple[str, ...]]:
    """(number of lines up to and including the header, column names) of a source file."""
    raw, stream = _open_text_stream(path)
    try:
        try:
            head = stream.read(1 << 16)
        except OSError as e:
            raise InputError(
                f"cannot decompress {path!r}: {e}",
                "the file is not valid gzip/bgzip (or is truncated); " + _BUILD_HINT,
            ) from None
    finally:
        raw.close()
    text = bytes(head).decode("utf-8", errors="replace")
    lines = text.split("\n")
    n_comment = 0
    for line in lines[:-1]:  # the last piece may be an incomplete line
        if not line.startswith("#"):
            break
        n_comment += 1
    first = lines[0][:120] if lines else ""
    if n_comment == 0:
        raise InputError(
            f"{path!r} is not an AlphaMissense variant table: expected comment lines and a "
            f"'#CHROM\\tPOS\\tREF\\tALT\\tgenome\\t...' header, found {first!r}",
            _BUILD_HINT,
        )
    header = lines[n_comment - 1].rstrip("\r").lstrip("#").split("\t")
    cols = tuple(c.strip() for c in header)
    if cols in (_CANONICAL_COLUMNS, _ISOFORMS_COLUMNS):
        return n_comment, cols
    known = _NOT_VARIANT_LEVEL.get(cols)
    what = f"this is {known}" if known else f"found {chr(9).join(cols)[:200]!r}"
    raise InputError(
        f"{path!r}: expected the AlphaMissense variant-level header "
        f"'#{chr(9).join(_CANONICAL_COLUMNS)}' (hg38/hg19) or "
        f"'#{chr(9).join(_ISOFORMS_COLUMNS)}' (isoforms); {what}",
        _BUILD_HINT,
    )


def _natural_contig_key(name: str) -> tuple:
    """Sort contigs as 1..22, X, Y, M/MT, then the rest alphabetically."""
    core = name[3:] if name.startswith("chr") else name
    if core.isdigit():
        return (0, int(core), name)
    order = {"X": 1, "Y": 2, "M": 3, "MT": 3}
    if core in order:
        return (1, order[core], name)
    return (2, 0, name)


class _Builder:
    """State of one streaming build: global dictionaries and per-contig spill files."""

    def __init__(self, src: str, spill_dir: str, layout: str):
        self.src = src
        self.spill_dir = spill_dir
        self.layout = layout
        self.contigs: dict[str, int] = {}  # name -> rows
        self.writers: dict[str, ipc.RecordBatchStreamWriter] = {}
        self.tx: dict[str, int] = {}
        self.up: dict[str, int] = {}
        self.genomes: set[str] = set()
        self.rows = 0
        self.max_ppos = 0

    # -- phase 1: validate, encode, spill by contig --------------------------------------

    def _codes(self, table: dict[str, int], values: pl.Series) -> None:
        for v in values.unique().drop_nulls().to_list():
            if v not in table:
                table[v] = len(table)

    def add(self, batch: pa.RecordBatch, line0: int) -> None:
        df = pl.from_arrow(batch)
        if df.height == 0:
            return
        self.genomes.update(df["genome"].unique().drop_nulls().to_list())
        self._codes(self.tx, df["transcript_id"])
        has_up = "uniprot_id" in df.columns
        if has_up:
            self._codes(self.up, df["uniprot_id"])
        pv = pl.col("protein_variant").str.extract_groups(r"^([A-Z])([0-9]+)([A-Z])$")
        enc = df.select(
            chrom=pl.col("chrom"),
            pos=pl.col("pos"),
            ref=pl.col("ref").replace_strict(BASE_CODE, default=None, return_dtype=pl.UInt8),
            alt=pl.col("alt").replace_strict(BASE_CODE, default=None, return_dtype=pl.UInt8),
            score=pl.col("am_pathogenicity"),
            cls=pl.col("am_class").replace_strict(_CLASS_CODE, default=None, return_dtype=pl.UInt8),
            tx=pl.col("transcript_id").replace_strict(self.tx, default=None, return_dtype=pl.Int32),
            up=(
                pl.col("uniprot_id").replace_strict(self.up, default=None, return_dtype=pl.Int32)
                if has_up else pl.lit(-1, dtype=pl.Int32)
            ),
            ppos=pv.struct.field("2").cast(pl.UInt32, strict=False),
            pref=pv.struct.field("1").replace_strict(_AMINO_CODE, default=None, return_dtype=pl.UInt8),
            palt=pv.struct.field("3").replace_strict(_AMINO_CODE, default=None, return_dtype=pl.UInt8),
        )
        problems = [
            ("CHROM", pl.col("chrom").is_null() | (pl.col("chrom") == ""), "a contig name"),
            ("POS", pl.col("pos").is_null() | (pl.col("pos") < 1) | (pl.col("pos") > MAX_POS),
             f"a 1-based position in 1..{MAX_POS:,}"),
            ("REF", pl.col("ref").is_null(), "one of A, C, G, T"),
            ("ALT", pl.col("alt").is_null() | (pl.col("alt") == pl.col("ref")),
             "one of A, C, G, T, different from REF"),
            ("am_pathogenicity", pl.col("score").is_null() | pl.col("score").is_nan()
             | (pl.col("score") < 0) | (pl.col("score") > 1), "a number in [0, 1]"),
            ("am_class", pl.col("cls").is_null(), "one of " + ", ".join(_CLASSES)),
            ("transcript_id", pl.col("tx").is_null(), "a transcript id"),
            ("protein_variant", pl.col("ppos").is_null() | pl.col("pref").is_null()
             | pl.col("palt").is_null(), "an amino-acid change such as 'K839Q'"),
        ]
        bad = enc.select([expr.alias(name) for name, expr, _ in problems])
        if bad.select(pl.any_horizontal(pl.all()).any()).item():
            for (name, _, expected), col in zip(problems, bad.columns):
                idx = bad[col].arg_true()
                if len(idx):
                    i = int(idx[0])
                    row = df.row(i, named=True)
                    src_col = {"CHROM": "chrom", "POS": "pos", "REF": "ref", "ALT": "alt"}.get(name, name)
                    raise InputError(
                        f"{self.src!r} line {line0 + i + 1:,}: column {name} is "
                        f"{row.get(src_col)!r}, expected {expected}",
                        "the file does not look like an unmodified AlphaMissense table; " + _BUILD_HINT,
                    )
        self.max_ppos = max(self.max_ppos, int(enc["ppos"].max()))
        for (chrom,), part in enc.partition_by("chrom", as_dict=True, include_key=False).items():
            w = self.writers.get(chrom)
            if w is None:
                path = os.path.join(self.spill_dir, f"{len(self.writers):04d}.arrows")
                w = ipc.new_stream(path, _SPILL_SCHEMA)
                self.writers[chrom] = w
                self.contigs[chrom] = 0
            w.write_table(part.to_arrow().cast(_SPILL_SCHEMA))
            self.contigs[chrom] += part.height
        self.rows += df.height

    # -- phase 2: sort each contig, write the table ----------------------------------------

    def finish(self, tmp_path: str, meta: dict, progress: bool) -> int:
        for w in self.writers.values():
            w.close()
        order = sorted(self.contigs, key=_natural_contig_key)
        spill_of = {c: os.path.join(self.spill_dir, f"{i:04d}.arrows")
                    for i, c in enumerate(self.writers)}
        chrom_dict = pa.array(order, pa.string())
        base_dict = pa.array(BASES, pa.string())
        class_dict = pa.array(_CLASSES, pa.string())
        amino_dict = pa.array(_AMINO, pa.string())
        tx_names = list(self.tx)
        tx_dict = pa.array(tx_names, pa.string())
        up_dict = pa.array(list(self.up), pa.string())
        # rank of each transcript code in string order: the tie-break among equal scores
        tx_rank = np.empty(len(tx_names), dtype=np.int32)
        tx_rank[np.argsort(np.array(tx_names, dtype=object), kind="stable")] = np.arange(len(tx_names))
        meta = dict(meta, contigs={c: self.contigs[c] for c in order})
        schema = table_schema(len(order), len(tx_names), len(self.up), self.max_ppos).with_metadata(
            {"vareff": json.dumps(meta)})
        itype = lambda name: schema.field(name).type.index_type  # noqa: E731
        duplicates = 0
        with ipc.new_file(tmp_path, schema) as out:
            for ci, chrom in enumerate(order):
                if progress:
                    log.info("am-build: sorting and writing %s (%s rows)", chrom, f"{self.contigs[chrom]:,}")
                with pa.memory_map(spill_of[chrom]) as src:
                    df = pl.from_arrow(ipc.open_stream(src).read_all())
                df = df.with_columns(
                    key=pl.col("pos") * 16 + pl.col("ref").cast(pl.UInt32) * 4 + pl.col("alt").cast(pl.UInt32),
                    txrank=pl.Series(tx_rank[df["tx"].to_numpy()]),
                ).sort(["key", "score", "txrank"], descending=[False, True, False])
                if df.height:
                    pair = pl.col("key").cast(pl.UInt64) * (1 << 32) + pl.col("tx").cast(pl.UInt64)
                    duplicates += df.height - df.select(pair.n_unique()).item()
                n = df.height

                def dict_col(codes, dictionary, index_type, mask=None):
                    idx = pa.array(codes.astype(index_type.to_pandas_dtype()), type=index_type, mask=mask)
                    return pa.DictionaryArray.from_arrays(idx, dictionary)

                up = df["up"].to_numpy()
                batch = pa.record_batch([
                    dict_col(np.full(n, ci), chrom_dict, itype("chrom")),
                    pa.array(df["pos"].to_numpy(), pa.uint32()),
                    dict_col(df["ref"].to_numpy(), base_dict, pa.int8()),
                    dict_col(df["alt"].to_numpy(), base_dict, pa.int8()),
                    pa.array(df["key"].to_numpy(), pa.uint32()),
                    pa.array(df["score"].to_numpy(), pa.float32()),
                    dict_col(df["cls"].to_numpy(), class_dict, pa.int8()),
                    dict_col(df["tx"].to_numpy(), tx_dict, itype("transcript_id")),
                    dict_col(np.where(up < 0, 0, up), up_dict, itype("uniprot_id"), mask=up < 0),
                    pa.array(df["ppos"].to_numpy(), schema.field("protein_pos").type),
                    dict_col(df["pref"].to_numpy(), amino_dict, pa.int8()),
                    dict_col(df["palt"].to_numpy(), amino_dict, pa.int8()),
                ], schema=schema)
                out.write_batch(batch)
                del df, batch
                os.unlink(spill_of[chrom])
        return duplicates


def build_table(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    progress: bool = True,
    block_size: int = 16 << 20,
    tmp_dir: str | os.PathLike | None = None,
) -> BuildStats:
    """Convert a published AlphaMissense variant table into a lookup table, once.

    Streams ``src`` in blocks (never holding more than one contig's encoded rows, about
    25 bytes per row, in memory), validates every row, spills the encoded rows by contig
    to a temporary directory, then sorts each contig and writes the table.  The output
    appears atomically: it is written under a temporary name beside ``dst`` and renamed
    at the end, so an interrupted build never leaves a half-written table.

    Parameters
    ----------
    src : str or PathLike
        ``AlphaMissense_hg38.tsv.gz``, ``AlphaMissense_hg19.tsv.gz`` or
        ``AlphaMissense_isoforms_hg38.tsv.gz`` as published (gzip or bgzip; plain text is
        accepted too).  The layout is detected from the ``#CHROM ...`` header line.
    dst : str or PathLike
        Path of the table to write (an Arrow IPC file; ``.arrow`` is a good suffix).
        Overwritten if it exists.
    progress : bool, default True
        Show progress (rows, position, fraction of the input, rate, ETA: a live bar on a
        terminal, else a log line every 30 s) and one line per contig while writing, at INFO level on this module's logger.
    block_size : int, default 16 MiB
        Bytes of decompressed text parsed per block (the memory per block is a few
        times this).
    tmp_dir : str or PathLike, optional
        Where to spill the encoded rows (about 25 bytes per row: 1.8 GB for hg38).
        Default: a hidden directory beside ``dst``, removed afterwards.

    Returns
    -------
    BuildStats
        Rows, wall time, peak resident memory, source checksum, layout, genome, table
        size and rows per contig.

    Raises
    ------
    InputError
        ``src`` is missing, is not one of the three variant-level files (the message names
        what was found, e.g. the protein-level or gene-level table, or the ClinVar set),
        has a malformed row (its line number, column and value are given), or is
        truncated (a cut gzip stream, or a bgzip file without its EOF block).

    Examples
    --------
    >>> stats = build_table("AlphaMissense_hg38.tsv.gz", "am_hg38.arrow")  # doctest: +SKIP
    >>> stats.rows, stats.genome                                            # doctest: +SKIP
    (71697556, 'hg38')
    """
    t0 = time.perf_counter()
    src = os.fspath(src)
    dst = os.fspath(dst)
    if not os.path.isfile(src):
        raise InputError(f"AlphaMissense source {src!r} does not exist or is not a file",
                         "give the path of AlphaMissense_hg38.tsv.gz (or the hg19 / isoforms file)")
    out_dir = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(out_dir):
        raise ConfigError(f"output directory {out_dir!r} does not exist", "create it first")
    _check_bgzf_eof(src)
    n_header, cols = _read_header(src)
    layout = "canonical" if cols == _CANONICAL_COLUMNS else "isoforms"
    names = ["chrom", "pos", "ref", "alt"] + list(cols[4:])
    types = {
        "chrom": pa.string(), "pos": pa.int64(), "ref": pa.string(), "alt": pa.string(),
        "genome": pa.string(), "uniprot_id": pa.string(), "transcript_id": pa.string(),
        "protein_variant": pa.string(), "am_pathogenicity": pa.float32(), "am_class": pa.string(),
    }
    spill_dir = tempfile.mkdtemp(prefix=".am-build-", dir=os.fspath(tmp_dir) if tmp_dir else out_dir)
    tmp_path = os.path.join(out_dir, f".{os.path.basename(dst)}.tmp-{os.getpid()}")
    builder = _Builder(src, spill_dir, layout)
    total = os.path.getsize(src)
    raw, stream = _open_text_stream(src)
    prog = Progress(progress, fraction=lambda: min(raw.nbytes / max(total, 1), 1.0), label="am-build",
                    unit="rows", rate_unit="rows")
    if progress:
        log.info("am-build: reading %s (%s layout, %.1f MB)", src, layout, total / 1e6)
    try:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(skip_rows=n_header, column_names=names,
                                               block_size=block_size, use_threads=True),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={k: types[k] for k in names}, strings_can_be_null=False,
                    quoted_strings_can_be_null=False),
            )
            line = n_header
            for batch in reader:
                builder.add(batch, line)
                line += batch.num_rows
                if batch.num_rows:
                    last = batch.slice(batch.num_rows - 1)
                    where = f"{last.column(0)[0].as_py()}:{last.column(1)[0].as_py():,}"
                    prog.update(batch.num_rows, batch.num_rows, where)
        except pa.ArrowInvalid as e:
            raise InputError(
                f"{src!r} cannot be parsed as an AlphaMissense {layout} table "
                f"({len(names)} tab-separated columns): {e}",
                "a row with missing fields usually means the file was cut short; " + _BUILD_HINT,
            ) from None
        except (OSError, EOFError) as e:
            raise InputError(
                f"{src!r} ended early after {builder.rows:,} rows ({e}): the file is truncated",
                "download the file again and compare its size / checksum with the published one",
            ) from None
        finally:
            prog.close()
            raw.close()
        if builder.rows == 0:
            raise InputError(f"{src!r} has a header but no variant rows",
                             "the file is empty or was cut short; " + _BUILD_HINT)
        if len(builder.genomes) != 1:
            raise InputError(
                f"{src!r}: expected one value in the genome column (hg38 or hg19), "
                f"found {sorted(builder.genomes)}", _BUILD_HINT)
        genome = next(iter(builder.genomes))
        meta = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layout": layout,
            "genome": genome, "source": os.path.basename(src), "source_bytes": total,
            "source_sha256": raw.sha256.hexdigest(), "rows": builder.rows,
            "transcripts": len(builder.tx), "vareff_version": __version__,
        }
        duplicates = builder.finish(tmp_path, meta, progress)
        os.replace(tmp_path, dst)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    if duplicates:
        log.warning("am-build: %s rows repeat an (allele, transcript) pair; all are kept", f"{duplicates:,}")
    stats = BuildStats(
        rows=builder.rows, seconds=time.perf_counter() - t0,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        source=src, source_sha256=meta["source_sha256"], source_bytes=total, layout=layout,
        genome=genome, table=dst, table_bytes=os.path.getsize(dst),
        contigs={c: builder.contigs[c] for c in sorted(builder.contigs, key=_natural_contig_key)},
        transcripts=len(builder.tx), duplicate_rows=duplicates,
    )
    if progress:
        log.info("am-build: wrote %s rows to %s in %.1f s (%.1f MB)", f"{stats.rows:,}", dst,
                 stats.seconds, stats.table_bytes / 1e6)
    return stats


