"""Streamed outputs: ``-o -`` (stdout) and FIFO/device paths, written chunk by chunk as the run goes.

A stream is never renamed over (see ``target.py``) and cannot be resumed: what was sent is gone.
VCF streams carry the full header first (bgzipped members when the name ends in .gz/.bgz, never
indexed); TSV streams their ``#`` provenance lines and column names first.  Logs go to stderr, so
stdout carries nothing but the output: ``... | vareff score - -o - | bgzip > out.vcf.gz``.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa

from vareff.config import OutputSpec
from vareff.errors import BrokenPipeOutputError, OutputError
from vareff.write.provenance import header_lines, provenance_of
from vareff.write.target import STDOUT


def bgzf_bytes(text: str) -> bytes:
    """``text`` as BGZF members ending with the EOF block (members concatenate into valid BGZF)."""
    import pysam

    with tempfile.TemporaryDirectory(prefix="vareff-bgzf-") as d:
        tmp = Path(d) / "x.gz"
        with pysam.BGZFile(str(tmp), "wb") as fh:
            fh.write(text.encode())
        return tmp.read_bytes()


def tsv_head(schema: pa.Schema) -> str:
    """The TSV preamble: provenance comment lines, then the column names."""
    lines = header_lines(provenance_of(schema))
    return "".join(ln + "\n" for ln in lines) + "\t".join(schema.names) + "\n"


def tsv_body(table: pa.Table) -> bytes:
    return pl.from_arrow(table).write_csv(separator="\t", include_header=False, null_value=".").encode()


class StreamSink:
    """One streamed output: :meth:`open` (writes the header), :meth:`write` per chunk, :meth:`close`."""

    def __init__(self, spec: OutputSpec):
        self.spec = spec
        self.fh = None
        self.name = "stdout" if spec.path == STDOUT else repr(spec.path)

    def _send(self, data: bytes) -> None:
        try:
            self.fh.write(data)
            self.fh.flush()
        except BrokenPipeError:
            if self.spec.path == STDOUT:  # no flush error again at interpreter exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise BrokenPipeOutputError(f"the reader of {self.name} went away (broken pipe): the output is "
                                        "incomplete", "keep the reading end open until vareff ends") from None
        except OSError as e:
            raise OutputError(f"cannot write {self.name}: {e.strerror or e}") from None

    def _encode(self, text: str) -> bytes:
        return bgzf_bytes(text) if self.spec.bgzip else text.encode()

    def open(self, schema: pa.Schema, vcf_header: str | None) -> None:
        if self.spec.path == STDOUT:
            sys.stdout.flush()
            self.fh = sys.stdout.buffer
        else:
            try:
                self.fh = open(self.spec.path, "wb")  # a FIFO blocks here until its reader opens it
            except OSError as e:
                raise OutputError(f"cannot open {self.name} for writing: {e.strerror or e}") from None
        if self.spec.format == "vcf":
            self._send(self._encode(vcf_header or ""))
        else:
            self._send(tsv_head(schema).encode())

    def write(self, table: pa.Table, vcf_text: str | None) -> None:
        if self.spec.format == "vcf":
            self._send(self._encode(vcf_text or ""))
        else:
            self._send(tsv_body(table))

    def close(self) -> None:
        if self.fh is None:
            return
        if self.spec.path != STDOUT:
            try:
                self.fh.close()
            except OSError:
                pass
        self.fh = None
