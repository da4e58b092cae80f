"""``vareff precompute``: saturation mutagenesis of regions straight into the score store.

Every position of the regions gets its 3 SNVs (and, with ``deletions``, its 1-nt deletion,
written VCF-style with the preceding base).  Positions go to the backends in chunks of
``chunk_size`` consecutive positions within one 1 Mb block, so a backend shares its reference
passes among all alleles of a window (SpliceAI: one valid pass per group of sites, then only the
cone each alt changes; GROVER/NT: one reference window on the genome-wide grid).  Alleles already
in the store are served from it, so an interrupted precompute continues where it stopped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vareff.errors import ConfigError, InputError
from vareff.normalize.alleles import Record
from vareff.read.vcf import Region

log = logging.getLogger("vareff")

BLOCK = 1_000_000


@dataclass
class PrecomputeStats:
    regions: int = 0
    positions: int = 0
    alleles: int = 0
    served: int = 0
    computed: int = 0
    seconds: float = 0.0

    @property
    def positions_per_second(self) -> float:
        return self.positions / self.seconds if self.seconds else 0.0

    @property
    def alleles_per_second(self) -> float:
        return self.alleles / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (f"{self.regions} regions, {self.positions:,} positions, {self.alleles:,} alleles in {self.seconds:.1f} s "
                f"({self.positions_per_second:,.1f} positions/s, {self.alleles_per_second:,.1f} alleles/s); "
                f"served from the store {self.served:,}, computed {self.computed:,}")


def merge_intervals(iv: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Sort and merge (chrom, start0, end0) intervals (overlapping or adjacent ones become one)."""
    out: list[list] = []
    for c, a, b in sorted(iv):
        if out and out[-1][0] == c and a <= out[-1][2]:
            out[-1][2] = max(out[-1][2], b)
        else:
            out.append([c, a, b])
    return [tuple(x) for x in out]


def read_bed(path: str) -> list[tuple[str, int, int]]:
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read BED {path!r}: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        f = line.split("\t")
        try:
            out.append((f[0], int(f[1]), int(f[2])))
        except (IndexError, ValueError):
            raise InputError(f"{path}: line {n}: not a BED record (CHROM<TAB>START<TAB>END)") from None
    return out


def gene_exons(annotation: str, genes: list[str], flank: int) -> list[tuple[str, int, int]]:
    """Exons (± ``flank`` nt) of every transcript of ``genes`` in a GTF/GFF3/SpliceAI table."""
    from vareff.lookup import regions as rg

    fmt = rg._detect_format(annotation)
    loader = {"gtf": rg._load_gtf, "gff3": rg._load_gff3, "spliceai": rg._load_spliceai}[fmt]
    exons, _ = loader(annotation)
    want = set(genes)
    sel = exons.filter(exons["gene"].is_in(list(want)))
    missing = want - set(sel["gene"].unique().to_list())
    if missing:
        raise InputError(f"--genes: {', '.join(sorted(missing))} not found in {annotation!r}",
                         "use the gene names (or ids) of that annotation")
    return [(c, max(0, int(a) - flank), int(b) + flank)
            for c, a, b in sel.select("chrom", "start0", "end0").iter_rows()]


def saturation(genome, chrom: str, start0: int, end0: int, deletions: bool):
    """Records of every SNV (one record, 3 ALTs) and 1-nt deletion of genomic [start0, end0)."""
    seq = genome.fetch(chrom, max(0, start0 - 1), end0)
    off = start0 - max(0, start0 - 1)
    for i in range(end0 - start0):
        b = seq[off + i]
        if b not in "ACGT":
            continue
        p1 = start0 + i + 1
        yield p1, Record(chrom, p1, None, b, tuple(a for a in "ACGT" if a != b))
        if deletions and off + i > 0 and seq[off + i - 1] in "ACGT":
            yield p1, Record(chrom, p1 - 1, None, seq[off + i - 1] + b, (seq[off + i - 1],))


def chunks(genome, intervals, chunk_positions: int, deletions: bool):
    """Lists of records: at most ``chunk_positions`` positions, never across a 1 Mb block."""
    cur, npos, key, last = [], 0, None, None
    for chrom, a, b in intervals:
        for p1, rec in saturation(genome, chrom, a, b, deletions):
            k = (chrom, p1 // BLOCK)
            if p1 != last:
                if cur and (npos == chunk_positions or k != key):
                    yield cur, npos
                    cur, npos = [], 0
                npos += 1
                last = p1
            key = k
            cur.append(rec)
    if cur:
        yield cur, npos


def resolve_regions(genome, regions=(), bed: str | None = None, genes=(), annotation: str | None = None,
                    flank: int = 0) -> list[tuple[str, int, int]]:
    iv: list[tuple[str, int, int]] = []
    for r in regions:
        reg = Region.parse(r)
        span = genome.span(reg.chrom)
        if span is None:
            raise ConfigError(f"-r {r}: contig {reg.chrom!r} is not in the FASTA")
        iv.append((reg.chrom, max(reg.start0, span[0]), min(reg.end0 if reg.end0 is not None else span[1], span[1])))
    if bed:
        iv += read_bed(bed)
    if genes:
        if not annotation:
            raise ConfigError("--genes needs --annotation GTF|GFF3|TABLE")
        iv += gene_exons(annotation, list(genes), flank)
    if not iv:
        raise ConfigError("vareff precompute: no region given", "pass -r CHR:START-END, --bed FILE or --genes ...")
    return merge_intervals(iv)


def precompute(cfg, intervals_spec: dict, deletions: bool = False, progress: bool = True) -> PrecomputeStats:
    """Score every SNV (and 1-nt deletion) of the regions into ``cfg.store``."""
    from vareff.engine.run import Pipeline, build_scorers, open_genome

    if not cfg.store:
        raise ConfigError("vareff precompute needs a store", "pass --store DIR (or set VAREFF_STORE)")
    genome = open_genome(cfg)
    intervals = resolve_regions(genome, **intervals_spec)
    pipe = Pipeline(cfg, build_scorers(cfg), genome)
    st = PrecomputeStats(regions=len(intervals))
    t0 = last = time.perf_counter()
    for recs, npos in chunks(genome, intervals, cfg.chunk_records(0), deletions):
        pipe.process(recs)
        st.positions += npos
        st.alleles += sum(len(r.alts) for r in recs)
        now = time.perf_counter()
        if progress and now - last > 10:
            last = now
            st.seconds = now - t0
            log.info("%s:%d  %s", recs[-1].chrom, recs[-1].pos1, st)
    st.seconds = time.perf_counter() - t0
    counts = pipe.store_counts()
    st.served = sum(c["served"] for c in counts.values())
    st.computed = sum(c["computed"] for c in counts.values())
    for s in pipe.scorers:
        if hasattr(s, "close"):
            s.close()
    return st
