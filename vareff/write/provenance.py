"""Provenance header lines shared by the VCF and TSV outputs (Parquet keeps the same as metadata).

The Parquet schema metadata key ``vareff`` holds ``{"version", "command", "models": [...],
"lookups": [...]}``; the text outputs carry the same, one item per line, so a reader of any
output can tell which vareff, command, weights (checksums) and tables produced it::

    ##vareffVersion=0.1.0
    ##vareffCommand=vareff score in.vcf -o out.vcf.gz
    ##vareffModel={"model": "spliceai-10k ...", "weights_sha256_16": "...", "distance": "50", ...}
    ##vareffLookup={"lookup": "alphamissense", "source_sha256": "...", ...}

Generic ``##key=value`` lines are kept verbatim by htslib (bcftools, pysam); JSON values stay on
one line.  TSV outputs start with the same lines (read them with ``comment_prefix="#"``).
"""
from __future__ import annotations

import json

import pyarrow as pa


def provenance_of(schema: pa.Schema | None) -> dict:
    """The ``vareff`` metadata of an output schema (empty if absent)."""
    raw = (schema.metadata or {}).get(b"vareff") if schema is not None else None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def header_lines(prov: dict) -> list[str]:
    """``##vareff...=`` lines (no newline) for a provenance dict from :func:`provenance_of`."""
    lines = []
    if prov.get("version"):
        lines.append(f"##vareffVersion={prov['version']}")
    if prov.get("command"):
        lines.append(f"##vareffCommand={_one_line(str(prov['command']))}")
    for m in prov.get("models", []):
        lines.append("##vareffModel=" + json.dumps(m, separators=(", ", ": ")))
    for lk in prov.get("lookups", []):
        lines.append("##vareffLookup=" + json.dumps(lk, separators=(", ", ": ")))
    return lines
