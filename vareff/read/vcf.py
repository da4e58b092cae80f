"""Streaming VCF/BCF input through cyvcf2, with regions, stdin and malformed-record detection.

htslib accepts some broken lines (e.g. space-separated fields) as a record whose
REF is missing; reading ``REF`` or ``ID`` of such a record dereferences a null
pointer and kills the process.  :func:`is_malformed` detects them from fields
that are safe to read (a parsed record always has ``end > start``), so they can be
reported with their line number instead.

Lines htslib refuses outright (too few columns, POS not a number, ...) make cyvcf2 raise;
htslib has then consumed that one line and iteration can go on, so the reader yields a
:class:`BadRecord` in its place and keeps reading.  Only on that error path is the line
itself read back from the file (:class:`_LineCursor`), to say what is wrong with it and to
tell a bad line from unreadable (corrupt or truncated) compressed data.  The normal path
adds no per-record Python.  Checks made before reading: the BGZF end-of-file marker
(truncated downloads), the header's ``#CHROM`` line, and for ``-r`` an index that matches
the file (:mod:`vareff.read.index`).  See docs/input-checks.md.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import cyvcf2

from vareff.errors import ConfigError, InputError, MalformedRecordError
from vareff.read.index import REINDEX, check_index
from vareff.window.contigs import resolve_contig

log = logging.getLogger(__name__)

_REGION = re.compile(r"^(?P<chrom>[^:]+)(?::(?P<start>[\d,_]+)?(?:-(?P<end>[\d,_]+)?)?)?$")


@dataclass(frozen=True)
class Region:
    """Genomic region, 0-based half-open; ``end0=None`` means to the contig end."""

    chrom: str
    start0: int = 0
    end0: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Region":
        """Parse ``chr``, ``chr:start``, ``chr:start-end`` (1-based inclusive, as bcftools)."""
        m = _REGION.match(text.strip())
        if not m:
            raise ConfigError(f"region {text!r} is not CHROM[:START[-END]]", "e.g. -r chr17:43044295-43125483")
        num = lambda s: int(s.replace(",", "").replace("_", "")) if s else None  # noqa: E731
        start, end = num(m["start"]), num(m["end"])
        if start is not None and start < 1 or (end is not None and start is not None and end < start):
            raise ConfigError(f"region {text!r} has an empty or negative range", "START and END are 1-based, START <= END")
        return cls(m["chrom"], (start or 1) - 1, end)

    def htslib(self, chrom: str) -> str:
        end = "" if self.end0 is None else str(self.end0)
        return f"{chrom}:{self.start0 + 1}-{end}" if (self.start0 or self.end0) else chrom


def is_malformed(v: cyvcf2.Variant) -> bool:
    """True for records htslib could not parse into REF/ALT (never touches REF or ID)."""
    return v.end <= v.start


#: the 28-byte empty block that ends every complete BGZF file (SAM/BAM spec, section 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: largest POS vareff accepts: BCF, tabix and cyvcf2's ``POS`` hold it in 32 bits
MAX_POS = 2**31 - 1
_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
#: cyvcf2 errors in a row with no record read in between: the data cannot be read any further
_STUCK = 1000


class BadRecord:
    """Stands in for a line htslib refused: ``CHROM``/``POS`` of the record before it (so chunks
    are cut as if it were not there), ``end <= start`` (so :func:`is_malformed` holds), and what
    is known about the line (``text``, ``problem``) for the message or the malformed row."""

    __slots__ = ("CHROM", "POS", "start", "end", "text", "problem")

    def __init__(self, prev, text: str | None, problem: str):
        self.CHROM, self.POS = (prev.CHROM, prev.POS) if prev is not None else ("", 0)
        self.start = self.end = 0
        self.text, self.problem = text, problem

    def __str__(self) -> str:
        return self.text or ""


def line_problem(text: str, n_samples: int) -> str:
    """What is wrong with one VCF data line (its text without the newline), in words."""
    fields = text.split("\t")
    if len(fields) < 8:
        if " " in text and len(text.split()) >= 8:
            return "fields are separated by spaces, not tabs"
        return f"it has {len(fields)} tab-separated columns; a VCF record needs at least 8"
    for name, value in zip(_COLUMNS, fields):
        if value != value.strip() or (name in ("CHROM", "POS", "REF", "ALT") and any(c.isspace() for c in value)):
            return f"{name} {value!r} contains whitespace"
    if not fields[1].isdigit() or int(fields[1]) < 1:
        return f"POS {fields[1]!r} is not a positive integer"
    if int(fields[1]) > MAX_POS:
        return f"POS {fields[1]} is larger than {MAX_POS} (2^31-1), the largest position vareff supports"
    if n_samples and len(fields) != 9 + n_samples:
        return f"it has {max(len(fields) - 9, 0)} sample columns but the header names {n_samples}"
    for value in fields[8:]:
        if any(c.isspace() for c in value):
            return f"sample field {value!r} contains whitespace"
    return "htslib could not parse it (its message is above)"


class _LineCursor:
    """Reads a text VCF (plain or gzip/BGZF) forward to a given line; used on the error path only."""

    def __init__(self, path: str):
        self.path, self.fh, self.lineno = path, None, 0

    def line(self, lineno: int) -> str:
        """The text of 1-based line ``lineno``; InputError when the data cannot be read that far."""
        try:
            if self.fh is None or lineno <= self.lineno:
                if self.fh is not None:
                    self.fh.close()
                with open(self.path, "rb") as fh:
                    gz = fh.read(2) == b"\x1f\x8b"
                self.fh, self.lineno = (gzip.open if gz else open)(self.path, "rb"), 0
            raw = b""
            while self.lineno < lineno:
                raw = self.fh.readline()
                if not raw:
                    raise EOFError("the data ends before that line")
                self.lineno += 1
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(
                f"{self.path!r} cannot be read past line {self.lineno}: the compressed data is corrupt or "
                f"truncated ({e})", "re-create or re-download the file (bgzip -t FILE tests it)") from None
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def verify(self) -> None:
        """Decompress the whole file once (InputError if it cannot be): htslib reports unreadable
        compressed data exactly as it reports a bad line, and with threads even on the lines before it."""
        fh, n = None, 0
        try:
            with open(self.path, "rb") as raw:
                if raw.read(2) != b"\x1f\x8b":
                    return
            fh = gzip.open(self.path, "rb")
            for n, _ in enumerate(fh, 1):
                pass
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(
                f"{self.path!r} cannot be read past line {n}: the compressed data is corrupt or truncated ({e})",
                "re-create or re-download the file (bgzip -t FILE tests it)") from None
        finally:
            if fh is not None:
                fh.close()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def is_bgzf(head: bytes) -> bool:
    """True when ``head`` (the first 16 bytes) starts a BGZF block (VCF.gz or BCF)."""
    return head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def check_complete(path: str, allow_truncated: bool = False) -> None:
    """Raise InputError when a BGZF-compressed file (VCF.gz or BCF) lacks its end-of-file marker:
    it was cut short, and htslib would read the records before the cut and stop without an error
    (``allow_truncated``: only warn)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
        if not is_bgzf(head):
            return  # plain text, or plain gzip (zlib reports a cut itself)
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(size - len(BGZF_EOF), 0))
        tail = fh.read()
    if tail != BGZF_EOF:
        report_truncated(repr(path), allow_truncated)


def report_truncated(name: str, allow_truncated: bool) -> None:
    """A BGZF input without its end-of-file marker: an error, or a warning with --allow-truncated."""
    if allow_truncated:
        log.warning("input %s lacks the BGZF end-of-file marker: it is truncated; scoring the records it "
                    "still holds (--allow-truncated)", name)
        return
    raise InputError(
        f"input {name} is truncated: it does not end with the BGZF end-of-file marker, so records "
        "at its end may be missing",
        "re-create or re-download the file (bgzip -t FILE tests it); pass --allow-truncated to score "
        "the records it still holds")


def header_problem(path: str) -> str:
    """Why htslib could not read the header of a text VCF (plain or gzipped), in words."""
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (gzip.open if gz else open)(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if raw.startswith(b"BCF\x02"):
                    return "the BCF header cannot be parsed"
                if not raw.startswith(b"##"):
                    if raw.startswith(b"#CHROM"):
                        return "htslib could not parse its header (its message is above)"
                    return (f"it has no #CHROM header line (line {n} is {raw[:60].decode('utf-8', 'replace')!r}); "
                            "the columns line '#CHROM<TAB>POS<TAB>ID<TAB>REF<TAB>ALT<TAB>QUAL<TAB>FILTER<TAB>INFO' "
                            "must follow the ## lines")
            return "it has no #CHROM header line"
    except (OSError, EOFError, zlib.error) as e:
        return f"its data cannot be read ({e}); the file is corrupt or truncated"


def _count_header_lines(path: str) -> int | None:
    """Number of header lines of a text VCF (plain or (b)gzipped), or None for BCF/stdin."""
    if path == "-" or path.endswith(".bcf"):
        return None
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        n = 0
        with opener(path, "rb") as fh:
            for line in fh:
                if n == 0 and line.startswith(b"BCF"):
                    return None
                if not line.startswith(b"#"):
                    break
                n += 1
        return n
    except (OSError, EOFError, zlib.error):
        return None


class VcfReader:
    """Iterate records of a VCF/VCF.gz/BCF file or ``-`` (stdin) in file order.

    Each item is ``(variant, loc)``; ``describe(loc)`` turns ``loc`` into a human-readable
    location ("line 28", or "record 3 of region chr1:1-100") for error messages.
    """

    def __init__(self, path: str | os.PathLike, regions: list[Region] | None = None, threads: int = 1,
                 allow_truncated: bool = False):
        self.path = os.fspath(path)
        if self.path != "-" and not os.path.isfile(self.path):
            what = "is a directory" if os.path.isdir(self.path) else "does not exist"
            raise InputError(f"input VCF {self.path!r} {what}", "check the INPUT path (use - for stdin)")
        self.regions = list(regions or [])
        if self.path != "-":
            check_complete(self.path, allow_truncated)
        if self.regions:
            if self.path == "-":
                raise ConfigError("-r/--region cannot be used when reading from stdin",
                                  "write the input to an indexed file (bgzip + tabix) first")
            if not any(os.path.exists(self.path + ext) for ext in (".tbi", ".csi")):
                check_index(self.path, [])  # raises: no index
        self.allow_truncated = allow_truncated
        self._tap = None
        if self.path == "-":  # through a pipe that keeps the stream's ends (a cut BGZF stream is an error)
            from vareff.read.stdin import StdinTap

            self._tap = StdinTap()
        try:
            self.vcf = cyvcf2.VCF(self._tap.path if self._tap else self.path, threads=threads, lazy=True)
        except Exception as e:  # cyvcf2 raises a bare Exception for a header htslib cannot parse
            why = header_problem(self.path) if self.path != "-" else str(e)
            raise InputError(f"cannot read input VCF {self.path!r}: {why}",
                             "is it a VCF, VCF.gz or BCF file with a complete header?") from None
        self.n_samples = len(self.vcf.samples)
        self.header_lines = _count_header_lines(self.path)
        self.seqnames = list(self.vcf.seqnames) if self.regions else []
        if self.regions:
            check_index(self.path, sorted({c for r in self.regions
                                           if (c := resolve_contig(r.chrom, self.seqnames)) is not None}))
        self._cursor: _LineCursor | None = None

    def describe(self, loc: tuple[int, str | None]) -> str:
        n, region = loc
        if region is not None:
            return f"record {n} of region {region}"
        if self.header_lines is not None:
            return f"line {self.header_lines + n}"
        return f"record {n}"

    def __iter__(self) -> Iterator[tuple[cyvcf2.Variant, tuple[int, str | None]]]:
        if not self.regions:
            yield from self._stream(self.vcf, None)
            if self._tap is not None:
                self._tap.check(self.allow_truncated)
            return
        seen: dict[str, list[tuple[int, int | None]]] = {}
        for reg in self.regions:
            chrom = resolve_contig(reg.chrom, self.seqnames) if self.seqnames else reg.chrom
            if chrom is None:
                log.warning("region %s: contig not in the input's index; no records", reg.htslib(reg.chrom))
                continue
            q = reg.htslib(chrom)
            earlier = seen.setdefault(chrom, [])
            end0 = reg.end0 if reg.end0 is not None else float("inf")
            for v, loc in self._stream(self.vcf(q), q):
                s = v.start
                if not isinstance(v, BadRecord) and (v.CHROM != chrom or s >= end0 or max(v.end, s + 1) <= reg.start0):
                    raise InputError(
                        f"the index of {self.path!r} does not match the file: region {q} returned the record "
                        f"{v.CHROM}:{v.POS}, which lies outside it", REINDEX.format(p=self.path))
                if any(a <= s and (b is None or s < b) for a, b in earlier):
                    continue  # already emitted by an overlapping earlier region
                yield v, loc
            earlier.append((reg.start0, reg.end0))

    def _stream(self, records, region: str | None):
        """``(variant, (n, region))`` for each record of ``records``; a line htslib refuses
        (cyvcf2 raises, having consumed it) becomes a :class:`BadRecord` and reading goes on."""
        n, stuck, last_err, v = 0, 0, -1, None
        while True:
            try:
                for v in records:
                    n += 1
                    yield v, (n, region)
                return
            except Exception as e:  # noqa: BLE001 (cyvcf2 raises a bare Exception)
                n += 1
                if region is not None:  # cyvcf2's region iterator cannot go on after an error
                    raise MalformedRecordError(
                        f"{self.path!r}: {self.describe((n, region))} cannot be parsed ({e}): the line is malformed, "
                        "or the index is stale", "fix the line (or re-index: tabix -f -p vcf FILE); without -r, "
                        "--skip-malformed can keep going past it") from None
                stuck = stuck + 1 if last_err == n - 1 else 1  # errors with no record read in between
                last_err = n
                if stuck >= _STUCK:
                    raise InputError(f"{self.path!r} cannot be read past {self.describe((n - stuck, region))}: "
                                     f"htslib fails on every read ({e})",
                                     "the file is corrupt or truncated; re-create or re-download it") from None
                yield self._bad(v, (n, region), e), (n, region)

    def _bad(self, prev, loc: tuple[int, str | None], err: Exception) -> BadRecord:
        """A refused line, with its text when it can be read back (text files, no region)."""
        if self.header_lines is None or self.path == "-":
            if self.header_lines is None and self.path != "-":  # BCF: records are binary, nothing to skip
                raise InputError(f"{self.path!r}: {self.describe(loc)} cannot be decoded: the BCF file is corrupt "
                                 f"or truncated ({err})", "re-create the BCF (bcftools view -Ob)") from None
            return BadRecord(prev, None, f"htslib could not parse it: {err}")
        if self._cursor is None:
            self._cursor = _LineCursor(self.path)
            self._cursor.verify()  # first refused line: is it the line, or the compressed data?
        text = self._cursor.line(self.header_lines + loc[0])
        return BadRecord(prev, text, line_problem(text, self.n_samples))

    def line_text(self, loc: tuple[int, str | None]) -> str | None:
        """The text of a record's line (error path only), or None when it cannot be told."""
        if self.header_lines is None or loc[1] is not None or self.path == "-":
            return None
        if self._cursor is None:
            self._cursor = _LineCursor(self.path)
        return self._cursor.line(self.header_lines + loc[0])

    def close(self) -> None:
        self.vcf.close()
        if self._cursor is not None:
            self._cursor.close()
        if self._tap is not None:
            self._tap.close()
