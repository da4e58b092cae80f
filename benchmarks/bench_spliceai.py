"""vareff's SpliceAI backend vs the official SpliceAI 1.3.1 CLI on the same VCF and reference.

The VCF (written to --workdir) holds the 496 ClinVar missense SNVs of the AlphaMissense S5 set in
the GRCh38 BRCA1 slice plus synthetic SNVs, deletions and insertions within 30 nt of exon
boundaries of the slice's genes (seeded), all on the slice's GRCh38 coordinates. vareff reads the
slice through --contig-map; the official CLI gets a chr17 FASTA with the slice at its true position
(N before it). Both run here, one after the other, with the same gene table and -D.

    python benchmarks/bench_spliceai.py --data ../shared/data --workdir /tmp/spliceai-bench \
        --official-bin /path/to/venv-with-spliceai-and-tensorflow/bin/spliceai

Without --official-bin only vareff runs (alleles/s). The official CLI needs its own virtualenv
(tensorflow-cpu, keras 2, spliceai 1.3.1); it is not part of the project or its CI.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import subprocess
import sys
import time
from pathlib import Path

CONTIG = "chr17_42425000_43600000"
OFFSET0 = 42_424_999


def build_inputs(data: Path, work: Path, n_synthetic: int, seed: int) -> tuple[Path, Path, Path, int]:
    import pysam

    region = data / "grch38" / "brca1_region"
    fa = pysam.FastaFile(str(region / "chr17_42425000_43600000.fwd.fa"))
    seq = fa.fetch(CONTIG).upper()
    base = lambda p1, n=1: seq[p1 - 1 - OFFSET0: p1 - 1 - OFFSET0 + n]  # noqa: E731 (GRCh38 1-based)
    variants: set[tuple[int, str, str]] = set()
    with open(region / "alphamissense_s5.chr17_42425000-43600000.csv") as fh:
        for row in csv.DictReader(fh):
            c, p, r, a, _ = row["variant_id"].split("_")
            variants.add((int(p), r, a))
    rng = random.Random(seed)
    ann = region / "spliceai_grch38_annotation.chr17_42425000-43600000.txt"
    bounds = []
    for line in open(ann):
        if line.startswith("#"):
            continue
        f = line.rstrip("\n").split("\t")
        bounds += [int(x) + 1 for x in f[5].split(",") if x] + [int(x) for x in f[6].split(",") if x]
    bounds = [b for b in bounds if OFFSET0 + 6000 < b < OFFSET0 + len(seq) - 6000]
    target = len(variants) + n_synthetic
    while len(variants) < target:
        p = rng.choice(bounds) + rng.randint(-30, 30)
        kind = rng.random()
        r = base(p)
        if kind < 0.5:
            a = rng.choice([b for b in "ACGT" if b != r])
            variants.add((p, r, a))
        elif kind < 0.75:
            n = rng.randint(1, 6)
            variants.add((p, base(p, n + 1), r))
        else:
            ins = "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 6)))
            variants.add((p, r, r + ins))
    vcf = work / "bench.vcf"
    with open(vcf, "w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=chr17,length=83257441>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, (p, r, a) in enumerate(sorted(variants)):
            out.write(f"chr17\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n")
    full = work / "chr17.fa"
    if not full.exists():
        with open(full, "w") as out:
            out.write(">chr17\n")
            s = "N" * OFFSET0 + seq
            for i in range(0, len(s), 60):
                out.write(s[i: i + 60] + "\n")
        pysam.faidx(str(full))
    return vcf, full, ann, len(variants)


def info_by_id(path: Path) -> dict[str, str]:
    out = {}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            info = dict(kv.split("=", 1) for kv in f[7].split(";") if "=" in kv)
            out[f[2]] = info.get("SpliceAI", "")
    return out


def ds_values(entry: str) -> list[float | None]:
    return [None if v == "." else float(v) for v in entry.split("|")[2:6]]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one process; CPU time is the fairer
    measure on a machine shared with other work."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed")
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-spliceai-bench")
    ap.add_argument("--official-bin", help="the official `spliceai` executable (its own virtualenv)")
    ap.add_argument("--n-synthetic", type=int, default=510)
    ap.add_argument("--distance", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    vcf, full_fa, ann, n = build_inputs(Path(args.data), work, args.n_synthetic, args.seed)
    print(f"input: {n} alleles ({vcf})", flush=True)
    region = Path(args.data) / "grch38" / "brca1_region"

    ours = work / "vareff.vcf"
    cmd = [sys.executable, "-m", "vareff", "score", str(vcf), "-f", str(region / "chr17_42425000_43600000.fwd.fa"),
           "--contig-map", f"chr17={CONTIG}+{OFFSET0}", "--spliceai-annotation", str(ann),
           "--spliceai-distance", str(args.distance), "--threads", str(args.threads), "-o", str(ours), "--no-progress"]
    t_ours, c_ours = timed(cmd)
    print(f"vareff: {t_ours:.1f} s wall, {c_ours:.1f} CPU-s; {n / t_ours:.2f} alleles/s wall, "
          f"{n / c_ours:.3f} alleles per CPU-s (incl. start-up)", flush=True)

    if not args.official_bin:
        return
    theirs = work / "official.vcf"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    t_theirs, c_theirs = timed([args.official_bin, "-I", str(vcf), "-O", str(theirs), "-R", str(full_fa),
                                "-A", str(ann), "-D", str(args.distance)], env=env)
    print(f"official: {t_theirs:.1f} s wall, {c_theirs:.1f} CPU-s; {n / t_theirs:.2f} alleles/s wall, "
          f"{n / c_theirs:.3f} alleles per CPU-s (incl. start-up)", flush=True)

    a, b = info_by_id(ours), info_by_id(theirs)
    same = diff = 0
    max_d = 0.0
    for vid, e_off in b.items():
        e_ours = a.get(vid, "")
        if e_off == e_ours:
            same += 1
        else:
            diff += 1
        for x, y in zip(e_off.split(","), e_ours.split(",")):
            for u, v in zip(ds_values(x) if x else [], ds_values(y) if y else []):
                if u is not None and v is not None:
                    max_d = max(max_d, abs(u - v))
    print(f"records with identical SpliceAI INFO: {same}/{same + diff}; largest |DS| difference: {max_d:.2f}")
    print(f"speed-up: {t_theirs / t_ours:.1f}x wall, {c_theirs / c_ours:.1f}x CPU time")


if __name__ == "__main__":
    main()
