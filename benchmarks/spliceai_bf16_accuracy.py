"""How far ``--dtype bfloat16`` moves SpliceAI's delta scores from the float32 default.

Scores the alleles of bench_spliceai's BRCA1 input (496 ClinVar missense SNVs of the GRCh38 BRCA1
slice plus seeded SNVs/indels near exon boundaries; ``--n-synthetic 510`` gives 1,006 alleles) twice
with ``vareff score`` into Parquet, float32 then bfloat16, and prints the distribution of
|ΔDS| = |DS_bf16 - DS_fp32| over the four delta scores (AG, AL, DG, DL) of every scored allele,
how many DP changed and how many records' 2-decimal ``SpliceAI=`` values differ.

    python benchmarks/spliceai_bf16_accuracy.py --data ../shared/data --workdir /tmp/spliceai-bf16

``--limit K`` scores only the first K alleles (a smoke test).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spliceai import CONTIG, OFFSET0, build_inputs  # noqa: E402

DS = ("spliceai_ds_ag", "spliceai_ds_al", "spliceai_ds_dg", "spliceai_ds_dl")
DP = ("spliceai_dp_ag", "spliceai_dp_al", "spliceai_dp_dg", "spliceai_dp_dl")


def run(vcf: Path, out: Path, data: Path, ann: Path, distance: int, dtype: str, threads: int) -> float:
    region = data / "grch38" / "brca1_region"
    cmd = [sys.executable, "-m", "vareff", "score", str(vcf), "-f", str(region / "chr17_42425000_43600000.fwd.fa"),
           "--contig-map", f"chr17={CONTIG}+{OFFSET0}", "--spliceai-annotation", str(ann),
           "--spliceai-distance", str(distance), "--threads", str(threads), "--dtype", dtype,
           "-o", str(out), "--no-progress"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def summarize(a: pl.DataFrame, b: pl.DataFrame) -> dict:
    """|ΔDS| quantiles and counts between two result tables (same rows, same order)."""
    ok = (a["status"] == "ok") & (b["status"] == "ok") & a["spliceai_ds_ag"].is_not_null()
    a, b = a.filter(ok), b.filter(ok)
    d = np.abs(np.concatenate([(b[c] - a[c]).to_numpy() for c in DS]))
    q = np.quantile(d, [0.5, 0.9, 0.99, 0.999, 1.0]) if len(d) else [np.nan] * 5
    dp_changed = int(sum(int((a[c] != b[c]).sum()) for c in DP))
    info_changed = int((a["spliceai"] != b["spliceai"]).sum())
    return {"alleles": a.height, "values": len(d), "median": q[0], "p90": q[1], "p99": q[2], "p999": q[3],
            "max": q[4], "over_0.01": int((d > 0.01).sum()), "over_0.05": int((d > 0.05).sum()),
            "dp_changed": dp_changed, "info_changed": info_changed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workdir", default="/tmp/vareff-spliceai-bf16")
    ap.add_argument("--n-synthetic", type=int, default=510)
    ap.add_argument("--limit", type=int, default=None, help="score only the first K alleles (smoke test)")
    ap.add_argument("--distance", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    vcf, _, ann, n = build_inputs(data, work, args.n_synthetic, args.seed)
    if args.limit:
        lines = vcf.read_text().splitlines(keepends=True)
        head = [ln for ln in lines if ln.startswith("#")]
        body = [ln for ln in lines if not ln.startswith("#")][: args.limit]
        vcf = work / "limited.vcf"
        vcf.write_text("".join(head + body))
        n = len(body)
    print(f"input: {n} alleles; load average {os.getloadavg()[0]:.2f}", flush=True)
    outs = {}
    for dtype in ("float32", "bfloat16"):
        outs[dtype] = work / f"{dtype}.parquet"
        t = run(vcf, outs[dtype], data, ann, args.distance, dtype, args.threads)
        print(f"{dtype}: {t:.1f} s wall", flush=True)
    s = summarize(pl.read_parquet(outs["float32"]), pl.read_parquet(outs["bfloat16"]))
    print(f"scored alleles: {s['alleles']} ({s['values']} DS values)")
    print("|ΔDS| bf16 vs fp32: median {median:.4f}, p90 {p90:.4f}, p99 {p99:.4f}, p99.9 {p999:.4f}, max {max:.4f}"
          .format(**s))
    print(f"values with |ΔDS| > 0.01: {s['over_0.01']}, > 0.05: {s['over_0.05']}; DP changed: {s['dp_changed']}; "
          f"records whose 2-decimal SpliceAI INFO changed: {s['info_changed']}/{s['alleles']}")


if __name__ == "__main__":
    main()
