"""Is a tabix/CSI index the index of this file?  Checked before a ``-r`` query.

htslib reads through a stale index without an error: a seek that lands inside a BGZF block, or on
other records, just ends the query, so a run would exit 0 with records missing.  Two checks:
the index is not older than the file (htslib's own test, which it only warns about), and, for each
contig queried, the offset where the index says that contig starts (its pseudo-bin) is a BGZF block
in the file and, in it, the start of a line of that contig.  One block is read per contig.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

from vareff.errors import InputError

REINDEX = "re-index it: tabix -f -p vcf {p} (or bcftools index -f {p})"
_TBI_PSEUDO = 37450


def _i32(buf: bytes, o: int) -> tuple[int, int]:
    return struct.unpack_from("<i", buf, o)[0], o + 4


def _names(buf: bytes, o: int) -> tuple[list[str], int]:
    """The tabix header (format, columns, meta, skip, names) that .tbi and a tabix CSI share."""
    o += 6 * 4
    l_nm, o = _i32(buf, o)
    names = [x.decode() for x in buf[o:o + l_nm].split(b"\0") if x]
    return names, o + l_nm


def contig_starts(index_path: str) -> dict[str, int]:
    """Contig -> virtual offset of its first record, from the pseudo-bins of a .tbi or tabix .csi."""
    with gzip.open(index_path, "rb") as fh:
        buf = fh.read()
    starts: dict[str, int] = {}
    if buf[:4] == b"TBI\1":
        n_ref, o = _i32(buf, 4)
        names, o = _names(buf, o)
        pseudo, has_loff = _TBI_PSEUDO, False
    elif buf[:4] == b"CSI\1":
        (_, depth, l_aux), o = struct.unpack_from("<iii", buf, 4), 16
        if l_aux < 28:
            return {}  # a BCF's CSI: contig names are in the BCF header, not the index
        names, _ = _names(buf, o)
        o += l_aux
        n_ref, o = _i32(buf, o)
        pseudo, has_loff = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1, True
    else:
        return {}
    for ref in range(n_ref):
        n_bin, o = _i32(buf, o)
        for _ in range(n_bin):
            b = struct.unpack_from("<I", buf, o)[0]
            o += 4 + (8 if has_loff else 0)
            n_chunk, o = _i32(buf, o)
            if b == pseudo and ref < len(names):
                starts[names[ref]] = struct.unpack_from("<Q", buf, o)[0]
            o += 16 * n_chunk
        if not has_loff:
            n_intv, o = _i32(buf, o)
            o += 8 * n_intv
    return starts


def _block_at(fh, offset: int) -> bytes | None:
    """The decompressed BGZF block at file ``offset``, or None when none starts there."""
    fh.seek(offset)
    head = fh.read(18)
    if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
        return None
    size = struct.unpack_from("<H", head, 16)[0] + 1
    body = fh.read(size - 18)
    try:
        return zlib.decompress(body[:-8], -15)
    except zlib.error:
        return None


def check_index(path: str, contigs: list[str]) -> str:
    """The index of ``path`` (.tbi or .csi); InputError when it is missing, older than the file, or
    its offsets for ``contigs`` do not land on those contigs' records in the file."""
    found = [path + ext for ext in (".tbi", ".csi") if os.path.exists(path + ext)]
    if not found:
        raise InputError(
            f"-r/--region needs an index for {path!r}, and there is none (.tbi or .csi)",
            f"bgzip the file and index it: bgzip IN.vcf && tabix -p vcf IN.vcf.gz (or bcftools index {path})",
        )
    idx = found[0]
    if int(os.stat(idx).st_mtime) < int(os.stat(path).st_mtime):  # htslib's test, in whole seconds
        raise InputError(f"the index {idx!r} is older than {path!r}: it is stale and would find the wrong "
                         "records (or none)", REINDEX.format(p=path))
    try:
        starts = contig_starts(idx)
    except (OSError, EOFError, zlib.error, struct.error, UnicodeDecodeError) as e:
        raise InputError(f"the index {idx!r} cannot be read ({e})", REINDEX.format(p=path)) from None
    with open(path, "rb") as fh:
        for chrom in contigs:
            voff = starts.get(chrom)
            if voff is None:
                continue
            block = _block_at(fh, voff >> 16)
            line = block[voff & 0xFFFF:] if block is not None else b""
            at_line_start = block is not None and ((voff & 0xFFFF) == 0 or block[(voff & 0xFFFF) - 1:][:1] == b"\n")
            if not (at_line_start and (line.startswith(chrom.encode() + b"\t") or len(line) <= len(chrom))):
                raise InputError(f"the index {idx!r} does not match {path!r}: where it says contig {chrom} starts, "
                                 "the file holds other data (the file was changed after it was indexed)",
                                 REINDEX.format(p=path))
    return idx
