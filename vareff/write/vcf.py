"""VCF output: the input header plus vareff's INFO lines; records passed through with INFO added."""
from __future__ import annotations

import shlex

import cyvcf2

from vareff._version import __version__
from vareff.score.base import InfoField
from vareff.write.provenance import header_lines, provenance_of

STATUS_FIELD = InfoField("vareff_status", "vareff per-allele status: ok, or why the allele was not scored")


def prepare_header(vcf: cyvcf2.VCF, fields: list[InfoField], command: str, schema=None) -> str:
    """Register INFO fields with the reader (so records accept them) and return the output header text.

    ``schema``: the run's output schema; its provenance (version, command, models with weights
    checksums and options, lookup tables) becomes ``##vareff...`` lines (see ``provenance.py``)."""
    present = set()
    for line in vcf.raw_header.splitlines():
        if line.startswith("##INFO=<ID="):
            present.add(line[len("##INFO=<ID="):].split(",", 1)[0])
    for f in fields:
        if f.id not in present:
            vcf.add_info_to_header({"ID": f.id, "Number": f.number, "Type": f.type, "Description": f.description})
    lines = vcf.raw_header.rstrip("\n").split("\n")
    prov = provenance_of(schema)
    if not prov:
        prov = {"version": __version__, "command": command}
    extra = header_lines(prov)
    return "\n".join(lines[:-1] + extra + lines[-1:]) + "\n"


def record_lines(variants, per_record: list[dict[str, str | None]]) -> list[str]:
    """Text of each record with the given INFO values set (None leaves the field absent)."""
    out = []
    for v, info in zip(variants, per_record):
        if v is None:
            continue
        for k, val in info.items():
            if val is not None:
                v.INFO[k] = val
        out.append(str(v))
    return out


def format_command(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
