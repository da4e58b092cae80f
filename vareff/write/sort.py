"""Sorting a VCF output's part files in bounded memory, so that an unsorted input's ``.vcf.gz``
output can still be tabix-indexed (as ``bcftools sort`` does: sorted runs on disk, then a merge).

Each part (one chunk, at most ``--chunk-size`` records) is sorted in memory and written back as a
run; the runs are then merged ``FAN_IN`` at a time.  Memory is one chunk plus one line per open
run.  Records sort by the header's ``##contig`` order (contigs missing there come after, by
name), then POS; records with equal keys keep their input order.  Only the VCF is reordered:
Parquet and TSV outputs keep the input order.
"""
from __future__ import annotations

import gzip
import heapq
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

FAN_IN = 64
_CONTIG = re.compile(r"^##contig=<ID=([^,>]+)", re.MULTILINE)


def sort_key(header: str) -> Callable[[str], tuple]:
    """Key of one VCF record line: (contig rank, contig name, POS)."""
    order = {c: i for i, c in enumerate(_CONTIG.findall(header))}
    late = len(order)

    def key(line: str) -> tuple:
        chrom, pos, _ = line.split("\t", 2)
        return order.get(chrom, late), chrom, int(pos)

    return key


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix in (".bgz", ".gz") else open
    with opener(path, "rt") as fh:  # gzip reads concatenated BGZF members
        yield from fh


def unsorted_at(parts: Iterable[Path]) -> str | None:
    """Why tabix would refuse the concatenated parts (a contig split in two, or POS going back), or None."""
    seen: set[str] = set()
    chrom, pos = None, -1
    for p in parts:
        for line in _lines(p):
            c, ps, _ = line.split("\t", 2)
            x = int(ps)
            if c != chrom:
                if c in seen:
                    return f"records of {c} are not together (again at {c}:{x} after {chrom}:{pos})"
                seen.add(c)
                chrom, pos = c, x
            elif x < pos:
                return f"{c}:{x} comes after {c}:{pos}"
            pos = x
    return None


def _merge(runs: list[Path], key, write: Callable[[str], object]) -> None:
    files = [open(r) for r in runs]
    try:
        for line in heapq.merge(*files, key=key):  # stable: equal keys keep run order
            write(line)
    finally:
        for f in files:
            f.close()


def sorted_lines(parts: list[Path], header: str, workdir: Path) -> Iterator[str]:
    """Every record line of ``parts`` in sorted order; temporary runs go to ``workdir`` (removed)."""
    key = sort_key(header)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, p in enumerate(parts):
        lines = sorted(_lines(p), key=key)
        run = workdir / f"run-{i:08d}.vcf"
        run.write_text("".join(lines))
        runs.append(run)
    gen = itertools.count()
    while len(runs) > FAN_IN:  # merge passes keep the number of open files bounded
        merged = []
        for s in range(0, len(runs), FAN_IN):
            out = workdir / f"merge-{next(gen):08d}.vcf"
            with open(out, "w") as fh:
                _merge(runs[s: s + FAN_IN], key, fh.write)
            for r in runs[s: s + FAN_IN]:
                r.unlink()
            merged.append(out)
        runs = merged
    files = [open(r) for r in runs]
    try:
        yield from heapq.merge(*files, key=key)
    finally:
        for f in files:
            f.close()
        for r in runs:
            r.unlink(missing_ok=True)
