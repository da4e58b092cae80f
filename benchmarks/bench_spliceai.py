"""vareff's SpliceAI backend vs the official SpliceAI 1.3.1 CLI on the same VCF and reference.

Three inputs (``--mode``):

* ``brca1`` (default): the VCF (written to --workdir) holds the 496 ClinVar missense SNVs of the AlphaMissense S5 set in
the GRCh38 BRCA1 slice plus synthetic SNVs, deletions and insertions within 30 nt of exon
boundaries of the slice's genes (seeded), all on the slice's GRCh38 coordinates. vareff reads the
slice through --contig-map; the official CLI gets a chr17 FASTA with the slice at its true position
(N before it).
* ``tubb8``: ``--n`` alleles (default 200) in one gene, GRCh37 TUBB8 of the test kit (SpliceAI's own
  unit-test FASTA and gene table): seeded SNVs (60%), 1-6 nt deletions and insertions (20% each)
  within 30 nt of TUBB8's exon boundaries; a dense gene, where reference passes are shared.
* ``isolated``: ``--n`` SNVs (default 50) at least 10 kb apart inside the genes of the BRCA1 slice
  (seeded); each needs its own reference pass, the least favourable case for sharing.

Both tools run here, one after the other, with the same gene table and -D; the report gives wall
and CPU time of each, their ratios, vareff's average cores used (CPU time / wall) and how many
records have identical ``SpliceAI=`` INFO (2 decimals).

    python benchmarks/bench_spliceai.py --mode tubb8 --data ../shared/data --workdir /tmp/spliceai-bench \
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
    _chr17_fasta(full, seq)
    return vcf, full, ann, len(variants)


TUBB8_CHROM = "10"


def _write_vcf(path: Path, chrom: str, length: int, variants) -> None:
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={chrom},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, (p, r, a) in enumerate(sorted(variants)):
            out.write(f"{chrom}\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n")


def _exon_bounds(ann: Path) -> list[tuple[str, int]]:
    """(strand, 1-based exon boundary) of every gene in a SpliceAI gene table."""
    out = []
    for line in open(ann):
        if line.startswith("#"):
            continue
        f = line.rstrip("\n").split("\t")
        out += [(f[2], int(x) + 1) for x in f[5].split(",") if x] + [(f[2], int(x)) for x in f[6].split(",") if x]
    return out


def build_tubb8(data: Path, work: Path, n: int, seed: int) -> tuple[Path, Path, Path, int]:
    """``n`` seeded SNVs/deletions/insertions within 30 nt of TUBB8's exon boundaries (GRCh37 test kit)."""
    import pysam

    kit = data / "grch37" / "spliceai_test"
    fasta, ann = kit / "test.fa", kit / "spliceai_grch37_annotation.chr10_1-110000.txt"
    fa = pysam.FastaFile(str(fasta))
    seq = fa.fetch(fa.references[0]).upper()
    base = lambda p1, k=1: seq[p1 - 1: p1 - 1 + k]  # noqa: E731
    bounds = [b for _, b in _exon_bounds(ann)]
    tx = [(int(f[3]) + 1, int(f[4])) for f in (ln.split("\t") for ln in open(ann) if not ln.startswith("#"))]
    rng = random.Random(seed)
    variants: set[tuple[int, str, str]] = set()
    while len(variants) < n:
        p = rng.choice(bounds) + rng.randint(-30, 30)
        r, kind = base(p), rng.random()
        if r not in "ACGT" or not any(a <= p and p + 7 <= b for a, b in tx):  # inside the gene
            continue
        if kind < 0.6:
            variants.add((p, r, rng.choice([b for b in "ACGT" if b != r])))
        elif kind < 0.8:
            variants.add((p, base(p, rng.randint(2, 7)), r))
        else:
            variants.add((p, r, r + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 6)))))
    vcf = work / "tubb8.vcf"
    _write_vcf(vcf, TUBB8_CHROM, len(seq), variants)
    return vcf, fasta, ann, len(variants)


def build_isolated(data: Path, work: Path, n: int, seed: int, spacing: int = 10_000) -> tuple[Path, Path, Path, int]:
    """``n`` seeded SNVs >= ``spacing`` nt apart inside the genes of the GRCh38 BRCA1 slice."""
    import pysam

    region = data / "grch38" / "brca1_region"
    ann = region / "spliceai_grch38_annotation.chr17_42425000-43600000.txt"
    seq = pysam.FastaFile(str(region / "chr17_42425000_43600000.fwd.fa")).fetch(CONTIG).upper()
    genes = []
    for line in open(ann):
        if not line.startswith("#"):
            f = line.split("\t")
            genes.append((max(int(f[3]) + 1, OFFSET0 + 6000), min(int(f[4]), OFFSET0 + len(seq) - 6000)))
    inside = sorted({p for a, b in genes for p in range(a, b + 1, 97)})
    rng = random.Random(seed)
    rng.shuffle(inside)
    chosen: list[int] = []
    for p in inside:
        if len(chosen) == n:
            break
        r = seq[p - 1 - OFFSET0]
        if r in "ACGT" and all(abs(p - q) >= spacing for q in chosen):
            chosen.append(p)
    variants = {(p, seq[p - 1 - OFFSET0], rng.choice([b for b in "ACGT" if b != seq[p - 1 - OFFSET0]]))
                for p in chosen}
    vcf = work / "isolated.vcf"
    _write_vcf(vcf, "chr17", 83257441, variants)
    full = work / "chr17.fa"
    _chr17_fasta(full, seq)
    return vcf, full, ann, len(variants)


def _chr17_fasta(full: Path, seq: str) -> None:
    """chr17 with the slice at its true position (N before it), for the official CLI."""
    import pysam

    if full.exists():
        return
    with open(full, "w") as out:
        out.write(">chr17\n")
        s = "N" * OFFSET0 + seq
        for i in range(0, len(s), 60):
            out.write(s[i: i + 60] + "\n")
    pysam.faidx(str(full))


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


def compare(ours: Path, theirs: Path) -> tuple[int, int, float]:
    """(records with identical SpliceAI INFO, records compared, largest |DS| difference)."""
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
    return same, same + diff, max_d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("brca1", "tubb8", "isolated"), default="brca1")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-spliceai-bench")
    ap.add_argument("--official-bin", help="the official `spliceai` executable (its own virtualenv)")
    ap.add_argument("--n-synthetic", type=int, default=510, help="brca1: synthetic alleles added to the ClinVar SNVs")
    ap.add_argument("--n", type=int, default=None, help="tubb8: alleles (default 200); isolated: SNVs (default 50)")
    ap.add_argument("--distance", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default=None, help="vareff --dtype (default: float32)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    region = data / "grch38" / "brca1_region"
    slice_fa = region / "chr17_42425000_43600000.fwd.fa"
    if args.mode == "brca1":
        vcf, full_fa, ann, n = build_inputs(data, work, args.n_synthetic, args.seed)
        ours_fa, extra = slice_fa, ["--contig-map", f"chr17={CONTIG}+{OFFSET0}"]
    elif args.mode == "tubb8":
        vcf, full_fa, ann, n = build_tubb8(data, work, args.n or 200, args.seed)
        ours_fa, extra = full_fa, []
    else:
        vcf, full_fa, ann, n = build_isolated(data, work, args.n or 50, args.seed)
        ours_fa, extra = slice_fa, ["--contig-map", f"chr17={CONTIG}+{OFFSET0}"]
    print(f"input ({args.mode}): {n} alleles ({vcf}); load average {os.getloadavg()[0]:.2f}", flush=True)

    ours = work / f"vareff.{args.mode}.vcf"
    cmd = [sys.executable, "-m", "vareff", "score", str(vcf), "-f", str(ours_fa), *extra, "--spliceai-annotation",
           str(ann), "--spliceai-distance", str(args.distance), "--threads", str(args.threads), "-o", str(ours),
           "--no-progress", *(["--dtype", args.dtype] if args.dtype else [])]
    t_ours, c_ours = timed(cmd)
    print(f"vareff: {t_ours:.1f} s wall, {c_ours:.1f} CPU-s, {c_ours / t_ours:.2f} cores on average; "
          f"{n / t_ours:.2f} alleles/s wall, {n / c_ours:.3f} alleles per CPU-s (incl. start-up)", flush=True)

    if not args.official_bin:
        return
    theirs = work / f"official.{args.mode}.vcf"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    t_theirs, c_theirs = timed([args.official_bin, "-I", str(vcf), "-O", str(theirs), "-R", str(full_fa),
                                "-A", str(ann), "-D", str(args.distance)], env=env)
    print(f"official: {t_theirs:.1f} s wall, {c_theirs:.1f} CPU-s, {c_theirs / t_theirs:.2f} cores on average; "
          f"{n / t_theirs:.2f} alleles/s wall, {n / c_theirs:.3f} alleles per CPU-s (incl. start-up)", flush=True)
    same, total, max_d = compare(ours, theirs)
    print(f"records with identical SpliceAI INFO: {same}/{total}; largest |DS| difference: {max_d:.2f}")
    print(f"speed-up: {t_theirs / t_ours:.1f}x wall, {c_theirs / c_ours:.1f}x CPU time; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
