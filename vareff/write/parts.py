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

The run holds an exclusive lock on the parts folder (``lock.py``), so two runs never write the
same output; failed writes (full disk, permissions) become one :class:`OutputError` that says
how to resume.  Streamed outputs (stdout, FIFOs) skip the parts (``stream.py``).  A ``.vcf.gz``
of unsorted input is sorted from the parts in bounded memory before it is indexed (``sort.py``).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pysam

from vareff.config import OutputSpec
from vareff.family.engine import SAMPLES_FORMAT, SAMPLES_SUFFIX, assemble_samples, write_samples_part
from vareff.errors import OutputError, ResumeError
from vareff.write.lock import LOCK_NAME, acquire
from vareff.write.sort import sorted_lines, unsorted_at
from vareff.write.stream import StreamSink, bgzf_bytes, tsv_body, tsv_head
from vareff.write.streamed import RowGroups, StreamedParquet
from vareff.write.target import final_path, is_stream, parts_dir

log = logging.getLogger(__name__)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


def _bgzf_bytes(text: str, tmpdir: Path) -> bytes:
    """BGZF-compress ``text`` (BGZF members concatenate into a valid BGZF file)."""
    tmp = tmpdir / f".bgzf-{os.getpid()}-{id(text)}"
    try:
        with pysam.BGZFile(str(tmp), "wb") as fh:
            fh.write(text.encode())
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def write_part_files(parts_dir: Path, outputs: tuple[OutputSpec, ...], k: int, table: pa.Table,
                     vcf_text: str | None, samples: pa.Table | None = None) -> None:
    """Write chunk ``k``'s part files (each atomically) for every output format in ``outputs``
    (``samples``: the chunk's per-(allele, sample) rows, for a samples-table output)."""
    if samples is not None and any(o.format == SAMPLES_FORMAT for o in outputs):
        write_samples_part(parts_dir, k, samples)
    _atomic_write_bytes(parts_dir / f"{k:08d}{PART_SUFFIX}", part_bytes(table))
    if vcf_text is not None:
        if any(o.format == "vcf" and o.bgzip for o in outputs):
            _atomic_write_bytes(parts_dir / f"{k:08d}.vcf.bgz", _bgzf_bytes(vcf_text, parts_dir))
        if any(o.format == "vcf" and not o.bgzip for o in outputs):
            _atomic_write_bytes(parts_dir / f"{k:08d}.vcf", vcf_text.encode())


MARKER = ".done.json"

#: a chunk's rows on disk: Arrow IPC with LZ4 (writing and reading back cost a fraction of zstd
#: Parquet's; the assembled output is still zstd Parquet)
PART_SUFFIX = ".arrow"
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


def part_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of one part file."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=_IPC) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def read_part(path: Path) -> pa.Table:
    """One part file's rows (Arrow IPC as written by :func:`part_bytes`, or Parquet)."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with pa.OSFile(str(path), "rb") as fh:
        return pa.ipc.open_file(fh).read_all()


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
    """Part files + manifest + lock for one run's file outputs; streamed outputs are written as chunks come.

    ``outputs`` may mix files and streams (``-``, FIFOs, devices; see ``target.py``).  The parts
    folder belongs to the first file output; every file output's folder is locked (one output,
    one writer) until :meth:`finalize` or :meth:`release`.  A run with only streams keeps no parts.
    """

    def __init__(self, outputs: tuple[OutputSpec, ...], fingerprint: str, resume: bool):
        self.outputs = outputs
        self.files = tuple(o for o in outputs if not is_stream(o.path))
        self.streams = [StreamSink(o) for o in outputs if is_stream(o.path)]
        self.fingerprint = fingerprint
        self.chunks_done = 0
        self.state: dict = {"fingerprint": fingerprint, "chunks": 0, "records": 0, "status_counts": {}}
        self.dir: Path | None = None
        self.locks: list = []
        self._started = False  # True once this run owns the parts (fresh or resumed)
        self._streamed: dict[str, StreamedParquet] = {}  # output path -> Parquet written as chunks come
        self._bg: _Background | None = None  # writes part files and manifest on a second thread
        if not self.files:
            return
        self.dir = parts_dir(self.files[0].path)
        try:
            self._open(resume)
        except BaseException:
            self.release()
            raise

    def _open(self, resume: bool) -> None:
        for o in self.files:  # the first lock is the parts folder's own
            self.locks.append(acquire(parts_dir(o.path), o.path))
        stale = self.locks[0].previous
        manifest = self.dir / "manifest.json"
        if self._finished_chunks(manifest) == 0:
            self._clear()  # nothing finished: nothing to lose by starting over
            self._started = True
            with self._writing(self.dir / "manifest.json"):
                self._save_manifest()
            return
        who = f" (PID {stale}, no longer running)" if stale else ""
        if not resume:
            raise ResumeError(
                f"an interrupted run{who} left its finished chunks in {str(self.dir)!r}",
                "pass --resume to continue it, or delete that folder to start over",
            )
        try:
            self.state = json.loads(manifest.read_text())
        except (OSError, ValueError):
            self.state = {"fingerprint": self.fingerprint, "chunks": 0, "records": 0, "status_counts": {}}
        if self.state.get("fingerprint") != self.fingerprint:
            raise ResumeError(
                "--resume: the interrupted run used other inputs or options than this one",
                f"rerun with exactly the same command, or delete {str(self.dir)!r} to start over",
            )
        self.chunks_done = int(self.state["chunks"])
        self._started = True
        if stale:
            log.info("took over the output lock of the interrupted run (PID %d, no longer running)", stale)
        log.info("resuming after %d finished chunks (%d records)", self.chunks_done, self.state["records"])

    @staticmethod
    def _finished_chunks(manifest: Path) -> int:
        if any(manifest.parent.glob(f"*{MARKER}")):
            return len(read_markers(manifest.parent)) or 1
        try:
            return int(json.loads(manifest.read_text())["chunks"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _clear(self) -> None:
        """Remove everything in the parts folder but the lock."""
        for p in self.dir.iterdir():
            if p.name == LOCK_NAME:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def release(self) -> None:
        """Drop the locks (finished parts stay, for --resume; folders with nothing finished go);
        close the streams.  Idempotent."""
        self._drain()
        for s in self.streams:
            s.close()
        for sp in self._streamed.values():
            sp.abort()
        for i, lk in enumerate(self.locks):
            if lk.fd < 0:
                continue
            empty = i > 0 or self._finished_chunks(self.dir / "manifest.json") == 0
            if empty and i == 0:
                self._clear()
            lk.release(unlink=empty, restore=not self._started)
            if empty:
                try:
                    lk.path.parent.rmdir()
                except OSError:
                    pass

    @contextmanager
    def _writing(self, path: Path, done: int | None = None):
        """Turn a failed write (full disk, permissions) into one clear error that says how to resume
        (``done``: the chunks recorded on disk, when not those of ``state``)."""
        try:
            yield
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            n = int(self.state.get("chunks", 0)) if done is None else done
            why = e.strerror or str(e)
            kept = f" (the {n} finished chunks are kept in {str(self.dir)!r})" if n else ""
            first = ("free space on that filesystem" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                     else "fix the cause")
            hint = f"{first}, then rerun the same command with --resume{kept}"
            raise OutputError(f"cannot write {str(path)!r}: {why}", hint) from None

    def open_streams(self, schema: pa.Schema, vcf_header: str | None) -> None:
        """Start the streamed outputs (header first); call once the header is known."""
        try:
            for s in self.streams:
                s.open(schema, vcf_header)
        except BaseException:
            self.release()
            raise

    def stream_parquet(self, schema: pa.Schema) -> None:
        """Write each Parquet file output while the run goes on (``streamed.py``), when ``schema``
        is the final one and the run starts from its first chunk; else they are assembled at the end."""
        if self.dir is None or self.chunks_done:
            return
        for o in self.files:
            if o.format == "parquet" and o.path not in self._streamed:
                final = final_path(o.path)
                tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
                self._streamed[o.path] = StreamedParquet(tmp, schema, ROW_GROUP_ROWS)

    def write_in_background(self) -> None:
        """Write each chunk's part files and manifest update on a background thread, in order, while
        the next chunk is computed (a chunk still counts only once its manifest update is on disk;
        a failed write is raised at the next chunk or at :meth:`finalize`; :meth:`release` waits)."""
        if self.dir is not None and self._bg is None:
            self._bg = _Background(self)

    def _drain(self) -> BaseException | None:
        """Wait for the background writes; the state is then the one on disk.  Their error, if any."""
        if self._bg is None:
            return None
        bg, self._bg = self._bg, None
        bg.close()
        if bg.failure is not None:
            self.state = bg.written
        return bg.failure

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
        with self._writing(self.dir / "manifest.json"):
            self._save_manifest()

    @property
    def records_done(self) -> int:
        return int(self.state["records"])

    def _save_manifest(self) -> None:
        _atomic_write_bytes(self.dir / "manifest.json", json.dumps(self.state).encode())

    def write_chunk(self, k: int, table: pa.Table, vcf_text: str | None, n_records: int,
                    status_counts: dict[str, int], samples: pa.Table | None = None) -> None:
        """Persist chunk ``k``; the manifest is updated last, so a chunk counts only when whole.
        Streams get the chunk right after."""
        before = self.state
        sc = dict(before["status_counts"])
        for s, c in status_counts.items():
            sc[s] = sc.get(s, 0) + c
        after = dict(before, chunks=k + 1, records=before["records"] + n_records, status_counts=sc)
        if self._bg is not None:
            if self._bg.failure is not None:
                raise self._drain()
            self.state = after
            self._bg.put((k, table, vcf_text, samples, json.dumps(after).encode()))  # the manifest as of k
        else:
            if self.dir is not None:
                with self._writing(self.dir):
                    write_part_files(self.dir, self.files, k, table, vcf_text, samples)
            self.state = after
            if self.dir is not None:
                try:
                    with self._writing(self.dir / "manifest.json"):
                        self._save_manifest()
                except OutputError:
                    self.state = before  # chunk k is not recorded: --resume scores it again
                    raise
        for st in self.streams:
            st.write(table, vcf_text)
        for sp in self._streamed.values():
            sp.add(k, table)

    def _parts(self, suffix: str) -> list[Path]:
        return [self.dir / f"{k:08d}{suffix}" for k in range(int(self.state["chunks"]))]

    def finalize(self, schema: pa.Schema, vcf_header: str | None) -> None:
        """Assemble every file output atomically, close the streams, then remove the parts and locks."""
        failure = self._drain()
        if failure is not None:
            self.release()
            raise failure
        try:
            for o in self.files:
                final = final_path(o.path)
                tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
                try:
                    with self._writing(final):
                        self._assemble(o, final, tmp, schema, vcf_header)
                        os.replace(tmp, final)
                except BaseException:
                    for junk in (tmp, Path(str(tmp) + ".tbi")):
                        junk.unlink(missing_ok=True)
                    raise
            for st in self.streams:
                st.close()
            for o in self.files:
                remove_leftovers(final_path(o.path))
        except BaseException:
            self.release()
            raise
        if self.dir is not None:
            self._clear()
        for lk in self.locks:
            lk.release(unlink=True)
            try:
                lk.path.parent.rmdir()
            except OSError:
                pass  # another run is already creating it again

    def _assemble(self, o: OutputSpec, final: Path, tmp: Path, schema: pa.Schema, vcf_header: str | None) -> None:
        sp = self._streamed.pop(o.path, None)
        if sp is not None:
            if sp.close(int(self.state["chunks"]), schema) and sp.tmp == tmp:
                return  # written while the run went on
            sp.tmp.unlink(missing_ok=True)
        if o.format == "parquet":
            write_parquet(tmp, schema, self._parts(PART_SUFFIX))
        elif o.format == SAMPLES_FORMAT:
            assemble_samples(tmp, self._parts(SAMPLES_SUFFIX), schema.metadata)
        elif o.format == "tsv":
            with open(tmp, "wb") as fh:
                fh.write(tsv_head(schema).encode())
                for p in self._parts(PART_SUFFIX):
                    fh.write(tsv_body(read_part(p)))
        elif not o.bgzip:
            with open(tmp, "wb") as fh:
                fh.write((vcf_header or "").encode())
                for p in self._parts(".vcf"):
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, fh)
        else:
            parts = self._parts(".vcf.bgz")
            why = unsorted_at(parts)
            if why is None:
                with open(tmp, "wb") as fh:
                    fh.write(bgzf_bytes(vcf_header or ""))
                    for p in parts:
                        with open(p, "rb") as src:
                            shutil.copyfileobj(src, fh)
            else:
                log.warning("the input is not sorted (%s): sorting the records of %s by position so that it "
                            "can be indexed (Parquet/TSV outputs keep the input order)", why, final)
                with pysam.BGZFile(str(tmp), "wb") as fh:
                    fh.write((vcf_header or "").encode())
                    for line in sorted_lines(parts, vcf_header or "", self.dir / "sort"):
                        fh.write(line.encode())
            try:
                pysam.tabix_index(str(tmp), preset="vcf", force=True, keep_original=True)
                os.replace(str(tmp) + ".tbi", str(final) + ".tbi")
            except OSError as e:
                if e.errno is not None:
                    raise  # a failing disk, not an unindexable file
                log.warning("no index written for %s: tabix could not index it: %s", final, e)


class _Background:
    """The writer thread of :meth:`PartStore.write_in_background`: part files, then the manifest
    (as serialized when the chunk was handed over), chunk after chunk; stops at the first error."""

    def __init__(self, store: PartStore):
        self.store, self.failure = store, None
        self.written = json.loads(json.dumps(store.state))  # the state on disk
        self._q: queue.Queue = queue.Queue(maxsize=2)
        self._t = threading.Thread(target=self._work, name="vareff-parts", daemon=True)
        self._t.start()

    def put(self, job) -> None:
        self._q.put(job)

    def _work(self) -> None:
        st = self.store
        while (job := self._q.get()) is not None:
            if self.failure is not None:
                continue
            k, table, vcf_text, samples, blob = job
            try:
                done = int(self.written["chunks"])
                with st._writing(st.dir, done):
                    write_part_files(st.dir, st.files, k, table, vcf_text, samples)
                with st._writing(st.dir / "manifest.json", done):
                    _atomic_write_bytes(st.dir / "manifest.json", blob)
                self.written = json.loads(blob)
            except BaseException as e:  # noqa: BLE001 (raised in the run's thread)
                self.failure = e

    def close(self) -> None:
        self._q.put(None)
        self._t.join()


#: rows per Parquet row group in the assembled file (per-chunk parts are merged up to this)
ROW_GROUP_ROWS = 65_536


def write_parquet(path: Path, schema: pa.Schema, parts: list[Path]) -> None:
    """Concatenate part files into one Parquet file with row groups of ``ROW_GROUP_ROWS`` rows
    (the last may be smaller); memory holds at most one row group."""
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        groups = RowGroups(w, ROW_GROUP_ROWS)
        for p in parts:
            groups.add(read_part(p).cast(schema))
        groups.finish()


_LEFTOVER = r"\.tmp-(\d+)(\.tbi|\.csi)?$"


def remove_leftovers(final: Path) -> None:
    """Remove ``<final>.tmp-PID`` files left by a run killed while assembling ``final``
    (the caller holds the output's lock, so no live run owns them)."""
    pat = re.compile(re.escape(final.name) + _LEFTOVER)
    for p in final.parent.glob(final.name + ".tmp-*"):
        m = pat.match(p.name)
        if m and int(m.group(1)) != os.getpid():
            log.info("removing %s, left by an interrupted run", p)
            p.unlink(missing_ok=True)
