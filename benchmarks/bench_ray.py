"""Overhead of ``--engine ray`` against the single-process engine on the same input and cores.

Two inputs:

* ``spliceai``: the SpliceAI benchmark's VCF (496 ClinVar missense SNVs of the BRCA1 slice plus
  seeded synthetic SNVs/indels near exon boundaries; ``bench_spliceai.build_inputs``), scored with
  the real SpliceAI model;
* ``host``: a lookup-only run (no model) over a synthetic sorted, indexed VCF of ``--host-records``
  records on 3 contigs: the fixed costs of the Ray path (Ray start-up, pre-scan, actor start,
  markers) without model time to hide them.

Pairs run interleaved (local, ray, local, ray, ...), each as its own ``python -m vareff`` process;
wall time is the figure to compare.  CPU time (user + system of the reaped child processes) is
printed too, but for Ray it misses the workers that Ray's own processes start and stop, so it is
only meaningful for the local engine.  ``--threads T`` is given to both engines: locally one process with T torch
threads; on Ray one worker per T CPUs of the local instance (so ``--threads 2`` on a 2-core machine
means one worker holding the same two threads: same resources, byte-identical output).

    python benchmarks/bench_ray.py --data ../shared/data --workdir /tmp/vareff-ray-bench \\
        --n-synthetic 500 --threads 2 --rounds 1
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spliceai import CONTIG, OFFSET0, build_inputs  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of a process including its children (Ray's workers)."""
    t = time.perf_counter()
    before = os.times()
    subprocess.run(cmd, check=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - t, cpu


def host_vcf(work: Path, n: int, seed: int = 3) -> Path:
    import pysam

    rng = random.Random(seed)
    path = work / f"host_{n}.vcf"
    contigs = {"chr1": 248_956_422, "chr2": 242_193_529, "chr3": 198_295_559}
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        for c, ln in contigs.items():
            out.write(f"##contig=<ID={c},length={ln}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for c, ln in contigs.items():
            for i, p in enumerate(sorted(rng.randint(1, ln) for _ in range(n // len(contigs)))):
                ref = rng.choice("ACGT")
                out.write(f"{c}\t{p}\t{c}_{i}\t{ref}\t{rng.choice([b for b in 'ACGT' if b != ref])}\t.\t.\t.\n")
    gz = work / f"host_{n}.vcf.gz"
    pysam.tabix_compress(str(path), str(gz), force=True)
    pysam.tabix_index(str(gz), preset="vcf", force=True)
    return gz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-ray-bench")
    ap.add_argument("--n-synthetic", type=int, default=500)
    ap.add_argument("--distance", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shards", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--host-records", type=int, default=100_000)
    ap.add_argument("--only", choices=["spliceai", "host"], default=None)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    region = Path(args.data) / "grch38" / "brca1_region"
    jobs = {}
    if args.only in (None, "host"):
        gz = host_vcf(work, args.host_records)
        jobs["host"] = (gz, args.host_records, ["--annotation", str(region / "spliceai_grch38_annotation.chr17_42425000-43600000.txt")])
    if args.only in (None, "spliceai"):
        vcf, _, ann, n = build_inputs(Path(args.data), work, args.n_synthetic, seed=7)
        jobs["spliceai"] = (vcf, n, ["-f", str(region / "chr17_42425000_43600000.fwd.fa"),
                                     "--contig-map", f"chr17={CONTIG}+{OFFSET0}", "--spliceai-annotation", str(ann),
                                     "--spliceai-distance", str(args.distance)])
    for name, (inp, n, opts) in jobs.items():
        print(f"{name}: {n} alleles ({inp}), --threads {args.threads}", flush=True)
        times: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
        for r in range(args.rounds):
            for engine in ("local", "ray"):
                out = work / f"{name}_{engine}.parquet"
                for p in (out, work / f".{out.name}.vareff-parts"):
                    if p.is_dir():
                        import shutil

                        shutil.rmtree(p)
                    elif p.exists():
                        p.unlink()
                extra = ["--engine", "ray"] + (["--shards", str(args.shards)] if args.shards else []) \
                    if engine == "ray" else []
                cmd = [sys.executable, "-m", "vareff", "--log-level", "WARNING", "score", str(inp), *opts,
                       "--threads", str(args.threads), "--no-progress", "-o", str(out), *extra]
                w, c = timed(cmd)
                times[engine].append((w, c))
                print(f"  round {r} {engine:5s}: {w:8.1f} s wall, {c:8.1f} CPU-s, {n / w:8.2f} alleles/s", flush=True)
        import polars as pl

        same = pl.read_parquet(work / f"{name}_local.parquet").equals(pl.read_parquet(work / f"{name}_ray.parquet"))
        lw = min(t[0] for t in times["local"])
        rw = min(t[0] for t in times["ray"])
        print(f"  {name}: best local {lw:.1f} s, best ray {rw:.1f} s: overhead {100 * (rw / lw - 1):+.1f}% wall; "
              f"rows identical: {same}", flush=True)


if __name__ == "__main__":
    main()
