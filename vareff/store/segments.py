"""Store files: immutable segments written atomically, and an in-memory index over them.

A segment holds the entries of one (configuration, contig, 1 Mb block) partition: columns
``pos``, ``ref``, ``alt`` (the key), ``status`` (the model status, null = scored), the backend's
score columns in its own types (so values come back bit for bit) and ``info.<ID>`` strings (its
VCF INFO values).  It is written under a temporary name, fsynced and renamed into place, so a
reader sees a whole segment or none.

Segments are Arrow IPC files with LZ4-compressed buffers (``seg-<uuid>-<crc32>.arrow``): a
reader reads one whole, checks the CRC-32 of the file against its name and decodes it at
memory speed (several times faster than Parquet's page decoding, which dominated a store's first
read).  Segments written before as Parquet (``seg-<uuid>.parquet``, page CRCs) are still read;
compaction rewrites them.  Either way a corrupt or truncated file is reported by name and skipped.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vareff.store.allele_key import KeyIndex, Queries

log = logging.getLogger("vareff")

KEY_FIELDS = [pa.field("pos", pa.int64()), pa.field("ref", pa.string()), pa.field("alt", pa.string())]
META_KEY = b"vareff_store"
SEGMENT_GLOB = "seg-*"  # seg-<uuid>-<crc32>.arrow, or seg-<uuid>.parquet (older writes)
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
TMP_PREFIX = ".tmp-"


class CorruptSegment(Exception):
    """A store file that cannot be read whole (bad checksum, truncated, wrong footer)."""


def info_column(info_id: str) -> str:
    return f"info.{info_id}"


def segment_schema(score_schema: pa.Schema, info_ids: list[str]) -> pa.Schema:
    return pa.schema(KEY_FIELDS + [pa.field("status", pa.string())] + list(score_schema)
                     + [pa.field(info_column(i), pa.string()) for i in info_ids])


def new_segment_name(crc: int) -> str:
    return f"seg-{uuid.uuid4().hex}-{crc:08x}.arrow"


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def encode_segment(table: pa.Table, meta: dict) -> pa.Buffer:
    """``table`` as an Arrow IPC file (LZ4 buffers) with ``meta`` and its row count in the schema metadata."""
    blob = dict(meta, rows=table.num_rows)
    table = table.replace_schema_metadata({META_KEY: json.dumps(blob).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=IPC_OPTIONS) as w:
        w.write_table(table)
    return sink.getvalue()


def write_segment(directory: Path, table: pa.Table, meta: dict) -> Path:
    """Write ``table`` as a new segment in ``directory`` atomically (tmp + fsync + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = encode_segment(table, meta)
    name = new_segment_name(zlib.crc32(data))
    final = directory / name
    tmp = directory / f"{TMP_PREFIX}{name}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(directory)
    return final


def _read_ipc(path: Path) -> pa.Table:
    try:
        crc = int(path.stem.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        raise CorruptSegment(f"{path}: no checksum in the file name") from None
    # read, not memory-mapped: on a shared filesystem another host's compaction may delete the file,
    # and touching an evicted page of a deleted mapping there kills the process (SIGBUS)
    with pa.OSFile(str(path)) as fh:
        buf = fh.read_buffer()
    if zlib.crc32(buf) != crc:
        raise CorruptSegment(f"{path}: checksum mismatch ({len(buf)} bytes)")
    return pa.ipc.open_file(buf).read_all()


def read_segment(path: Path) -> tuple[pa.Table, dict]:
    """A segment's rows and metadata; :class:`CorruptSegment` if it is not whole."""
    try:
        if path.suffix == ".arrow":
            table = _read_ipc(path)
        else:
            table = pq.read_table(path, page_checksum_verification=True)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException, KeyError, ValueError) as e:
        raise CorruptSegment(f"{path}: {e}") from None
    if meta.get("rows") != table.num_rows:
        raise CorruptSegment(f"{path}: {table.num_rows} rows, the footer says {meta.get('rows')}")
    return table, meta


def segment_rows(path: Path) -> int:
    """Rows of a segment from its footer alone (no checksum: for ``store info``)."""
    if path.suffix == ".arrow":
        with pa.OSFile(str(path)) as fh:
            meta = pa.ipc.open_file(fh).schema.metadata or {}
        return int(json.loads(meta[META_KEY])["rows"])
    return pq.read_metadata(path).num_rows


class Run:
    """One loaded table with an index of its allele keys (:class:`~vareff.store.allele_key.KeyIndex`)."""

    def __init__(self, table: pa.Table):
        table = table.combine_chunks()  # one chunk per column: take() on many small chunks is ~50x slower
        self.table = table
        self.index = KeyIndex(table.column("pos").to_numpy(), table.column("ref"), table.column("alt"))
        self._values: dict[str, pa.Table] = {}

    def __len__(self) -> int:
        return self.table.num_rows

    def values(self, schema: pa.Schema) -> pa.Table:
        """The table's ``schema`` columns (status, scores, INFO), conformed once per schema."""
        key = schema.to_string()
        t = self._values.get(key)
        if t is None:
            cols = [self.table.column(f.name).cast(f.type) if f.name in self.table.column_names
                    else pa.nulls(self.table.num_rows, f.type) for f in schema]
            t = self._values[key] = pa.Table.from_arrays(cols, schema=schema).combine_chunks()
        return t


class Partition:
    """The entries of one partition folder, kept in memory and refreshed from disk on demand."""

    MAX_RUNS = 8

    def __init__(self, directory: Path, on_corrupt):
        self.dir = directory
        self.files: set[str] = set()
        self.bad: set[str] = set()
        self.runs: list[Run] = []
        self.on_corrupt = on_corrupt
        self._stamp: int | None = None  # the folder's mtime at the last listing

    def listing(self) -> set[str]:
        try:
            return {p.name for p in self.dir.glob(SEGMENT_GLOB)}
        except OSError:
            return set()

    def refresh(self) -> None:
        """Load segments that appeared since the last look; start over if some vanished (compaction).
        A folder whose modification time has not changed has neither gained nor lost a segment."""
        try:
            stamp = self.dir.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp
        names = self.listing() - self.bad
        if self.files - names:
            self.files, self.runs = set(), []
        new = sorted(names - self.files)
        tables = []
        for name in new:
            try:
                t, _ = read_segment(self.dir / name)
            except FileNotFoundError:  # compacted away meanwhile; its rows are in the merged segment
                continue
            except CorruptSegment as e:
                self.bad.add(name)
                self.on_corrupt(self.dir / name, e)
                continue
            self.files.add(name)
            tables.append(t)
        self.add(tables)

    def add(self, tables: list[pa.Table]) -> None:
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return
        self.runs.append(Run(pa.concat_tables(tables, promote_options="default")))
        if len(self.runs) > self.MAX_RUNS:
            self.runs = [Run(pa.concat_tables([r.table for r in self.runs], promote_options="default"))]

    def find(self, q: Queries, qidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(run index, row) of each query ``qidx`` of ``q``; run -1 for a miss."""
        n = len(qidx)
        run_of, row_of = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        for r, run in enumerate(self.runs):
            run.index.find(q, qidx, row_of)
            run_of[(run_of < 0) & (row_of >= 0)] = r
        return run_of, row_of
