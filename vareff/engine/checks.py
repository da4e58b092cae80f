"""End-of-run checks that tell a real result from an empty one: alleles that could not be placed
on the FASTA (contig names or build that do not match) and evidence sources that gave no allele a
value (e.g. an AlphaMissense table that covers none of the input)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vareff.errors import Status

if TYPE_CHECKING:
    from vareff.engine.run import RunSummary

log = logging.getLogger("vareff")

#: statuses of alleles that were looked for on the FASTA and not found there as given
NOT_PLACED = (Status.CONTIG_NOT_IN_FASTA.value, Status.OUTSIDE_FASTA.value, Status.REF_MISMATCH.value)
#: statuses given only after an allele was placed on the FASTA
PLACED = (Status.OK.value, Status.NEAR_CONTIG_EDGE.value, Status.OUTSIDE_GENE.value, Status.N_IN_WINDOW.value,
          Status.MODEL_ERROR.value)


def preview(names, n: int = 8) -> str:
    """The first ``n`` names, comma-separated, and how many there are in all."""
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def placement_problem(status_counts: dict[str, int], vcf_contigs, fasta_contigs) -> str | None:
    """A message when under 1% of the alleles looked for on the FASTA were placed there, else None."""
    not_placed = {s: status_counts.get(s, 0) for s in NOT_PLACED if status_counts.get(s, 0)}
    placed = sum(status_counts.get(s, 0) for s in PLACED)
    tried = placed + sum(not_placed.values())
    if not tried or placed >= 0.01 * tried:
        return None
    why = ", ".join(f"{s} {n}" for s, n in not_placed.items())
    return (f"only {placed} of {tried} alleles could be placed on the FASTA ({why}): the VCF's contigs are "
            f"{preview(sorted(vcf_contigs)) or 'none'}; the FASTA's are {preview(fasta_contigs)}")


def placement_hint(vcf_contigs, fasta_contigs) -> str:
    """What to do about alleles that match nothing on the FASTA (names taken from the run)."""
    v = sorted(vcf_contigs)[0] if vcf_contigs else "CHROM"
    f = list(fasta_contigs)[0] if fasta_contigs else "CONTIG"
    return (f"name the FASTA contig of each VCF contig with --contig-map CHROM=CONTIG[+OFFSET] (e.g. --contig-map "
            f"{v}={f}, adding +OFFSET when the FASTA contig is a slice whose first base is genomic OFFSET+1), "
            "or check that the VCF and the FASTA are of the same genome build")

_NO_HITS_HINT = {
    "alphamissense": "the table has none of these alleles: AlphaMissense covers missense SNVs of one build "
                     "(check hg38 vs hg19 and that the VCF's region is in the table)",
    "annotation": "no allele lies in or near a gene of the annotation: check its build and contigs",
}


def warn_no_hits(summary: "RunSummary", skip: tuple[str, ...] = ()) -> None:
    """One warning per evidence source that gave no allele a value (a run that only looks like success)."""
    if not summary.alleles:
        return
    for src, n in summary.hits.items():
        if n == 0 and src not in skip:
            log.warning("%s: none of the %d alleles got a value (no data); Hint: %s", src, summary.alleles,
                        _NO_HITS_HINT.get(src, "see the status counts in the summary"))
