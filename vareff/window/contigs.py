"""Contig-name resolution between VCF, FASTA and annotation (``1``<->``chr1``, ``MT``<->``chrM``)."""
from __future__ import annotations

from collections.abc import Iterable

_MITO = ("MT", "M", "chrM", "chrMT")


def alias_candidates(name: str) -> list[str]:
    """Names under which contig ``name`` may appear in another file, best first."""
    out = [name]
    if name in _MITO:
        out += [m for m in _MITO if m != name]
    elif name.startswith("chr"):
        out.append(name[3:])
    else:
        out.append("chr" + name)
    return out


def resolve_contig(name: str, available: Iterable[str] | set[str]) -> str | None:
    """The member of ``available`` that names contig ``name``, or None."""
    avail = available if isinstance(available, (set, frozenset, dict)) else set(available)
    for cand in alias_candidates(name):
        if cand in avail:
            return cand
    return None
