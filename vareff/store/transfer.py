"""``vareff store import|export``: published score tables in, one configuration out.

* ``export``: one configuration to Parquet (``chrom`` = FASTA contig name, ``pos``, ``ref``, ``alt``,
  ``status``, the score columns, ``info.<ID>``), its configuration and contig descriptors in the
  file metadata (key ``vareff_store_export``), so that ``import`` restores the same keys exactly.
* ``import`` of such a file: the entries go back under the same configuration and contigs.
* ``import --spliceai-vcf``: SpliceAI's published precomputed VCFs (``SpliceAI=`` INFO field).
  The entries are stored under an *imported* configuration tagged with the provenance the user
  declares (name, distance, mask); ``vareff score --store-use ID`` serves them.  Values are the
  file's (2 decimals), so outputs served from it show that precision.
* ``import --parquet`` of any table with ``chrom``, ``pos``, ``ref``, ``alt`` and score columns
  (declared backend and name): an imported configuration with those columns.
Imported keys use the contig checksums of the FASTA given with ``-f`` (the reference the table was
made on).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vareff.errors import ConfigError, InputError
from vareff.store.folder import BLOCK, StoreFolder
from vareff.store.key import ContigIds, digest
from vareff.store.segments import SEGMENT_GLOB, CorruptSegment, read_segment, segment_schema

log = logging.getLogger("vareff")

EXPORT_META = b"vareff_store_export"
KEY_COLS = ("chrom", "pos", "ref", "alt")


def export(root, config: str, out: str | os.PathLike) -> int:
    """Write every entry of ``config`` (deduplicated) to the Parquet ``out``; returns the row count."""
    folder = StoreFolder(root, create=False)
    configs, contigs = folder.configs(), folder.contigs()
    if config not in configs:
        raise ConfigError(f"store {str(root)!r} has no configuration {config!r}", "see `vareff store info`")
    tables = []
    for cdir in sorted((folder.root / "data" / config).glob("*")):
        for seg in sorted(cdir.glob(f"*/{SEGMENT_GLOB}")):
            try:
                t, _ = read_segment(seg)
            except (CorruptSegment, FileNotFoundError) as e:
                log.warning("export: skipping %s (%s)", seg, e)
                continue
            name = contigs.get(cdir.name, {}).get("contig", cdir.name)
            t = t.replace_schema_metadata(None)
            t = t.add_column(0, "chrom", pa.array([name] * t.num_rows, pa.string()))
            tables.append(t.append_column("_contig", pa.array([cdir.name] * t.num_rows, pa.string())))
    if not tables:
        raise ConfigError(f"configuration {config!r} has no entries")
    df = pl.from_arrow(pa.concat_tables(tables)).unique(["_contig", "pos", "ref", "alt"], keep="first",
                                                        maintain_order=True).sort("chrom", "pos")
    used = df["_contig"].unique().to_list()
    meta = {"config": configs[config], "contigs": {c: contigs.get(c) for c in used}}
    table = df.to_arrow().replace_schema_metadata({EXPORT_META: json.dumps(meta).encode()})
    tmp = Path(out).with_name(Path(out).name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return table.num_rows


def _add_rows(folder: StoreFolder, config: str, table: pa.Table, contig_col: list[str]) -> int:
    """Write ``table`` (segment columns) with one contig id per row, one segment per partition."""
    blocks = (np.asarray(table.column("pos")) // BLOCK).tolist()
    groups: dict[tuple, list[int]] = {}
    for i, (c, b) in enumerate(zip(contig_col, blocks)):
        groups.setdefault((c, b), []).append(i)
    for (c, b), rows in groups.items():
        folder.add(config, c, b, table.take(pa.array(rows)))
    return table.num_rows


def import_export_file(root, path: str) -> tuple[str, int]:
    """Restore a file written by :func:`export` (same configuration and contig ids)."""
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[EXPORT_META])
    folder = StoreFolder(root)
    desc = meta["config"]
    config = digest(desc)
    folder.put_config(config, desc)
    for cid, cdesc in meta["contigs"].items():
        if cdesc is None or digest(cdesc) != cid:
            raise InputError(f"{path}: contig descriptor {cid} does not match its checksum; the file was altered")
        folder.put_contig(cid, cdesc)
    contig_col = table.column("_contig").to_pylist()
    body = table.drop_columns(["chrom", "_contig"]).replace_schema_metadata(None)
    return config, _add_rows(folder, config, body, contig_col)


def _contig_ids(genome, folder: StoreFolder, chroms: list[str], path: str) -> list[str]:
    ids = ContigIds(genome, folder.root / "refs")
    out, seen = [], {}
    for c in chroms:
        if c not in seen:
            got = ids.id_of(c)
            if got is None:
                raise InputError(f"{path}: contig {c!r} is not in the FASTA", "give the FASTA the table was made on")
            folder.put_contig(*got)
            seen[c] = got[0]
        out.append(seen[c])
    return out


def _spliceai_schema():
    from vareff.score.spliceai import SpliceAIScorer

    return SpliceAIScorer.schema(None)


def spliceai_rows(chrom, pos, ref, alt, field: str) -> dict:
    """vareff's SpliceAI columns from one allele's ``SpliceAI=`` entries (those whose ALLELE is ``alt``)."""
    entries = [e for e in field.split(",") if e.split("|", 1)[0] == alt]
    best = None
    for e in entries:
        f = e.split("|")
        ds = [np.float32(float(x)) for x in f[2:6]]
        m = max(ds)
        if best is None or m > best[0]:
            best = (m, f[1], ds, [int(x) for x in f[6:10]])
    if best is None:
        return {}
    m, gene, ds, dp = best
    row = {"spliceai_gene": gene, "spliceai_ds_max": float(m), "spliceai": ",".join(entries),
           "info.SpliceAI": ",".join(entries)}
    for k, v, p in zip(("ag", "al", "dg", "dl"), ds, dp):
        row[f"spliceai_ds_{k}"], row[f"spliceai_dp_{k}"] = float(v), p
    return row


def import_spliceai_vcf(root, path: str, genome, name: str, distance: int, mask: bool) -> tuple[str, int]:
    """Import a SpliceAI-annotated VCF as an imported SpliceAI configuration (declared provenance)."""
    import cyvcf2

    schema = segment_schema(_spliceai_schema(), ["SpliceAI"])
    desc = {"backend": "spliceai", "imported": os.path.basename(path), "definitions": "imported",
            "declared": {"name": name, "distance": str(distance), "mask": str(int(mask))},
            "schema": [f"{f.name}:{f.type}" for f in _spliceai_schema()], "info_fields": ["SpliceAI:.:String"]}
    folder = StoreFolder(root)
    config = digest(desc)
    folder.put_config(config, desc)
    try:
        vcf = cyvcf2.VCF(path)
    except OSError as e:
        raise InputError(f"cannot read {path!r}: {e}") from None
    rows, chroms, n = [], [], 0

    def flush():
        nonlocal rows, chroms, n
        if rows:
            cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
            n += _add_rows(folder, config, pa.Table.from_pydict(cols, schema=schema),
                           _contig_ids(genome, folder, chroms, path))
        rows, chroms = [], []

    for v in vcf:
        field = v.INFO.get("SpliceAI")
        if not field:
            continue
        for alt in v.ALT:
            r = spliceai_rows(v.CHROM, v.POS, v.REF, alt, field)
            if r:
                r.update(pos=v.POS, ref=v.REF.upper(), alt=alt.upper(), status=None)
                rows.append(r)
                chroms.append(v.CHROM)
        if len(rows) >= 200_000:
            flush()
    flush()
    return config, n


def import_parquet(root, path: str, genome, name: str, backend: str) -> tuple[str, int]:
    """Import a Parquet with chrom/pos/ref/alt and score columns (or restore a ``store export`` file)."""
    if EXPORT_META in (pq.read_schema(path).metadata or {}):
        return import_export_file(root, path)
    table = pq.read_table(path)
    missing = [c for c in KEY_COLS if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: no column(s) {missing}", "the table needs chrom, pos, ref, alt and score columns")
    scores = pa.schema([f for f in table.schema if f.name not in KEY_COLS and f.name != "status"])
    desc = {"backend": backend, "imported": os.path.basename(path), "definitions": "imported",
            "declared": {"name": name}, "schema": [f"{f.name}:{f.type}" for f in scores], "info_fields": []}
    folder = StoreFolder(root)
    config = digest(desc)
    folder.put_config(config, desc)
    schema = segment_schema(scores, [])
    cols = {"pos": table.column("pos").cast(pa.int64()),
            "ref": pc_upper(table.column("ref")), "alt": pc_upper(table.column("alt")),
            "status": table.column("status") if "status" in table.column_names else pa.nulls(table.num_rows, pa.string())}
    for f in scores:
        cols[f.name] = table.column(f.name)
    body = pa.Table.from_pydict(cols, schema=schema)
    return config, _add_rows(folder, config, body, _contig_ids(genome, folder, table.column("chrom").to_pylist(), path))


def pc_upper(col):
    import pyarrow.compute as pc

    return pc.utf8_upper(col.cast(pa.string()))
