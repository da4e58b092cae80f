"""SpliceAI-style gene tables: ``#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END``.

The published tables store TX_START/EXON_START 0-based and TX_END/EXON_END 1-based
(half-open); here everything is converted to 1-based inclusive, as SpliceAI's own
scorer does (``tx_start1 = TX_START + 1``).  ``grch37``/``grch38`` name the tables
shipped in the ``spliceai`` wheel.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from vareff.errors import InputError, MissingDependencyError
from vareff.window.contigs import resolve_contig


def bundled_table(name: str) -> Path:
    """Path of the wheel's ``grch37``/``grch38`` table."""
    spec = importlib.util.find_spec("spliceai")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"SpliceAI's {name} gene table ships in the spliceai wheel, which is not installed",
            "pip install --no-deps spliceai==1.3.1, or pass --spliceai-annotation PATH",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "annotations" / f"{name}.txt"


@dataclass
class GeneTable:
    name: np.ndarray  # object
    chrom: np.ndarray  # object
    strand: np.ndarray  # object ('+'/'-')
    tx_start1: np.ndarray  # int64, 1-based inclusive
    tx_end1: np.ndarray  # int64, 1-based inclusive
    boundaries1: list[np.ndarray]  # per gene: sorted union of exon starts (1-based) and exon ends
    source: str

    @classmethod
    def open(cls, spec: str) -> "GeneTable":
        """``grch37``, ``grch38`` or a path to a table in SpliceAI's format."""
        path = bundled_table(spec) if spec in ("grch37", "grch38") else Path(spec)
        if not path.exists():
            raise InputError(f"gene table {str(path)!r} does not exist",
                             "use --spliceai-annotation grch37, grch38 or a path to a SpliceAI-format table")
        try:
            df = pl.read_csv(path, separator="\t", infer_schema_length=0)
        except Exception as e:  # polars raises several kinds here
            raise InputError(f"cannot read gene table {str(path)!r}: {e}") from None
        cols = ["#NAME", "CHROM", "STRAND", "TX_START", "TX_END", "EXON_START", "EXON_END"]
        if df.columns[: len(cols)] != cols:
            raise InputError(
                f"gene table {str(path)!r} has columns {df.columns[:7]}, expected {cols}",
                "the table must be in SpliceAI's annotation format (tab-separated, with that header)",
            )
        bounds = []
        for s, e in zip(df["EXON_START"].to_list(), df["EXON_END"].to_list()):
            starts = np.array([int(x) for x in s.split(",") if x], dtype=np.int64) + 1
            ends = np.array([int(x) for x in e.split(",") if x], dtype=np.int64)
            bounds.append(np.union1d(starts, ends))
        return cls(
            name=np.array(df["#NAME"].to_list(), dtype=object),
            chrom=np.array(df["CHROM"].to_list(), dtype=object),
            strand=np.array(df["STRAND"].to_list(), dtype=object),
            tx_start1=df["TX_START"].cast(pl.Int64).to_numpy() + 1,
            tx_end1=df["TX_END"].cast(pl.Int64).to_numpy(),
            boundaries1=bounds,
            source=str(path),
        )

    def __post_init__(self):
        self._by_chrom: dict[str, np.ndarray] = {}
        for c in dict.fromkeys(self.chrom.tolist()):
            self._by_chrom[c] = np.nonzero(self.chrom == c)[0]
        self._resolved: dict[str, str | None] = {}

    def genes_at(self, chrom: str, pos1: int) -> np.ndarray:
        """Indices (file order) of genes whose transcript spans ``pos1``."""
        c = self._resolved.get(chrom, ...)
        if c is ...:
            c = self._resolved[chrom] = resolve_contig(chrom, self._by_chrom)
        if c is None:
            return np.empty(0, dtype=np.int64)
        idx = self._by_chrom[c]
        return idx[(self.tx_start1[idx] <= pos1) & (pos1 <= self.tx_end1[idx])]

    def nearest_boundary(self, gene: int, pos1: int) -> int:
        """Signed distance to the closest exon boundary; ties go to the upstream one (as SpliceAI)."""
        d = self.boundaries1[gene] - pos1
        return int(d[np.argmin(np.abs(d))])
