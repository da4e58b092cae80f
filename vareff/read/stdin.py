"""Standard input handed to htslib through a pipe, so a cut-short BGZF stream is caught.

htslib checks the BGZF end-of-file marker only on files it can seek; from a pipe it reads the
blocks before the cut and stops without an error, which would be a silent loss.  A small copier
process (cyvcf2 holds the GIL while htslib waits on a read, so a thread would deadlock) copies
stdin into a pipe that htslib reads (``/dev/fd/N``) and reports the stream's first and last bytes;
once the records are exhausted, :meth:`StdinTap.check` applies the same rule as for files.
"""
from __future__ import annotations

import subprocess
import sys

from vareff.read.vcf import BGZF_EOF, is_bgzf, report_truncated

# stdin -> stdout in 1 MB blocks; at the end the first 16 and last 28 bytes go to stderr
_COPIER = """
import os, sys
head, tail = b"", b""
while True:
    b = os.read(0, 1 << 20)
    if not b:
        break
    if len(head) < 16:
        head = (head + b)[:16]
    tail = (tail + b)[-28:]
    mv = memoryview(b)
    while mv:
        mv = mv[os.write(1, mv):]
os.close(1)
os.write(2, head.hex().encode() + b" " + tail.hex().encode())
"""


class StdinTap:
    """stdin copied into a pipe by a child process; ``path`` is the pipe's read end for htslib."""

    def __init__(self):
        self._proc = subprocess.Popen([sys.executable, "-I", "-c", _COPIER], stdin=0,  # fd 0, as htslib read it
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.path = f"/dev/fd/{self._proc.stdout.fileno()}"

    def check(self, allow_truncated: bool) -> None:
        """After the last record: InputError (or a warning) when the stream was BGZF without its marker."""
        report = self._proc.stderr.read().decode(errors="replace").split()
        self._proc.wait()
        if self._proc.returncode != 0 or len(report) != 2:
            return  # the copier did not finish (the reader stopped early: an error ends the run anyway)
        head, tail = (bytes.fromhex(x) for x in report)
        if is_bgzf(head) and tail != BGZF_EOF:
            report_truncated("from stdin", allow_truncated)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
