"""Labelled VCFs and AlphaMissense tables built from the kit's S5 rows for the report tests."""
from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

EXCERPT = "alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
S5 = "alphamissense/science.adg7492_data_s5.csv.gz"
GFF = "annotation/Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz"
BRCA_S5 = "grch38/brca1_region/alphamissense_s5.chr17_42425000-43600000.csv"


def _split_s5(s5: pl.DataFrame) -> pl.DataFrame:
    parts = pl.col("variant_id").str.split("_")
    return s5.with_columns(chrom=parts.list.get(0), pos=parts.list.get(1).cast(pl.Int64), ref=parts.list.get(2),
                           alt=parts.list.get(3), label=pl.col("label").cast(pl.Float64))


def excerpt_s5_rows(shared: Path) -> pl.DataFrame:
    """The 169 S5 rows present in the AlphaMissense excerpt (S5 columns + chrom/pos/ref/alt)."""
    ex = pl.read_csv(shared / EXCERPT, separator="\t", skip_rows=3, infer_schema_length=0).rename(
        {"#CHROM": "chrom", "POS": "pos", "REF": "ref", "ALT": "alt"}).with_columns(pl.col("pos").cast(pl.Int64))
    s5 = _split_s5(pl.read_csv(shared / S5, infer_schema_length=0).with_columns(
        pl.col("AlphaMissense").cast(pl.Float64)))
    return s5.join(ex.select("chrom", "pos", "ref", "alt"), on=["chrom", "pos", "ref", "alt"], how="semi")


def brca_s5_rows(shared: Path) -> pl.DataFrame:
    """The 496 S5 rows of the BRCA1 slice."""
    return _split_s5(pl.read_csv(shared / BRCA_S5, infer_schema_length=0).with_columns(
        pl.col("AlphaMissense").cast(pl.Float64)))


def labelled_vcf(rows: pl.DataFrame, out: Path) -> Path:
    """A VCF of ``rows`` (chrom, pos, ref, alt, label) with CLNSIG Pathogenic / Benign, sorted."""
    rows = rows.sort("chrom", "pos")
    contigs = list(dict.fromkeys(rows["chrom"].to_list()))
    head = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c}>" for c in contigs),
            '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="ClinVar clinical significance">',
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    body = [f"{c}\t{p}\ts5_{i}\t{r}\t{a}\t.\t.\tCLNSIG={'Pathogenic' if lab == 1.0 else 'Benign'}"
            for i, (c, p, r, a, lab) in enumerate(rows.select("chrom", "pos", "ref", "alt", "label").rows())]
    out.write_text("\n".join(head + body) + "\n")
    return out


def s5_as_am_table(rows: pl.DataFrame, out: Path) -> Path:
    """S5 rows written in the published AlphaMissense hg38 layout (full-precision S5 scores), for am-build."""
    lines = ["# Copyright 2023 DeepMind Technologies Limited\n", "#\n",
             "# Licensed under CC BY-NC-SA 4.0 license\n",
             "#CHROM\tPOS\tREF\tALT\tgenome\tuniprot_id\ttranscript_id\tprotein_variant\tam_pathogenicity\tam_class\n"]
    for c, p, r, a, tx, pv, s in rows.sort("chrom", "pos").select(
            "chrom", "pos", "ref", "alt", "transcript_id", "protein_variant", "AlphaMissense").rows():
        up, change = pv.split(":")
        cls = "likely_benign" if s < 0.34 else "likely_pathogenic" if s > 0.564 else "ambiguous"
        lines.append(f"{c}\t{p}\t{r}\t{a}\thg38\t{up}\t{tx}\t{change}\t{s!r}\t{cls}\n")
    with gzip.open(out, "wt") as f:
        f.writelines(lines)
    return out
