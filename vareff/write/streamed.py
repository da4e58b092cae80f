"""The Parquet output assembled while the run goes on, by a background thread.

A run writes each finished chunk as a part file (for ``--resume``) and, at the end, concatenates the
parts into the Parquet output (``parts.write_parquet``).  For a run whose schema is known from its
start, :class:`StreamedParquet` writes the same row groups into the output's temporary file as the
chunks come, on a second core (pyarrow releases the GIL while it encodes and compresses), so the end
of the run is a rename instead of a second pass over every row.  The bytes are those of
``write_parquet`` (:class:`RowGroups` cuts the row groups for both; tests/test_host_path.py
compares the files byte for byte).  Anything unusual (a chunk out
of order, a resumed run, a write error, another schema at the end) drops the streamed file, and the
parts are assembled as before.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


class RowGroups:
    """Feeds tables to a ParquetWriter in row groups of exactly ``size`` rows (the last may be
    smaller); holds at most one row group."""

    def __init__(self, writer: pq.ParquetWriter, size: int):
        self.w, self.size, self.buf, self.n = writer, size, [], 0

    def add(self, t: pa.Table) -> None:
        self.buf.append(t)
        self.n += t.num_rows
        while self.n >= self.size:
            whole = pa.concat_tables(self.buf)
            self.w.write_table(whole.slice(0, self.size), row_group_size=self.size)
            rest = whole.slice(self.size)
            self.buf, self.n = [rest], rest.num_rows

    def finish(self) -> None:
        if self.n:
            self.w.write_table(pa.concat_tables(self.buf), row_group_size=self.size)
        self.buf, self.n = [], 0


_END = object()


class StreamedParquet:
    """Chunks ``0, 1, 2, ...`` of one run written to ``tmp`` as Parquet by a background thread."""

    def __init__(self, tmp: Path, schema: pa.Schema, row_group_rows: int):
        self.tmp, self.schema, self.size = tmp, schema, row_group_rows
        self._closed = False
        self.next = 0  # the chunk expected next
        self.failed: BaseException | None = None
        self._q: queue.Queue = queue.Queue(maxsize=2)
        self._t = threading.Thread(target=self._work, name="vareff-parquet", daemon=True)
        self._t.start()

    def _work(self) -> None:
        w = None
        try:
            w = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
            groups = RowGroups(w, self.size)
            while (t := self._q.get()) is not _END:
                if t is not None and self.failed is None:
                    groups.add(t.cast(self.schema))
            if self.failed is None:
                groups.finish()
        except BaseException as e:  # noqa: BLE001 (the parts are assembled instead)
            self.failed = e
            while self._q.get() is not _END:  # keep the producer from blocking
                pass
        finally:
            if w is not None:
                try:
                    w.close()
                except BaseException as e:  # noqa: BLE001
                    self.failed = self.failed or e

    def add(self, k: int, table: pa.Table) -> None:
        """Chunk ``k`` (written to its part file already); out of order, the stream is dropped."""
        if k != self.next:
            self.failed = self.failed or RuntimeError(f"chunk {k} came after {self.next - 1}")
        self.next = k + 1
        self._q.put(None if self.failed is not None else table)

    def close(self, n_chunks: int, schema: pa.Schema) -> bool:
        """Finish the file; True when it holds exactly chunks ``0..n_chunks-1`` with ``schema``
        (else the caller removes it and assembles the parts)."""
        self._finish()
        if self.failed is not None:
            log.debug("streamed Parquet output dropped: %s", self.failed)
        return self.failed is None and self.next == n_chunks and schema.equals(self.schema, check_metadata=True)

    def abort(self) -> None:
        """Stop the thread and remove the file (the run failed or was interrupted)."""
        self.failed = self.failed or RuntimeError("aborted")
        self._finish()
        self.tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(_END)
        self._t.join()
