"""Chunk part files, the resume manifest, and the atomic assembly of the final outputs.

Every finished chunk is written as part files into ``.<first output>.vareff-parts/``
(each atomically: temporary name, then rename) and recorded in ``manifest.json``.
When the stream ends the parts are concatenated into each output under a
temporary name that is renamed into place; only then is the parts folder removed.
A run that dies keeps its parts, and ``--resume`` continues after the last
recorded chunk.

Distributed runs (``vareff.engine.distributed``) write the same part files from many
workers at once; as the manifest has a single writer, each worker records a finished
chunk in its own marker ``<k>.done.json`` instead (written after the parts), and the
driver folds the markers into the manifest (:meth:`PartStore.adopt_markers`) before it
finalizes.  Resume then means: rescore the chunks that have no marker.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pysam

from vareff.config import OutputSpec
from vareff.errors import ResumeError

log = logging.getLogger(__name__)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _bgzf_bytes(text: str, tmpdir: Path) -> bytes:
    """BGZF-compress ``text`` (BGZF members concatenate into a valid BGZF file)."""
    tmp = tmpdir / f".bgzf-{os.getpid()}-{id(text)}"
    with pysam.BGZFile(str(tmp), "wb") as fh:
        fh.write(text.encode())
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def write_part_files(parts_dir: Path, outputs: tuple[OutputSpec, ...], k: int, table: pa.Table,
                     vcf_text: str | None) -> None:
    """Write chunk ``k``'s part files (each atomically) for every output format in ``outputs``."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _atomic_write_bytes(parts_dir / f"{k:08d}.parquet", sink.getvalue().to_pybytes())
    if vcf_text is not None:
        if any(o.format == "vcf" and o.bgzip for o in outputs):
            _atomic_write_bytes(parts_dir / f"{k:08d}.vcf.bgz", _bgzf_bytes(vcf_text, parts_dir))
        if any(o.format == "vcf" and not o.bgzip for o in outputs):
            _atomic_write_bytes(parts_dir / f"{k:08d}.vcf", vcf_text.encode())


MARKER = ".done.json"


def write_marker(parts_dir: Path, k: int, n_records: int, status_counts: dict[str, int]) -> None:
    """Record chunk ``k`` as finished (call after its part files are written)."""
    blob = {"records": int(n_records), "status_counts": {s: int(c) for s, c in status_counts.items()}}
    _atomic_write_bytes(parts_dir / f"{k:08d}{MARKER}", json.dumps(blob).encode())


def read_markers(parts_dir: Path) -> dict[int, dict]:
    """Chunk index -> marker contents, for every finished chunk recorded by a marker."""
    out = {}
    for p in parts_dir.glob(f"*{MARKER}"):
        try:
            out[int(p.name[: -len(MARKER)])] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # unreadable marker: the chunk is rescored
    return out


class PartStore:
    """Part files + manifest for one run."""

    def __init__(self, outputs: tuple[OutputSpec, ...], fingerprint: str, resume: bool):
        first = Path(outputs[0].path)
        self.dir = first.with_name(f".{first.name}.vareff-parts")
        self.outputs = outputs
        self.fingerprint = fingerprint
        self.chunks_done = 0
        self.state: dict = {"fingerprint": fingerprint, "chunks": 0, "records": 0, "status_counts": {}}
        manifest = self.dir / "manifest.json"
        if self.dir.exists() and self._finished_chunks(manifest) == 0:
            shutil.rmtree(self.dir)  # nothing finished: nothing to lose by starting over
        if self.dir.exists():
            if not resume:
                raise ResumeError(
                    f"an interrupted run left its finished chunks in {str(self.dir)!r}",
                    "pass --resume to continue it, or delete that folder to start over",
                )
            try:
                self.state = json.loads(manifest.read_text())
            except (OSError, ValueError):
                self.state = {"fingerprint": fingerprint, "chunks": 0, "records": 0, "status_counts": {}}
            if self.state.get("fingerprint") != fingerprint:
                raise ResumeError(
                    "--resume: the interrupted run used other inputs or options than this one",
                    f"rerun with exactly the same command, or delete {str(self.dir)!r} to start over",
                )
            self.chunks_done = int(self.state["chunks"])
            log.info("resuming after %d finished chunks (%d records)", self.chunks_done, self.state["records"])
        else:
            self.dir.mkdir(parents=True)
            self._save_manifest()

    @staticmethod
    def _finished_chunks(manifest: Path) -> int:
        if any(manifest.parent.glob(f"*{MARKER}")):
            return len(read_markers(manifest.parent)) or 1
        try:
            return int(json.loads(manifest.read_text())["chunks"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def adopt_markers(self, n_chunks: int) -> None:
        """Distributed runs: every chunk ``0..n_chunks-1`` has a marker; record them in the manifest
        as finished (records and status counts summed), so :meth:`finalize` assembles them."""
        markers = read_markers(self.dir)
        missing = [k for k in range(n_chunks) if k not in markers]
        if missing:
            raise RuntimeError(f"chunks {missing[:5]} have no finished marker")
        sc: dict[str, int] = {}
        for k in range(n_chunks):
            for s, c in markers[k]["status_counts"].items():
                sc[s] = sc.get(s, 0) + c
        self.state.update(chunks=n_chunks, records=sum(markers[k]["records"] for k in range(n_chunks)),
                          status_counts=sc)
        self._save_manifest()

    @property
    def records_done(self) -> int:
        return int(self.state["records"])

    def _save_manifest(self) -> None:
        _atomic_write_bytes(self.dir / "manifest.json", json.dumps(self.state).encode())

    def write_chunk(self, k: int, table: pa.Table, vcf_text: str | None, n_records: int,
                    status_counts: dict[str, int]) -> None:
        """Persist chunk ``k``; the manifest is updated last, so a chunk counts only when whole."""
        write_part_files(self.dir, self.outputs, k, table, vcf_text)
        self.state["chunks"] = k + 1
        self.state["records"] += n_records
        sc = self.state["status_counts"]
        for s, c in status_counts.items():
            sc[s] = sc.get(s, 0) + c
        self._save_manifest()

    def _parts(self, suffix: str) -> list[Path]:
        return [self.dir / f"{k:08d}{suffix}" for k in range(int(self.state["chunks"]))]

    def finalize(self, schema: pa.Schema, vcf_header: str | None) -> None:
        """Assemble every output atomically, then remove the parts."""
        for o in self.outputs:
            final = Path(o.path)
            tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
            if o.format == "parquet":
                with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                    for p in self._parts(".parquet"):
                        for rg in range(pq.ParquetFile(p).num_row_groups):
                            w.write_table(pq.ParquetFile(p).read_row_group(rg).cast(schema))
            elif o.format == "tsv":
                with open(tmp, "wb") as fh:
                    first = True
                    for p in self._parts(".parquet"):
                        pl.read_parquet(p).write_csv(fh, separator="\t", include_header=first, null_value=".")
                        first = False
                    if first:  # no chunk at all: header only
                        fh.write(("\t".join(schema.names) + "\n").encode())
            else:
                with open(tmp, "wb") as fh:
                    if o.bgzip:
                        fh.write(_bgzf_bytes(vcf_header or "", self.dir))
                        for p in self._parts(".vcf.bgz"):
                            with open(p, "rb") as src:
                                shutil.copyfileobj(src, fh)
                    else:
                        fh.write((vcf_header or "").encode())
                        for p in self._parts(".vcf"):
                            with open(p, "rb") as src:
                                shutil.copyfileobj(src, fh)
                if o.bgzip:
                    try:
                        pysam.tabix_index(str(tmp), preset="vcf", force=True, keep_original=True)
                        os.replace(str(tmp) + ".tbi", str(final) + ".tbi")
                    except Exception as e:  # pysam raises OSError or its own errors here
                        log.warning("could not tabix-index %s (is the input sorted?): %s", final, e)
            os.replace(tmp, final)
        shutil.rmtree(self.dir, ignore_errors=True)
