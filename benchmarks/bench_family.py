"""Genotype extraction: the per-(allele, sample) table of a 1,000-sample VCF, against a cyvcf2 loop.

Writes a VCF of random SNVs on the GRCh38 BRCA1 slice with S samples (GT:GQ:DP, ~2% carriers per
record, some missing calls) at N and N/5 records, then in fresh processes:
- vareff: ``score_vcf(models=[], samples="all")`` (REF check against the FASTA, allele table and
  ``.samples.parquet`` of carriers);
- baseline: what a user writes by hand with cyvcf2 (iterate, ``genotype.array()``, keep carriers
  per ALT in Python lists, write Parquet with polars).
Reports allele x sample genotypes per second and the peak resident memory of each run (vareff's
should not grow with the number of records: the stream is chunked).

    python benchmarks/bench_family.py --data ../shared/data --workdir /tmp/vareff-family-bench --n 100000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONTIG = "chr17_42425000_43600000"
OFFSET0 = 42_424_999

BASELINE = r"""
import sys, cyvcf2, numpy as np, polars as pl
vcf = cyvcf2.VCF(sys.argv[1]); names = vcf.samples
out = {"chrom": [], "pos": [], "ref": [], "alt": [], "sample": [], "copies": []}
for v in vcf:
    g = v.genotype.array()[:, :-1]
    for a, alt in enumerate(v.ALT, 1):
        copies = (g == a).sum(1)
        for s in np.flatnonzero(copies):
            out["chrom"].append(v.CHROM); out["pos"].append(v.POS); out["ref"].append(v.REF)
            out["alt"].append(alt); out["sample"].append(names[s]); out["copies"].append(int(copies[s]))
pl.DataFrame(out).write_parquet(sys.argv[2])
"""

VAREFF = r"""
import sys, vareff
vareff.score_vcf(sys.argv[1], sys.argv[2], fasta=sys.argv[3], models=[], samples="all",
                 contig_map=["chr17=%s+%d"], chunk_size=5000)
""" % (CONTIG, OFFSET0)


def make_vcf(seq: str, n: int, n_samples: int, path: Path, seed: int) -> None:
    """Random SNVs with genotypes: 2% het / 0.5% hom-alt carriers, 1% missing calls."""
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(np.arange(10, len(seq) - 10), size=n, replace=False))
    cells = np.array(["0/0:50:30", "0/1:50:30", "1/1:50:30", "./.:.:."])
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=83257441>\n"
                  '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                  '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
                  '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">\n')
        out.write("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
                            + [f"S{i:04d}" for i in range(n_samples)]) + "\n")
        for i, p in enumerate(pos):
            r = seq[p]
            alt = "ACGT"[("ACGT".index(r) + 1 + i % 3) % 4]
            kind = rng.choice(4, size=n_samples, p=[0.965, 0.02, 0.005, 0.01])
            out.write(f"chr17\t{p + 1 + OFFSET0}\tv{i}\t{r}\t{alt}\t.\tPASS\t.\tGT:GQ:DP\t"
                      + "\t".join(cells[kind]) + "\n")


def timed(code: str, *args: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of one fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"run failed: {args}")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-family-bench")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    fasta = Path(args.data) / "grch38/brca1_region/chr17_42425000_43600000.fwd.fa"
    seq = "".join(fasta.read_text().split("\n", 1)[1].split())
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for n in (args.n // 5, args.n):
        vcf = work / f"cohort_{n}.vcf"
        if not vcf.exists():
            make_vcf(seq, n, args.samples, vcf, seed=n)
        cells = n * args.samples
        for name, code, extra in (("cyvcf2 loop", BASELINE, []), ("vareff", VAREFF, [str(fasta)])):
            out = work / f"{name.split()[0]}_{n}.parquet"
            wall, cpu, rss = timed(code, str(vcf), str(out), *extra)
            print(f"{n:>7} records x {args.samples} samples  {name:12s}  {wall:7.1f} s wall  {cpu:7.1f} s CPU  "
                  f"{cells / wall / 1e6:6.2f} M genotypes/s  peak RSS {rss / 2**20:6.0f} MiB")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
