"""Lookup stages as chunk adapters: each adds its columns to a chunk's output.

An adapter has ``schema()`` (the columns it adds), ``annotate(rows, cols)`` (``cols``: the
chunk's columns so far, name -> array) and ``provenance()``; evidence sources also have
``hits(table)``: how many alleles of a finished chunk got a value from them (the run summary
tells "scored" from "no data" with it).  They run in order, so the
priority adapter sees every score and lookup column.
"""
from __future__ import annotations

import hashlib
import os

import polars as pl
import pyarrow as pa

from vareff.normalize.alleles import AlleleRows


def file_sha256(path: str) -> str:
    """SHA-256 of a file (annotation, priority maps), read in 1 MB blocks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def _normalized(rows: AlleleRows) -> pl.DataFrame:
    """chrom, pos, ref, alt in trimmed form (what lookups match on)."""
    return rows.df.select(
        pl.col("chrom"), pl.col("norm_pos").alias("pos"),
        pl.col("norm_ref").alias("ref"), pl.col("norm_alt").alias("alt"),
    )


def _to_arrow(df: pl.DataFrame, schema: pa.Schema) -> dict[str, pa.Array]:
    t = df.to_arrow()
    return {f.name: t.column(f.name).cast(f.type) for f in schema}


def _non_null(table: pa.Table, column: str) -> int:
    col = table.column(column)
    return len(col) - col.null_count


class AlphaMissenseColumns:
    """``--alphamissense TABLE`` (built once by ``vareff am-build``)."""

    def __init__(self, path: str, transcript: str | None = None):
        from vareff.lookup.alphamissense import AlphaMissenseLookup

        tx = [t for t in transcript.split(",") if t] if transcript else None
        self.path = path
        self.lookup = AlphaMissenseLookup.open(path, transcript=tx)

    def schema(self) -> pa.Schema:
        return pa.schema([("am_pathogenicity", pa.float32()), ("am_class", pa.string()),
                          ("am_transcript_id", pa.string()), ("am_protein_variant", pa.string()),
                          ("am_uniprot_id", pa.string())])

    def annotate(self, rows: AlleleRows, cols: dict) -> dict:
        return _to_arrow(self.lookup.annotate(_normalized(rows)), self.schema())

    def hits(self, table: pa.Table) -> dict[str, int]:
        """Alleles with an AlphaMissense score."""
        return {"alphamissense": _non_null(table, "am_pathogenicity")}

    def provenance(self) -> dict[str, str]:
        meta = getattr(self.lookup, "metadata", {}) or {}
        return {"lookup": "alphamissense", "table": os.path.basename(self.path),
                "genome": str(getattr(self.lookup, "genome", "")),
                "source": str(meta.get("source", "")), "source_sha256": str(meta.get("source_sha256", "")),
                "rows": str(meta.get("rows", "")), "table_bytes": str(os.path.getsize(self.path))}


class RegionColumns:
    """``--annotation GTF|GFF3|SpliceAI table``: ``gene`` and ``region_class``."""

    def __init__(self, path: str, transcripts: str = "all"):
        from vareff.lookup.regions import RegionAnnotator

        self.path = path
        self.annotator = RegionAnnotator.open(path, transcripts=transcripts)

    def schema(self) -> pa.Schema:
        return pa.schema([("gene", pa.string()), ("region_class", pa.string())])

    def annotate(self, rows: AlleleRows, cols: dict) -> dict:
        return _to_arrow(self.annotator.annotate(_normalized(rows)), self.schema())

    def hits(self, table: pa.Table) -> dict[str, int]:
        """Alleles placed in or near a gene of the annotation (``intergenic`` ones have no gene)."""
        return {"annotation": _non_null(table, "gene")}

    def provenance(self) -> dict[str, str]:
        return {"lookup": "regions", "annotation": os.path.basename(self.path), "sha256": file_sha256(self.path)}


class PriorityColumns:
    """``priority`` and ``priority_source`` from every score column present (see vareff.combine.priority)."""

    def __init__(self, path: str | None = None):
        from vareff.combine.priority import PriorityModel

        self.path = path
        self.model = PriorityModel.load(path) if path else PriorityModel.default()

    def schema(self) -> pa.Schema:
        return pa.schema([("priority", pa.float64()), ("priority_source", pa.string())])

    def annotate(self, rows: AlleleRows, cols: dict) -> dict:
        wanted = {c for e in self.model.evidence for c in e.resolve(list(cols))}
        if not wanted:
            return {"priority": pa.nulls(len(rows), pa.float64()), "priority_source": pa.nulls(len(rows), pa.string())}
        df = pl.DataFrame({c: pl.from_arrow(cols[c]) if isinstance(cols[c], (pa.Array, pa.ChunkedArray))
                           else pl.Series(c, cols[c]) for c in wanted}, height=len(rows))
        out = self.model.apply(df)
        if "common" in cols:  # --max-af: the documented downgrade of common alleles (docs/family.md)
            from vareff.family.frequency import COMMON_PRIORITY_FACTOR

            common = pl.from_arrow(cols["common"]).fill_null(False)
            out = out.with_columns(pl.when(common).then(pl.col("priority") * COMMON_PRIORITY_FACTOR)
                                   .otherwise(pl.col("priority")).alias("priority"))
        return _to_arrow(out, self.schema())

    def provenance(self) -> dict[str, str]:
        if not self.path:
            return {"lookup": "priority", "maps": "default (uncalibrated)"}
        return {"lookup": "priority", "maps": os.path.basename(self.path), "sha256": file_sha256(self.path)}
