"""Read a finished result (Parquet or TSV) with its run metadata, and attach labels to it.

Labels (decided here, documented in docs/report.md): a result does not carry INFO fields, so
they come either from a ClinVar-style VCF (``--labels-vcf``: its ``CLNSIG``, joined on
chrom/pos/ref/alt exactly as written) or from a column of the result itself (``--labels COLUMN``:
1/0, true/false, or ClinVar terms).  Pathogenic / likely pathogenic = 1, benign / likely
benign = 0, anything else (uncertain, conflicting, missing) is left out of the evaluation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from vareff.errors import InputError

#: identifying / bookkeeping columns (never plotted or evaluated)
KEY_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "allele_index", "variant_type", "status",
               "norm_pos", "norm_ref", "norm_alt")
LABEL = "label"
_PATHOGENIC = {"1", "1.0", "true", "pathogenic", "likely_pathogenic", "pathogenic/likely_pathogenic", "p", "lp"}
_BENIGN = {"0", "0.0", "false", "benign", "likely_benign", "benign/likely_benign", "b", "lb"}


@dataclass
class Result:
    """A result table and what its file says about the run that wrote it."""

    path: str
    df: pl.DataFrame
    meta: dict = field(default_factory=dict)  # Parquet key ``vareff``: version, command, models, lookups
    written: str = ""  # file modification time (UTC)
    label_source: str | None = None  # where the ``label`` column came from, if any
    name: str | None = None  # what the report calls it (default: the file name)

    @property
    def score_columns(self) -> list[str]:
        """Float columns other than the key columns and ``label``: the scores (incl. ``priority``)."""
        return [c for c, t in self.df.schema.items()
                if t in (pl.Float32, pl.Float64) and c not in KEY_COLUMNS and c != LABEL]

    @property
    def has_labels(self) -> bool:
        return LABEL in self.df.columns and self.df[LABEL].drop_nulls().len() > 0


def read_result(path: str | os.PathLike) -> Result:
    """Parquet (with its ``vareff`` metadata) or TSV written by ``vareff score``."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise InputError(f"result {p!r} does not exist or is not a file", "give the .parquet written by vareff score")
    meta: dict = {}
    try:
        if p.lower().endswith((".tsv", ".tsv.gz", ".txt")):
            df = pl.read_csv(p, separator="\t", infer_schema_length=10000, null_values=["", "."])
        else:
            import pyarrow.parquet as pq

            raw = (pq.read_schema(p).metadata or {}).get(b"vareff")
            meta = json.loads(raw) if raw else {}
            df = pl.read_parquet(p)
    except (OSError, ValueError, pl.exceptions.PolarsError) as e:
        raise InputError(f"cannot read result {p!r}: {e}", "give a .parquet (or .tsv) written by vareff score") from None
    missing = {"chrom", "pos", "ref", "alt"} - set(df.columns)
    if missing:
        raise InputError(f"result {p!r} lacks the columns {sorted(missing)}", "give a file written by vareff score")
    written = datetime.fromtimestamp(os.stat(p).st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Result(path=p, df=df, meta=meta, written=written)


def label_values(values: pl.Series) -> pl.Series:
    """1 / 0 / null from 1/0, booleans or ClinVar terms (first term of a ``|``/``,`` list decides)."""
    first = (values.cast(pl.String).str.strip_chars().str.split_exact("|", 1).struct.field("field_0")
             .str.split_exact(",", 1).struct.field("field_0").str.strip_chars().str.strip_chars("_")
             .str.to_lowercase().str.replace_all(" ", "_"))
    out = (pl.when(first.is_in(list(_PATHOGENIC))).then(1).when(first.is_in(list(_BENIGN))).then(0)
           .otherwise(None))
    return pl.select(out.cast(pl.Int8).alias(LABEL)).to_series()


def attach_labels(res: Result, *, labels_vcf: str | None = None, labels_column: str | None = None) -> Result:
    """Add ``label`` from a ClinVar VCF's CLNSIG or from one of the result's columns."""
    if labels_vcf and labels_column:
        raise InputError("give either --labels-vcf or --labels, not both")
    if labels_column:
        if labels_column not in res.df.columns:
            raise InputError(f"result {res.path!r} has no column {labels_column!r}",
                             f"its columns: {', '.join(res.df.columns[:30])}")
        res.df = res.df.with_columns(label_values(res.df[labels_column]))
        res.label_source = f"column {labels_column}"
    elif labels_vcf:
        from vareff.combine.priority import clinvar_labels

        lab = (clinvar_labels(labels_vcf).select("chrom", "pos", "ref", "alt", LABEL)
               .unique(["chrom", "pos", "ref", "alt"], keep="first", maintain_order=True))
        df = res.df.drop(LABEL) if LABEL in res.df.columns else res.df
        res.df = df.join(lab, on=["chrom", "pos", "ref", "alt"], how="left", maintain_order="left")
        res.label_source = f"CLNSIG of {os.path.basename(labels_vcf)}"
    return res
