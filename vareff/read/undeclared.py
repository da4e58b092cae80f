"""htslib's warnings about names a record uses but the header does not declare, for the columnar reader.

When htslib parses a record whose contig, FILTER or INFO key the header lacks, it prints a warning
once per name (and adds a dummy header line, so it does not warn again).  The columnar reader
(vareff/read/columnar.py) does not let htslib parse the lines it vouches for, so it prints the same
lines itself, in the same order (by record, then contig, FILTER, INFO within a record).  On a
handover to cyvcf2 the names already reported get htslib's dummy header lines, so htslib, which
re-reads the file from its start, does not report them a second time.
"""
from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: htslib's warning text and dummy header line per kind of name (vcf.c)
_TEXT = {
    "contig": "[W::vcf_parse] Contig '{}' is not defined in the header. (Quick workaround: index the file with tabix.)",
    "filter": "[W::vcf_parse_filter] FILTER '{}' is not defined in the header",
    "info": "[W::vcf_parse_info] INFO '{}' is not defined in the header, assuming Type=String",
}
_DUMMY = {
    "contig": "##contig=<ID={}>",
    "filter": '##FILTER=<ID={},Description="Dummy">',
    "info": '##INFO=<ID={},Number=1,Type=String,Description="Dummy">',
}
_KINDS = ("contig", "filter", "info")


def _names(kind: str, value: str) -> list[str]:
    """The names of one field value: the contig; FILTER ids; INFO keys (values already removed)."""
    if kind == "contig":
        return [value]
    if value == ".":
        return []
    return [x for x in value.split(";") if x]


class Undeclared:
    """Reports the undeclared names of the records the columnar reader vouches for."""

    def __init__(self, vcf, stream=None):
        self.declared: dict[str, set[str]] = {k: set() for k in _KINDS}
        self.declared["filter"].add("PASS")
        for h in vcf.header_iter():
            kind = {"CONTIG": "contig", "FILTER": "filter", "INFO": "info"}.get(h.type)
            if kind is not None and h.info().get("ID") is not None:
                self.declared[kind].add(h.info()["ID"])
        self.reported: list[tuple[str, str]] = []
        self.stream = stream

    def check(self, t: pa.Table) -> None:
        """Print the warnings of the records of ``t`` (CHROM, FILTER and INFO text columns)."""
        info = t.column("INFO")
        cols = {"contig": t.column("CHROM"), "filter": t.column("FILTER"),
                "info": None if pc.all(pc.equal(info, ".")).as_py() else pc.replace_substring_regex(info, "=[^;]*", "")}
        rows: set[int] = set()
        for kind, col in cols.items():
            if col is None:
                continue
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            uniq = pc.unique(col)
            new = [i for i, v in enumerate(uniq.to_pylist())
                   if any(n not in self.declared[kind] for n in _names(kind, v))]
            if new:
                _, first = np.unique(pc.index_in(col, value_set=uniq).to_numpy(), return_index=True)
                rows.update(int(r) for r in first[new])
        if not rows:
            return
        out = self.stream or sys.stderr
        for r in sorted(rows):
            for kind, col in cols.items():
                if col is None:
                    continue
                for name in _names(kind, col[r].as_py()):
                    if name not in self.declared[kind]:
                        self.declared[kind].add(name)
                        self.reported.append((kind, name))
                        out.write(_TEXT[kind].format(name) + "\n")
        out.flush()

    def hand_over(self, vcf) -> None:
        """Declare the reported names in ``vcf``'s header (htslib's dummy lines), so htslib,
        reading the file from here on, does not report them again."""
        for kind, name in self.reported:
            vcf.add_to_header(_DUMMY[kind].format(name))
