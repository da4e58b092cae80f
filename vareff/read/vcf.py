"""Streaming VCF/BCF input through cyvcf2, with regions, stdin and malformed-record detection.

htslib accepts some broken lines (e.g. space-separated fields) as a record whose
REF is missing; reading ``REF`` or ``ID`` of such a record dereferences a null
pointer and kills the process.  :func:`is_malformed` detects them from fields
that are safe to read (a parsed record always has ``end > start``), so they can be
reported with their line number instead.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import cyvcf2

from vareff.errors import ConfigError, InputError
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
                if not line.startswith(b"#"):
                    break
                n += 1
        return n
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


class VcfReader:
    """Iterate records of a VCF/VCF.gz/BCF file or ``-`` (stdin) in file order.

    Each item is ``(variant, loc)``; ``describe(loc)`` turns ``loc`` into a human-readable
    location ("line 28", or "record 3 of region chr1:1-100") for error messages.
    """

    def __init__(self, path: str | os.PathLike, regions: list[Region] | None = None, threads: int = 1):
        self.path = os.fspath(path)
        if self.path != "-" and not os.path.exists(self.path):
            raise InputError(f"input VCF {self.path!r} does not exist", "check the INPUT path (use - for stdin)")
        self.regions = list(regions or [])
        if self.regions:
            if self.path == "-":
                raise ConfigError("-r/--region cannot be used when reading from stdin",
                                  "write the input to an indexed file (bgzip + tabix) first")
            if not any(os.path.exists(self.path + ext) for ext in (".tbi", ".csi")):
                raise InputError(
                    f"-r/--region needs an index for {self.path!r}, and there is none (.tbi or .csi)",
                    f"bgzip the file and index it: bgzip IN.vcf && tabix -p vcf IN.vcf.gz (or bcftools index {self.path})",
                )
        try:
            self.vcf = cyvcf2.VCF(self.path, threads=threads, lazy=True)
        except (OSError, IOError) as e:
            raise InputError(f"cannot open input VCF {self.path!r}: {e}",
                             "is it a VCF, VCF.gz or BCF file?") from None
        self.header_lines = _count_header_lines(self.path)
        self.seqnames = list(self.vcf.seqnames) if self.regions else []

    def describe(self, loc: tuple[int, str | None]) -> str:
        n, region = loc
        if region is not None:
            return f"record {n} of region {region}"
        if self.header_lines is not None:
            return f"line {self.header_lines + n}"
        return f"record {n}"

    def __iter__(self) -> Iterator[tuple[cyvcf2.Variant, tuple[int, str | None]]]:
        if not self.regions:
            for n, v in enumerate(self.vcf, 1):
                yield v, (n, None)
            return
        seen: dict[str, list[tuple[int, int | None]]] = {}
        for reg in self.regions:
            chrom = resolve_contig(reg.chrom, self.seqnames) if self.seqnames else reg.chrom
            if chrom is None:
                log.warning("region %s: contig not in the input's index; no records", reg.htslib(reg.chrom))
                continue
            q = reg.htslib(chrom)
            earlier = seen.setdefault(chrom, [])
            for n, v in enumerate(self.vcf(q), 1):
                s = v.start
                if any(a <= s and (b is None or s < b) for a, b in earlier):
                    continue  # already emitted by an overlapping earlier region
                yield v, (n, q)
            earlier.append((reg.start0, reg.end0))

    def close(self) -> None:
        self.vcf.close()
