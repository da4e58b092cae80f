"""Columnar reading of a text VCF (plain, gzip or BGZF): blocks of lines -> Arrow columns.

The record-by-record path (:class:`~vareff.read.vcf.VcfReader` over cyvcf2) costs several
microseconds of Python per record; this reader decompresses the file in large blocks, splits
lines and columns with pyarrow's CSV parser and checks them with vectorized tests, so no Python
object is made per record.  It yields only records it can vouch for: lines whose bytes are
printable ASCII separated by single tabs, with the header's column count, a POS of digits in
1..2^31-1, a REF of letters, ALT tokens that are ``.`` alone or non-empty, a numeric or missing
QUAL, and no INFO ``END`` (which moves a record's end in htslib).  Such a line is read by htslib
into exactly the fields taken here.

At the first line it cannot vouch for (or data it cannot decompress), :func:`iter_column_chunks`
hands the rest of the file, from the start of the chunk being filled, to the record-by-record
path: that line's error text, line number or ``--skip-malformed`` row come from the same code
as before, and the chunks are cut exactly as :func:`vareff.engine.run.iter_chunks` cuts them.
``VAREFF_HOST_PATH=cyvcf2`` forces the record-by-record path for a whole run.  See docs/host-path.md.
"""
from __future__ import annotations

import gzip
import logging
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from vareff.read.undeclared import Undeclared
from vareff.read.vcf import MAX_POS, VcfReader

log = logging.getLogger(__name__)

#: environment variable: ``cyvcf2`` forces the record-by-record path (tests compare the two)
ENV = "VAREFF_HOST_PATH"
#: decompressed bytes read per block
BLOCK_BYTES = 4 << 20

_QUAL = r"^(\.|[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)$"


def forced_off() -> bool:
    """True when the environment forces the record-by-record path."""
    return os.environ.get(ENV, "").strip().lower() == "cyvcf2"


@dataclass
class ColumnChunk:
    """Records of one chunk as columns (``first``: 1-based record number of the first one;
    ``alts``: a list column, ``['.']`` for ALT ``.``; ``n_alleles``: its lengths)."""

    chrom: pl.Series
    pos: np.ndarray
    id: pl.Series
    ref: pl.Series
    alts: pl.Series
    n_alleles: np.ndarray
    first: int

    def __len__(self) -> int:
        return len(self.pos)

    def slice(self, a: int, b: int) -> "ColumnChunk":
        return ColumnChunk(self.chrom.slice(a, b - a), self.pos[a:b], self.id.slice(a, b - a),
                           self.ref.slice(a, b - a), self.alts.slice(a, b - a), self.n_alleles[a:b], self.first + a)

    @staticmethod
    def concat(parts: list["ColumnChunk"]) -> "ColumnChunk":
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: pl.concat([getattr(p, name) for p in parts], rechunk=True)  # noqa: E731
        return ColumnChunk(cat("chrom"), np.concatenate([p.pos for p in parts]), cat("id"), cat("ref"), cat("alts"),
                           np.concatenate([p.n_alleles for p in parts]), parts[0].first)


def _open(path: str):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _text_blocks(path: str, header_lines: int, block_bytes: int) -> Iterator[list[memoryview]]:
    """Blocks of whole data lines (each ends with a newline), each in a one-item list that the
    consumer empties, so this generator keeps nothing of a block but its partial last line while
    the block is used; raises OSError/EOFError/zlib.error when the data cannot be decompressed."""
    with _open(path) as fh:
        rest, skip = b"", header_lines
        while True:
            data = fh.read(block_bytes)
            if not data:
                if rest:
                    yield [memoryview(rest + b"\n")]
                return
            buf, data = rest + data, None
            if skip:
                at = 0
                while skip and (nl := buf.find(b"\n", at)) >= 0:
                    at, skip = nl + 1, skip - 1
                buf = buf[at:]
            cut = buf.rfind(b"\n") + 1
            if skip:
                rest = buf
                continue
            rest = buf[cut:]
            if cut:
                box, buf = [memoryview(buf)[:cut]], None
                yield box


#: inputs of at least this many bytes of text (a gzip file counts 4x its size) use the compiled
#: passes (vareff/read/scan.py, vareff/normalize/kernel.py); loading numba costs a fixed fraction
#: of a second, more than the polars and numpy passes cost on a smaller input (same rows either way)
COMPILED_MIN_BYTES = 12 << 20


def compiled(path: str) -> bool:
    """Whether a run on ``path`` uses the compiled passes (see :data:`COMPILED_MIN_BYTES`)."""
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        return os.path.getsize(path) * (4 if gz else 1) >= COMPILED_MIN_BYTES
    except OSError:
        return False


#: bytes a vouched line may hold besides its tabs and newline: printable ASCII, no space
BAD_BYTE = np.ones(256, dtype=bool)
BAD_BYTE[33:127] = False
BAD_BYTE[[9, 10]] = False


def scan_numpy(a: np.ndarray, n_cols: int) -> tuple[int, int, int]:
    """:func:`vareff.read.scan.scan_lines` with numpy (no compiled code to load): ``(good lines,
    lines, offset past the good ones)`` of a block; positions, not per-byte sums."""
    nl = np.flatnonzero(a == 10)
    tabs = np.flatnonzero(a == 9)
    wrong_count = np.flatnonzero(np.diff(np.searchsorted(tabs, nl), prepend=0) != n_cols - 1)
    # empty fields: a tab after a line start or a tab, or before a newline; an empty line
    empty_tab = tabs[(a[tabs + 1] == 9) | (a[tabs + 1] == 10) | (tabs == 0) | (a[tabs - 1] == 10)]
    empty_line = nl[(nl == 0) | (a[nl - 1] == 10)]
    bad = np.concatenate((np.flatnonzero(BAD_BYTE[a]), empty_tab, empty_line))
    first = [int(wrong_count[0])] if len(wrong_count) else []
    if len(bad):
        first.append(int(np.searchsorted(nl, bad.min())))
    good = min(first, default=len(nl))
    return good, len(nl), int(nl[good - 1]) + 1 if good else 0


_NAMES = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


def _parse(buf: bytes, n_cols: int) -> pa.Table:
    names = _NAMES + [f"c{i}" for i in range(8, n_cols)]
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(buf)),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, double_quote=False,
                                         newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in _NAMES}, null_values=[],
                                             strings_can_be_null=False, include_columns=_NAMES))


def _vouched(t: pa.Table) -> int:
    """Number of leading rows whose field values pass the column checks (literal tests where a
    regular expression is not needed; every field is non-empty printable ASCII by now)."""
    c = t.column
    alt, has = c("ALT"), pc.match_substring
    checks = [
        pc.ascii_is_decimal(c("POS")), pc.less_equal(pc.utf8_length(c("POS")), 10),
        pc.ascii_is_alpha(c("REF")),
        pc.invert(pc.starts_with(c("CHROM"), "#")),
        # ALT: '.' alone, or comma-separated tokens none of which is empty or '.'
        pc.invert(pc.or_(pc.or_(pc.starts_with(alt, ","), pc.ends_with(alt, ",")), has(alt, ",,"))),
        pc.or_(pc.equal(alt, "."), pc.invert(pc.or_(pc.or_(pc.starts_with(alt, ".,"), pc.ends_with(alt, ",.")),
                                                     has(alt, ",.,")))),
        pc.or_(pc.equal(c("QUAL"), "."), pc.match_substring_regex(c("QUAL"), _QUAL)),
        pc.invert(pc.or_(pc.starts_with(c("INFO"), "END="), has(c("INFO"), ";END="))),
    ]
    ok = checks[0]
    for x in checks[1:]:
        ok = pc.and_(ok, x)
    good = np.asarray(ok.combine_chunks() if isinstance(ok, pa.ChunkedArray) else ok, dtype=bool)
    # POS range (digits only by now; 10 digits may pass 2^31-1)
    bad = np.flatnonzero(~good)
    n = int(bad[0]) if len(bad) else len(good)
    if n:
        p = pc.cast(c("POS").slice(0, n), pa.int64()).to_numpy()
        out = np.flatnonzero((p < 1) | (p > MAX_POS))
        if len(out):
            n = int(out[0])
    return n


def _columns(t: pa.Table, first: int) -> ColumnChunk:
    chrom = t.column("CHROM").combine_chunks()
    pos = pc.cast(t.column("POS"), pa.int64()).combine_chunks().to_numpy()
    ids = t.column("ID").combine_chunks()
    ids = pc.if_else(pc.equal(ids, "."), pa.scalar(None, pa.string()), ids)
    alt = t.column("ALT").combine_chunks()
    alts = pc.split_pattern(alt, ",")  # ALT '.' gives ['.']: the one row of a record without ALT
    n_alleles = pc.list_value_length(alts).to_numpy(zero_copy_only=False).astype(np.int64)
    return ColumnChunk(pl.from_arrow(chrom).cast(pl.Utf8), pos, pl.from_arrow(ids).cast(pl.Utf8),
                       pl.from_arrow(t.column("REF").combine_chunks()).cast(pl.Utf8),
                       pl.from_arrow(alts).cast(pl.List(pl.Utf8)), n_alleles, first)


def record_blocks(path: str, header_lines: int, n_cols: int, block_bytes: int | None = None,
                  undeclared: Undeclared | None = None) -> Iterator[tuple[ColumnChunk, bool]]:
    """``(records, clean)`` per block; ``clean`` False means reading must stop after ``records``
    (the next line is one this reader cannot vouch for, or the data cannot be decompressed).
    ``undeclared`` prints htslib's warnings for names the header lacks (vareff/read/undeclared.py).
    No block's text or table is held while its records are consumed (memory: one block)."""
    if compiled(path):
        from vareff.read.scan import scan_lines  # numba: imported by large inputs only

        def scan(a, n_cols):
            return scan_lines(a, n_cols, BAD_BYTE)
    else:
        scan = scan_numpy
    first = 1
    try:
        for box in _text_blocks(path, header_lines, block_bytes or BLOCK_BYTES):
            buf = box.pop()
            n, lines, end = scan(np.frombuffer(buf, dtype=np.uint8), n_cols)
            try:
                t = _parse(buf[:end], n_cols) if n else None
            except pa.ArrowInvalid:  # e.g. a line longer than the parser's block: hand it over
                t = None
            buf = None
            m = _vouched(t) if t is not None else 0
            part = None
            if m and undeclared is not None:
                m = undeclared.check(t.slice(0, m))  # stops at a record htslib refuses
            if m:
                part = _columns(t.slice(0, m), first)
            t = None
            if part is not None:
                yield part, True
                first += m
                part = None
            if m < lines:
                yield _empty(first), False
                return
    except (OSError, EOFError, zlib.error):
        yield _empty(first), False


_END = object()


def prefetched(items: Iterator, name: str = "vareff-reader") -> Iterator:
    """The items of ``items``, produced one ahead by a background thread, so reading the next block
    (decompression, the byte scan, pyarrow's parser: all release the GIL) overlaps the work on the
    current one.  An error of the producer is raised here; leaving early stops the producer."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:  # noqa: BLE001 (handed to the consumer)
            put((None, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, name=name, daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        t.join()


def _empty(first: int) -> ColumnChunk:
    s = pl.Series([], dtype=pl.Utf8)
    return ColumnChunk(s, np.zeros(0, np.int64), s, s, pl.Series([], dtype=pl.List(pl.Utf8)),
                       np.zeros(0, np.int64), first)


def cut_points(chunk: ColumnChunk, chunk_size: int, block: int, allele_cost: float, budget: float,
               final: bool) -> list[int]:
    """Ends of the complete chunks in ``chunk`` (the rules of :func:`vareff.engine.run.iter_chunks`:
    at most ``chunk_size`` records, one ``block``-base bin of one contig, closed once the summed
    cost reaches ``budget``); the records after the last end wait for more (all are cut if ``final``)."""
    n = len(chunk)
    if not n:
        return []
    bins = chunk.pos // block
    change = np.zeros(n, dtype=bool)
    if n > 1:
        change[1:] = (bins[1:] != bins[:-1]) | (chunk.chrom.slice(1) != chunk.chrom.slice(0, n - 1)).to_numpy()
    seg = np.append(np.flatnonzero(change), n)
    ends, s = [], 0
    while s < n:
        lim = min(s + chunk_size, int(seg[np.searchsorted(seg, s, side="right")]))
        if allele_cost:
            cum = np.cumsum(allele_cost * chunk.n_alleles[s:lim])
            hit = np.flatnonzero(cum >= budget)
            if len(hit):
                lim = min(lim, s + int(hit[0]) + 1)
        if lim == n and not final:
            break
        ends.append(lim)
        s = lim
    return ends


def iter_column_chunks(reader: VcfReader, n_cols: int, chunk_size: int, block: int, allele_cost: float,
                       budget: float, fallback, block_bytes: int | None = None):
    """Chunks of the whole input: :class:`ColumnChunk` while every line is vouched for, then, from
    the start of the chunk being filled, ``fallback(items)`` (``iter_chunks`` over the reader's
    ``(variant, loc)`` items after skipping the records already yielded as columns)."""
    pending: list[ColumnChunk] = []
    undeclared = Undeclared(reader.vcf)
    for part, clean in prefetched(record_blocks(reader.path, reader.header_lines, n_cols, block_bytes, undeclared)):
        if len(part):
            pending.append(part)
        if not clean:
            undeclared.hand_over(reader.vcf)  # htslib re-reads from the start: no second warning
        if not pending:
            if not clean:
                log.debug("columnar reader: record-by-record from record 1")
                yield from fallback(iter(reader))
                return
            continue
        cur = ColumnChunk.concat(pending)
        ends = cut_points(cur, chunk_size, block, allele_cost, budget, final=False)
        a = 0
        for e in ends:
            yield cur.slice(a, e)
            a = e
        pending = [cur.slice(a, len(cur))] if a < len(cur) else []
        if not clean:
            items = iter(reader)
            done = cur.first - 1 + a
            log.debug("columnar reader: record-by-record from record %d", done + 1)
            for _ in islice(items, done):
                pass
            yield from fallback(items)
            return
    if pending:
        cur = ColumnChunk.concat(pending)
        a = 0
        for e in cut_points(cur, chunk_size, block, allele_cost, budget, final=True):
            yield cur.slice(a, e)
            a = e
