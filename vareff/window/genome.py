"""Reference genome access: contig aliasing, sliced FASTAs with an offset, N padding at edges.

Coordinates here are genomic, 0-based half-open (``start0``/``end0``).  A FASTA
contig may hold only a slice of a chromosome (``ContigSlice``): genomic position
``p`` is then file position ``p - offset``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pysam

from vareff.errors import ConfigError, InputError
from vareff.window.contigs import alias_candidates, resolve_contig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContigSlice:
    """VCF contig ``chrom`` is stored as FASTA contig ``fasta_contig`` starting at genomic ``offset0``."""

    chrom: str
    fasta_contig: str
    offset0: int = 0

    @classmethod
    def parse(cls, text: str) -> "ContigSlice":
        """Parse ``CHROM=FASTA_CONTIG[+OFFSET]`` (OFFSET: 0-based genomic start of the contig)."""
        chrom, sep, rest = text.partition("=")
        if not sep or not chrom or not rest:
            raise ConfigError(
                f"--contig-map {text!r} is not CHROM=FASTA_CONTIG[+OFFSET]",
                "e.g. --contig-map chr22=chr22+32000000 for a FASTA whose chr22 starts at 32,000,001",
            )
        contig, _, off = rest.partition("+")
        try:
            offset0 = int(off.replace(",", "").replace("_", "")) if off else 0
        except ValueError:
            raise ConfigError(f"--contig-map {text!r}: offset {off!r} is not an integer") from None
        return cls(chrom, contig, offset0)


class Genome:
    """A FASTA reference (pysam, needs a .fai index) seen in genomic coordinates."""

    def __init__(self, path: str | os.PathLike, contig_map: list[ContigSlice] | None = None):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError(f"FASTA {self.path!r} does not exist", "check the -f/--fasta path")
        try:
            self._fa = pysam.FastaFile(self.path)
        except (OSError, ValueError) as e:
            raise InputError(
                f"cannot open FASTA {self.path!r}: {e}",
                "the FASTA needs a .fai index (samtools faidx REF.fa); bgzipped FASTAs also need .gzi",
            ) from None
        self.lengths = dict(zip(self._fa.references, self._fa.lengths))
        self._explicit = {c.chrom: c for c in (contig_map or [])}
        for c in self._explicit.values():
            if c.fasta_contig not in self.lengths:
                raise ConfigError(
                    f"--contig-map names FASTA contig {c.fasta_contig!r}, which {self.path!r} does not have",
                    f"its contigs are: {', '.join(list(self.lengths)[:10])}",
                )
        self._cache: dict[str, ContigSlice | None] = {}
        self._aliased: set[str] = set()

    def resolve(self, chrom: str) -> ContigSlice | None:
        """Where VCF contig ``chrom`` lives in this FASTA, or None when it is absent."""
        hit = self._cache.get(chrom, ...)
        if hit is not ...:
            return hit
        key = self.map_key_for(chrom)
        if key is not None:
            hit = ContigSlice(chrom, self._explicit[key].fasta_contig, self._explicit[key].offset0)
        else:
            name = resolve_contig(chrom, self.lengths)
            hit = ContigSlice(chrom, name, 0) if name is not None else None
            if name is not None and name != chrom and chrom not in self._aliased:
                self._aliased.add(chrom)
                log.info("contig %r is named %r in the FASTA; using it", chrom, name)
        self._cache[chrom] = hit
        return hit

    def map_key_for(self, chrom: str) -> str | None:
        """The ``--contig-map`` key that names VCF contig ``chrom`` (``17``/``chr17``, ``MT``/``chrM``
        match each other, as everywhere else), or None."""
        for cand in alias_candidates(chrom):
            if cand in self._explicit:
                return cand
        return None

    def unused_map_keys(self, vcf_contigs) -> list[str]:
        """``--contig-map`` keys that name none of ``vcf_contigs`` (a likely typo or wrong build)."""
        used = {self.map_key_for(c) for c in vcf_contigs}
        return [k for k in self._explicit if k not in used]

    @property
    def contigs(self) -> list[str]:
        """The FASTA's contig names, in file order."""
        return list(self.lengths)

    def span(self, chrom: str) -> tuple[int, int] | None:
        """Genomic [start0, end0) that the FASTA covers for ``chrom``."""
        s = self.resolve(chrom)
        if s is None:
            return None
        return s.offset0, s.offset0 + self.lengths[s.fasta_contig]

    def fetch(self, chrom: str, start0: int, end0: int) -> str:
        """Upper-case sequence of genomic [start0, end0), padded with N where the FASTA has none."""
        s = self.resolve(chrom)
        n = end0 - start0
        if s is None:
            return "N" * n
        lo, hi = s.offset0, s.offset0 + self.lengths[s.fasta_contig]
        a, b = max(start0, lo), min(end0, hi)
        if a >= b:
            return "N" * n
        seq = self._fa.fetch(s.fasta_contig, a - lo, b - lo).upper()
        return "N" * (a - start0) + seq + "N" * (end0 - b)

    def covers(self, chrom: str, start0: int, end0: int) -> bool:
        """True when every base of genomic [start0, end0) is in the FASTA."""
        sp = self.span(chrom)
        return sp is not None and sp[0] <= start0 and end0 <= sp[1]

    def close(self) -> None:
        self._fa.close()
