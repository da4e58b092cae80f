"""Synthetic VCF records for the host-path tests and scripts/check-identical-outputs.py: every allele
kind on the GRCh38 BRCA1 slice, and one edit per malformed-line case (no vareff import, so the same
records can be written with any version of the code)."""
from __future__ import annotations

import random

FASTA = "grch38/brca1_region/chr17_42425000_43600000.fwd.fa"
CONTIG, OFFSET = "chr17_42425000_43600000", 42_424_999
HEADER = ["##fileformat=VCFv4.2", "##contig=<ID=chr17,length=83257441>",
          '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
EDITED = 21


def synthetic_records(seq: str, n: int = 40, seed: int = 7) -> list[str]:
    """Sorted records of every allele kind on the slice: SNVs, indels, multi-allelics, symbolic and
    ``*`` alleles, ALT ``.``, lower case, N in REF, REF mismatches, outside the slice, other contig."""
    rng = random.Random(seed)
    out = []
    for i, p in enumerate(sorted(rng.sample(range(100, len(seq) - 100), n))):
        r, kind = seq[p], i % 12
        ref, alt = r, rng.choice([b for b in "ACGT" if b != r])
        if kind == 1:
            ref, alt = seq[p: p + 4], r
        elif kind == 2:
            alt = f"{alt},{r}TT,{seq[p]}{seq[p + 1]}"[: 20]
        elif kind == 3:
            alt = "<DEL>,*"
        elif kind == 4:
            alt = "."
        elif kind == 5:
            ref, alt = ref.lower(), alt.lower()
        elif kind == 6:
            ref = "N"
        elif kind == 7:
            ref = "ACGTACG"[: 1 + i % 5] if seq[p] != "A" else "C"
        elif kind == 8:
            ref, alt = seq[p: p + 3], seq[p] + "GG" + seq[p + 2]
        qual = ["."][0] if i % 3 else str(10 + i)
        out.append(f"chr17\t{p + 1 + OFFSET}\t{'rs%d' % i if i % 2 else '.'}\t{ref}\t{alt}\t{qual}\t"
                   f"{'PASS' if i % 4 else '.'}\t{'DP=%d' % i if i % 5 else '.'}")
    out.append(f"chr17\t{OFFSET + len(seq) + 50}\t.\tA\tC\t.\t.\t.")  # outside the slice
    out.append("chr9\t100\t.\tA\tC\t.\t.\t.")  # a contig the FASTA lacks
    return out


def set_field(line: str, i: int, value: str) -> str:
    f = line.split("\t")
    f[i] = value
    return "\t".join(f)


# (edit of one record line); the cyvcf2 path's behaviour on each is the reference
EDITS = {
    "clean": lambda r: r,
    "too_few_columns": lambda r: "\t".join(r.split("\t")[:4]),
    "non_numeric_pos": lambda r: set_field(r, 1, "X" + r.split("\t")[1]),
    "negative_pos": lambda r: set_field(r, 1, "-" + r.split("\t")[1]),
    "zero_pos": lambda r: set_field(r, 1, "0"),
    "leading_zeros_pos": lambda r: set_field(r, 1, "00" + r.split("\t")[1]),
    "pos_past_int32": lambda r: set_field(r, 1, str(2**32 + int(r.split("\t")[1]))),
    "trailing_spaces": lambda r: set_field(r, 7, ".") + "  ",
    "space_in_alt": lambda r: set_field(r, 4, r.split("\t")[4] + " "),
    "space_in_chrom": lambda r: "chr " + r,
    "space_separated": lambda r: r.replace("\t", " "),
    "space_in_info": lambda r: set_field(r, 7, "DP=3;X=a b"),
    "empty_field": lambda r: set_field(r, 2, ""),
    "empty_line": lambda r: "",
    "comment_line": lambda r: "#" + r,
    "crlf": lambda r: r + "\r",
    "tab_at_end": lambda r: r + "\t",
    "alt_dot_token": lambda r: set_field(r, 4, "A,."),
    "alt_empty_token": lambda r: set_field(r, 4, "A,,C"),
    "ref_dot": lambda r: set_field(r, 3, "."),
    "qual_text": lambda r: set_field(r, 5, "abc"),
    "info_end_before_pos": lambda r: set_field(r, 7, "END=5"),
    "non_ascii": lambda r: set_field(r, 2, "rs\u00e9"),
    "extra_column": lambda r: r + "\tGT",
}
