"""htslib's warnings about names a record uses but the header does not declare, for the columnar reader.

When htslib parses a record whose contig, FILTER or INFO key the header lacks, it prints a warning
once per name (and adds a dummy header line, so it does not warn again).  The columnar reader
(vareff/read/columnar.py) does not let htslib parse the lines it vouches for, so it prints the same
lines itself, in the same order (by record, then contig, FILTER, INFO within a record).  On a
handover to cyvcf2 the names already reported get htslib's dummy header lines, so htslib, which
re-reads the file from its start, does not report them a second time.
"""
from __future__ import annotations

import os
import re
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
#: htslib's second warning when the dummy header line of a name it checks is not a valid ID
_INVALID = {"contig": '[W::bcf_hrec_check] Invalid contig name: "{}"', "info": '[W::bcf_hrec_check] Invalid tag name: "{}"'}
_VALID = {"contig": re.compile(r"[0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*"),
          "info": re.compile(r"[A-Za-z_][0-9A-Za-z_.]*|1000G")}
#: characters that can break htslib's dummy header line, which makes it refuse the record (a
#: malformed line): such a record is left to htslib (a superset of the failing cases is safe)
_BREAKS = re.compile(r'[,<>"]')


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

    def check(self, t: pa.Table) -> int:
        """Print the warnings of the leading records of ``t`` (CHROM, FILTER and INFO text columns)
        that can be read here; return their number: htslib may refuse a record with an undeclared
        name that holds ``,``, ``<``, ``>`` or ``"`` (its dummy header line does not parse), so
        reading hands over there and htslib decides."""
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
            return t.num_rows
        out = self.stream or sys.stderr
        try:
            for r in sorted(rows):
                for kind, col in cols.items():
                    if col is None:
                        continue
                    for name in _names(kind, col[r].as_py()):
                        if name in self.declared[kind]:
                            continue
                        if _BREAKS.search(name):
                            return r  # htslib re-reads it, warns and refuses it: a malformed line
                        out.write(_TEXT[kind].format(name) + "\n")
                        self.declared[kind].add(name)
                        self.reported.append((kind, name))
                        if kind in _VALID and not _VALID[kind].fullmatch(name):
                            out.write(_INVALID[kind].format(name) + "\n")
            return t.num_rows
        finally:
            out.flush()

    def hand_over(self, vcf) -> None:
        """Declare the reported names in ``vcf``'s header (htslib's dummy lines), so htslib,
        reading the file from here on, does not report them again (nor, while they are added,
        repeat its invalid-name warnings: its stderr is muted for that moment)."""
        if not self.reported:
            return
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            for kind, name in self.reported:
                vcf.add_to_header(_DUMMY[kind].format(name))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
