"""The engine's side of genotype-aware output: what a scoring run adds per chunk.

- ``--max-af FIELD<=X``: per-allele INFO values and the ``common`` flag, added to the allele table
  before the lookups run (so ``priority`` sees ``common``);
- ``--samples`` / ``--ped``: the per-(allele, sample) table of each chunk, written as a part file
  beside the allele parts and assembled into ``OUT.samples.parquet`` (:func:`assemble_samples`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vareff.config import OutputSpec, RunConfig
from vareff.errors import ConfigError
from vareff.family.frequency import MaxAf, common_flag, per_allele
from vareff.family.inheritance import Thresholds
from vareff.family.ped import read_ped
from vareff.family.samples import SampleSpec, chunk_table, record_genotypes
from vareff.family.shortlist import with_comp_het

log = logging.getLogger("vareff")

#: the OutputSpec format of the samples table (assembled from ``<k>.samples.parquet`` parts)
SAMPLES_FORMAT = "samples"
SAMPLES_SUFFIX = ".samples.parquet"


# -- population frequency -------------------------------------------------------------------------
def frequency_limits(cfg: RunConfig) -> list[MaxAf]:
    return [MaxAf.parse(x) for x in cfg.max_af]


def frequency_fields(limits: list[MaxAf]) -> list[pa.Field]:
    if not limits:
        return []
    return [pa.field(lim.column, pa.float64()) for lim in limits] + [pa.field("common", pa.bool_())]


def record_info(chunk: list, malformed: list[bool], limits: list[MaxAf]) -> dict[str, list]:
    """Per INFO field of ``limits``: its value per record of the chunk (None when absent or malformed)."""
    out = {}
    for lim in limits:
        out[lim.field] = [None if m else v.INFO.get(lim.field) for (v, _), m in zip(chunk, malformed)]
    return out


def frequency_columns(limits: list[MaxAf], info: dict[str, list] | None, record: list[int],
                      allele_index: list[int]) -> dict[str, pa.Array]:
    """``info_<FIELD>`` per allele and ``common``; without INFO values (API tables) all are missing."""
    rec = np.asarray(record, dtype=np.int64)
    aidx = np.asarray([a or 0 for a in allele_index], dtype=np.int64)
    vals = {lim.column: (per_allele(info[lim.field], rec, aidx) if info and lim.field in info
                         else np.full(len(rec), np.nan)) for lim in limits}
    out = {c: pa.array(np.where(np.isnan(v), None, v), type=pa.float64()) for c, v in vals.items()}
    out["common"] = pa.array(common_flag(vals, limits) if len(rec) else np.zeros(0, bool))
    return out


# -- samples table --------------------------------------------------------------------------------
def samples_output(cfg: RunConfig, vcf_samples: list[str]) -> OutputSpec | None:
    """Where the samples table goes: ``--samples-output``, else ``<first file output>.samples.parquet``
    when the VCF has samples and a Parquet output or ``--ped`` asks for it; None otherwise."""
    if cfg.samples == "none" or not vcf_samples:
        if cfg.ped and not vcf_samples:
            raise ConfigError("--ped needs genotypes, and the input VCF has no samples",
                              "give the multi-sample (trio) VCF, or drop --ped")
        return None
    if cfg.samples_output:
        return OutputSpec(cfg.samples_output, SAMPLES_FORMAT)  # type: ignore[arg-type]
    files = [o for o in cfg.outputs if o.path != "-"]
    if not files or not (cfg.ped or any(o.format == "parquet" for o in files)):
        return None
    base = files[0].path
    for ext in (".parquet", ".pq", ".vcf.gz", ".vcf.bgz", ".vcf", ".tsv.gz", ".tsv", ".txt"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    return OutputSpec(base + SAMPLES_SUFFIX, SAMPLES_FORMAT)  # type: ignore[arg-type]


def sample_spec(cfg: RunConfig, vcf_samples: list[str]) -> SampleSpec | None:
    """The samples the table holds (``--samples all|none|A,B``) and the pedigree, checked against the VCF."""
    if cfg.samples == "none" or not vcf_samples:
        return None
    if cfg.samples == "all":
        selected = list(vcf_samples)
    else:
        selected = [s for s in cfg.samples.split(",") if s]
        missing = [s for s in selected if s not in vcf_samples]
        if missing:
            raise ConfigError(f"--samples: {', '.join(missing[:5])} not in the VCF",
                              f"the VCF's samples are: {', '.join(vcf_samples[:10])}{' ...' if len(vcf_samples) > 10 else ''}")
    ped = read_ped(cfg.ped) if cfg.ped else None
    if ped is not None:
        for w in ped.check(list(vcf_samples)):
            log.warning("--ped %s: %s", os.path.basename(cfg.ped), w)
        family = {s for t in ped.trios(vcf_samples) for s in (t.proband, t.father, t.mother) if s}
        selected += [s for s in vcf_samples if s in family and s not in selected]
    return SampleSpec(list(vcf_samples), selected, carriers_only=not cfg.all_genotypes, pedigree=ped,
                      thresholds=Thresholds(cfg.min_gq, cfg.min_dp), build=cfg.build)


def chunk_samples(spec: SampleSpec, chunk: list, malformed: list[bool], rows, table: pa.Table) -> tuple[pa.Table, int]:
    """The samples rows of one chunk, with the allele's gene and ``common`` flag (for comp-het)."""
    n = len(spec.vcf_samples)
    recs = [None if m else record_genotypes(v, n) for (v, _), m in zip(chunk, malformed)]
    df, male_x_het = chunk_table(spec, recs, np.asarray(rows.record), np.asarray([a or 0 for a in rows.allele_index]),
                                 rows.chrom, np.asarray([p or 0 for p in rows.pos], dtype=np.int64), rows.ref, rows.alt)
    names = table.schema.names
    gene = "gene" if "gene" in names else ("spliceai_gene" if "spliceai_gene" in names else None)
    info = pl.from_arrow(table.select(["chrom", "pos", "ref", "alt", "allele_index"]))
    info = info.with_columns(
        (pl.from_arrow(table.column(gene)) if gene else pl.lit(None, pl.String)).alias("_gene"),
        (pl.from_arrow(table.column("common")) if "common" in names else pl.lit(False)).alias("_common"),
    ).unique(subset=["chrom", "pos", "ref", "alt", "allele_index"], keep="first", maintain_order=True)
    df = df.join(info, on=["chrom", "pos", "ref", "alt", "allele_index"], how="left", nulls_equal=True,
                 maintain_order="left")
    return df.to_arrow(), male_x_het


def write_samples_part(parts_dir: Path, k: int, table: pa.Table) -> None:
    """Chunk ``k``'s samples rows, atomically (before the chunk is recorded as finished)."""
    path = parts_dir / f"{k:08d}{SAMPLES_SUFFIX}"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def assemble_samples(tmp: Path, parts: list[Path], metadata: dict[bytes, bytes] | None = None) -> None:
    """Concatenate the samples parts into one Parquet file, filling ``comp_het`` over the whole run
    (proband rows only: the gene-level pairs are collected first, then each part is streamed)."""
    scans = [pl.scan_parquet(p) for p in parts if p.exists()]
    if scans:
        probands = pl.concat(scans).filter(pl.col("is_proband").fill_null(False)).select(
            "chrom", "pos", "ref", "alt", "allele_index", "sample", "from_father", "from_mother", "is_proband",
            pl.col("_gene").alias("gene"), pl.col("_common").alias("common")).collect()
    else:
        probands = pl.DataFrame()
    pairs = None
    if probands.height:
        alleles = probands.select("chrom", "pos", "ref", "alt", "allele_index", "gene", "common").unique()
        flagged = with_comp_het(probands.drop("gene", "common"), alleles)
        pairs = flagged.filter(pl.col("comp_het")).select("chrom", "pos", "ref", "alt", "allele_index", "sample",
                                                            pl.lit(True).alias("_pair"))
    writer = None
    try:
        for p in parts:
            if not p.exists():
                continue
            df = pl.read_parquet(p)
            if pairs is not None:
                df = df.join(pairs, on=["chrom", "pos", "ref", "alt", "allele_index", "sample"], how="left",
                             nulls_equal=True, maintain_order="left")
            else:
                df = df.with_columns(pl.lit(None, pl.Boolean).alias("_pair"))
            df = df.with_columns(pl.when(pl.col("is_proband")).then(pl.col("_pair").fill_null(False))
                                 .alias("comp_het")).drop("_pair", "_gene", "_common")
            t = df.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema.with_metadata(metadata or {}), compression="zstd")
            writer.write_table(t.cast(writer.schema))
        if writer is None:  # no part at all
            from vareff.family.samples import SCHEMA

            empty = pl.DataFrame(schema={**SCHEMA, "comp_het": pl.Boolean}).to_arrow()
            writer = pq.ParquetWriter(tmp, empty.schema.with_metadata(metadata or {}), compression="zstd")
            writer.write_table(empty)
    finally:
        if writer is not None:
            writer.close()
