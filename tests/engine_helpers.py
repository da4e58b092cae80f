"""Helpers shared by the engine tests: paths into the shared data kit and small VCF builders."""
from __future__ import annotations

from pathlib import Path

BRCA_CONTIG = "chr17_42425000_43600000"
BRCA_OFFSET0 = 42_424_999  # genomic pos = slice pos + 42,424,999
PANGOLIN_SHIFT = 1_847_983  # GRCh37 -> GRCh38 in the BRCA1 region (shared/data README)


def brca_paths(shared: Path) -> dict[str, str]:
    d = shared / "grch38" / "brca1_region"
    return {
        "fasta": str(d / "chr17_42425000_43600000.fwd.fa"),
        "annotation": str(d / "spliceai_grch38_annotation.chr17_42425000-43600000.txt"),
        "contig_map": f"chr17={BRCA_CONTIG}+{BRCA_OFFSET0}",
    }


def tubb8_paths(shared: Path) -> dict[str, str]:
    d = shared / "grch37" / "spliceai_test"
    return {
        "fasta": str(d / "test.fa"),
        "fasta_noprefix": str(d / "test_without_prefix.fa"),
        "annotation": str(d / "spliceai_grch37_annotation.chr10_1-110000.txt"),
    }


def shifted_pangolin_vcf(shared: Path, out: Path, records: int | None = None) -> Path:
    """The Pangolin BRCA1 VCF moved to GRCh38 (+1,847,983); its space-separated first record is kept as is.

    ``records``: keep only the first that many records (the malformed first one included), for
    end-to-end tests that need a few model-scored chunks rather than all 36 records.
    """
    lines, n = [], 0
    for line in (shared / "golden" / "pangolin" / "brca.vcf").read_text().splitlines():
        f = line.split("\t")
        if not line.startswith("#"):
            n += 1
            if records is not None and n > records:
                break
            if len(f) >= 8:
                f[1] = str(int(f[1]) + PANGOLIN_SHIFT)
        lines.append("\t".join(f))
    out.write_text("\n".join(lines) + "\n")
    return out


def write_vcf(path: Path, records: list[tuple], contigs: dict[str, int] | None = None, info: str = ".") -> Path:
    """A minimal VCF: records are (chrom, pos, id, ref, alt)."""
    head = ["##fileformat=VCFv4.2"]
    for c, n in (contigs or {}).items():
        head.append(f"##contig=<ID={c},length={n}>")
    head.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    body = [f"{c}\t{p}\t{i}\t{r}\t{a}\t.\t.\t{info}" for c, p, i, r, a in records]
    path.write_text("\n".join(head + body) + "\n")
    return path
