"""Host path without a model: read, normalize, REF check against the FASTA, write Parquet.

Writes two VCFs of random SNVs and small indels on the GRCh38 BRCA1 slice (N and 10*N records,
sorted) to --workdir, scores each with no model in a fresh process, and reports alleles/s and
the peak resident memory of each run (the 10x run should stay within 1.1x of the smaller one:
the stream is chunked).  Each file is scored twice, interleaved: by the columnar reader (the
default, docs/host-path.md) and by the record-by-record cyvcf2 reader (``VAREFF_HOST_PATH=cyvcf2``).
In the same run, two baselines read the larger file: cyvcf2 iteration reading CHROM/POS/REF/ALT,
and polars reading the VCF as text (``--no-baselines`` skips them).

    python benchmarks/bench_host.py --data ../shared/data --workdir /tmp/vareff-host-bench --n 200000
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

CONTIG = "chr17_42425000_43600000"
OFFSET0 = 42_424_999


def make_vcf(seq: str, n: int, path: Path, seed: int) -> None:
    rng = random.Random(seed)
    pos = sorted(rng.randrange(10, len(seq) - 20) for _ in range(n))
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=83257441>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, p in enumerate(pos):
            r = seq[p]
            k = rng.random()
            if k < 0.8:
                ref, alt = r, rng.choice([b for b in "ACGT" if b != r])
            elif k < 0.9:
                ref, alt = seq[p: p + 3], r
            else:
                ref, alt = r, r + "T"
            out.write(f"chr17\t{p + 1 + OFFSET0}\tv{i}\t{ref}\t{alt}\t.\t.\t.\n")


def run(vcf: Path, fasta: Path, out: Path, path: str = "columnar") -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one scoring process (``path``: ``columnar`` or ``cyvcf2``)."""
    code = ("import sys, vareff; vareff.score_vcf(sys.argv[1], sys.argv[2], fasta=sys.argv[3], models=[], "
            f"contig_map=['chr17={CONTIG}+{OFFSET0}'], chunk_size=20000)")
    if out.exists():
        out.unlink()
    env = dict(os.environ, VAREFF_HOST_PATH=path)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(vcf), str(out), str(fasta)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"scoring {vcf} failed")
    return dt, usage.ru_maxrss * 1024


def baselines(vcf: Path) -> None:
    """Records/s of cyvcf2 iteration reading CHROM/POS/REF/ALT, and of polars reading the text."""
    import cyvcf2
    import polars as pl

    t, n = time.perf_counter(), 0
    for v in cyvcf2.VCF(str(vcf), lazy=True):
        v.CHROM, v.POS, v.REF, v.ALT  # noqa: B018 (the access is what is timed)
        n += 1
    dt = time.perf_counter() - t
    print(f"baseline cyvcf2 iteration (CHROM/POS/REF/ALT): {n / dt:10.0f} records/s", flush=True)
    t = time.perf_counter()
    df = pl.read_csv(vcf, separator="\t", comment_prefix="##", has_header=True, quote_char=None,
                     infer_schema=False)
    dt = time.perf_counter() - t
    print(f"baseline polars read_csv of the text:           {df.height / dt:10.0f} records/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-host-bench")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--no-baselines", action="store_true", help="skip the cyvcf2 and polars baselines")
    args = ap.parse_args()
    import pysam

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    fasta = Path(args.data) / "grch38" / "brca1_region" / "chr17_42425000_43600000.fwd.fa"
    seq = pysam.FastaFile(str(fasta)).fetch(CONTIG).upper()
    results = []
    for n in (args.n, 10 * args.n):
        vcf = work / f"host_{n}.vcf"
        if not vcf.exists():
            make_vcf(seq, n, vcf, seed=n)
        for path in ("columnar", "cyvcf2"):
            dt, rss = run(vcf, fasta, work / f"host_{n}.parquet", path)
            if path == "columnar":
                results.append((n, dt, rss))
            print(f"{n:>9} records, {path:>8} reader: {dt:6.1f} s  {n / dt:10.0f} alleles/s (wall, incl. ~1 s "
                  f"start-up)  peak RSS {rss / 2**20:7.1f} MiB", flush=True)
    if not args.no_baselines:
        baselines(work / f"host_{10 * args.n}.vcf")
    (n1, _, r1), (n2, _, r2) = results
    print(f"peak memory ratio at {n2 // n1}x the input: {r2 / r1:.2f}")


if __name__ == "__main__":
    main()
