"""Scale benchmark for AlphaMissense lookups (issue 5): am-build and lookups vs per-allele tabix.

Generates, under WORKDIR (outside the repository; nothing here is committed):

* ``AlphaMissense_hg38.scale.tsv.gz`` -- a synthetic table with the size and schema of the
  published ``AlphaMissense_hg38.tsv.gz`` (71,697,556 rows by default; three comment lines
  and the ``#CHROM POS REF ALT genome uniprot_id transcript_id protein_variant
  am_pathogenicity am_class`` header; scores with 4 decimals; sorted by contig and
  position), written bgzip-compressed so that the same file serves ``vareff am-build``
  (any gzip reader) and tabix (VEP's method).  Rows per contig follow GRCh38 contig
  lengths; coding positions come in 150-bp exon blocks grouped into genes, each position
  carrying 1-3 missense ALTs (2.25 on average, as in the real file).
* ``queries.parquet`` -- 10^6 query alleles in genomic order, half drawn from the table's
  rows (expected hits, with the expected score kept for checking) and half at uniformly
  random genome positions with random REF/ALT (mostly misses), i.e. spread over the genome.

Then it runs, each stage in a fresh process so that its peak resident memory is its own:

1. ``build``   -- :func:`vareff.lookup.am_build.build_table` (time, peak RSS, size).
2. ``lookup``  -- open the table, annotate all queries in chunks (as the engine does), twice:
   the first pass maps the pages it touches, the second is warm; also one pass in random
   order.  Every expected hit is checked against its source score.
3. ``tabix``   -- ``tabix -s 1 -b 2 -e 2 -S 4`` index (pysam), then one tabix query per allele
   (what VEP's plugin does) on a sample of the same queries, in genomic order, in-process
   through pysam (faster than a subprocess per query); results are compared with the
   lookup's on the same alleles.
4. ``parquet`` -- the table rewritten as zstd Parquet and the time to decode the lookup's
   columns, i.e. the per-run cost a Parquet table would add (why the table is Arrow IPC).

Usage::

    python benchmarks/bench_alphamissense.py WORKDIR [--rows 71697556] [--queries 1000000]
        [--tabix-queries 20000] [--chunk 100000] [--stages generate,build,lookup,tabix,parquet]

Prints one JSON object per stage and a Markdown summary; ``WORKDIR/results.json`` keeps them.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import subprocess
import sys
import time

import numpy as np
import polars as pl

PUBLISHED_ROWS = 71_697_556
GRCH38 = {
    "chr1": 248_956_422, "chr2": 242_193_529, "chr3": 198_295_559, "chr4": 190_214_555,
    "chr5": 181_538_259, "chr6": 170_805_979, "chr7": 159_345_973, "chr8": 145_138_636,
    "chr9": 138_394_717, "chr10": 133_797_422, "chr11": 135_086_622, "chr12": 133_275_309,
    "chr13": 114_364_328, "chr14": 107_043_718, "chr15": 101_991_189, "chr16": 90_338_345,
    "chr17": 83_257_441, "chr18": 80_373_285, "chr19": 58_617_616, "chr20": 64_444_167,
    "chr21": 46_709_983, "chr22": 50_818_468, "chrX": 156_040_895, "chrY": 57_227_415,
}
AMINO = "ACDEFGHIKLMNPQRSTVWY"
BASES = "ACGT"
EXON = 150
EXONS_PER_GENE = 11
TABLE = "AlphaMissense_hg38.scale.tsv.gz"
HEADER = (
    "# Synthetic scale fixture for the vareff AlphaMissense benchmark (not real predictions)\n"
    "#\n"
    "# Same layout as AlphaMissense_hg38.tsv.gz\n"
    "#CHROM\tPOS\tREF\tALT\tgenome\tuniprot_id\ttranscript_id\tprotein_variant\tam_pathogenicity\tam_class\n"
)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------
# fixture
# ---------------------------------------------------------------------------------------


def _contig_rows(rng: np.random.Generator, chrom: str, length: int, n_rows: int, gene0: int
                 ) -> tuple[pl.DataFrame, int]:
    """Exactly ``n_rows`` AlphaMissense-like rows on one contig, sorted by position."""
    margin = 1.10
    while True:
        n_pos = int(n_rows / 2.25 * margin) + 1000
        n_blocks = n_pos // EXON + 1
        starts = np.sort(rng.integers(1, length - EXON - 1, n_blocks))
        pos = np.unique((starts[:, None] + np.arange(EXON)).ravel())
        ref = rng.integers(0, 4, len(pos))
        keep = rng.random((len(pos), 3)) < 0.75
        n = int(keep.sum())
        if n >= n_rows:
            break
        margin *= 1.2
    block = np.searchsorted(starts, pos, side="right") - 1
    gene = block // EXONS_PER_GENE
    pos_r = np.repeat(pos, 3)[keep.ravel()][:n_rows]
    ref_r = np.repeat(ref, 3)[keep.ravel()][:n_rows]
    alt_k = np.tile(np.arange(1, 4), len(pos))[keep.ravel()][:n_rows]
    gene_r = np.repeat(gene, 3)[keep.ravel()][:n_rows] + gene0
    # scores: a benign-heavy and a pathogenic-heavy component, 4 decimals as published
    path = rng.random(n_rows) < 0.38
    x = np.where(path, rng.beta(5.0, 1.6, n_rows), rng.beta(1.3, 7.0, n_rows))
    s10k = np.clip(np.rint(x * 10_000), 0, 10_000).astype(np.int64)
    df = pl.DataFrame({
        "pos": pos_r, "ref": ref_r, "alt": (ref_r + alt_k) % 4, "gene": gene_r, "s10k": s10k,
    })
    df = df.with_columns(
        rank=pl.col("pos").rank("dense").over("gene") - 1,
        strand=(pl.col("gene") % 2 == 0),
    ).with_columns(
        codon=pl.when(pl.col("strand")).then(pl.col("rank")).otherwise(
            pl.col("rank").max().over("gene") - pl.col("rank")) // 3,
    )
    aa = pl.Series(list(AMINO))
    frac = pl.col("s10k").cast(pl.String).str.zfill(4).str.strip_chars_end("0")
    score = (pl.when(pl.col("s10k") == 10_000).then(pl.lit("1.0"))
             .when(pl.col("s10k") == 0).then(pl.lit("0.0"))
             .otherwise(pl.lit("0.") + frac))
    ref_aa = (pl.col("codon") * 7 + pl.col("gene") * 13) % 20
    alt_aa = (ref_aa + 1 + (pl.col("alt") * 6 + pl.col("pos")) % 19) % 20
    out = df.select(
        pl.lit(chrom).alias("CHROM"),
        pl.col("pos").alias("POS"),
        pl.col("ref").replace_strict(dict(enumerate(BASES)), return_dtype=pl.String).alias("REF"),
        pl.col("alt").replace_strict(dict(enumerate(BASES)), return_dtype=pl.String).alias("ALT"),
        pl.lit("hg38").alias("genome"),
        (pl.lit("Q") + pl.col("gene").cast(pl.String).str.zfill(5)).alias("uniprot_id"),
        (pl.lit("ENST") + (pl.col("gene") + 100_000).cast(pl.String).str.zfill(11)
         + pl.lit(".") + (pl.col("gene") % 17 + 1).cast(pl.String)).alias("transcript_id"),
        (ref_aa.map_batches(lambda s: aa.gather(s), return_dtype=pl.String)
         + (pl.col("codon") + 1).cast(pl.String)
         + alt_aa.map_batches(lambda s: aa.gather(s), return_dtype=pl.String)).alias("protein_variant"),
        score.alias("am_pathogenicity"),
        pl.when(pl.col("s10k") < 3400).then(pl.lit("likely_benign"))
        .when(pl.col("s10k") > 5640).then(pl.lit("likely_pathogenic"))
        .otherwise(pl.lit("ambiguous")).alias("am_class"),
    )
    return out, int(gene.max()) + 1


def stage_generate(work: str, rows: int, queries: int, seed: int) -> dict:
    import pysam

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    total_len = sum(GRCH38.values())
    target = {c: rows * L // total_len for c, L in GRCH38.items()}
    target["chr1"] += rows - sum(target.values())
    n_hits = queries // 2
    path = os.path.join(work, TABLE)
    hits = []
    gene0 = 0
    with pysam.BGZFile(path + ".part", "wb") as out:
        out.write(HEADER.encode())
        for chrom, n_rows in target.items():
            df, n_genes = _contig_rows(rng, chrom, GRCH38[chrom], n_rows, gene0)
            gene0 += n_genes
            buf = io.BytesIO()
            df.write_csv(buf, separator="\t", include_header=False, quote_style="never")
            out.write(buf.getvalue())
            k = round(n_hits * n_rows / rows)
            idx = np.sort(rng.choice(df.height, size=min(k, df.height), replace=False))
            hits.append(df[idx].select(
                chrom="CHROM", pos="POS", ref="REF", alt="ALT",
                expected=pl.col("am_pathogenicity").cast(pl.Float32)))
            print(f"generate: {chrom} {n_rows:,} rows ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            del df, buf
    os.replace(path + ".part", path)
    hit_df = pl.concat(hits)
    # misses: uniform over the genome, random REF/ALT
    n_miss = queries - hit_df.height
    names = list(GRCH38)
    w = np.array([GRCH38[c] for c in names], dtype=np.float64)
    ci = rng.choice(len(names), size=n_miss, p=w / w.sum())
    lens = np.array([GRCH38[names[i]] for i in ci])
    pos = (rng.random(n_miss) * lens).astype(np.int64) + 1
    ref = rng.integers(0, 4, n_miss)
    alt = (ref + rng.integers(1, 4, n_miss)) % 4
    miss_df = pl.DataFrame({
        "chrom": [names[i] for i in ci], "pos": pos,
        "ref": [BASES[i] for i in ref], "alt": [BASES[i] for i in alt],
        "expected": pl.Series([None] * n_miss, dtype=pl.Float32),
    })
    order = {c: i for i, c in enumerate(names)}
    q = (pl.concat([hit_df.with_columns(pl.col("pos").cast(pl.Int64)), miss_df])
         .with_columns(o=pl.col("chrom").replace_strict(order, return_dtype=pl.Int32))
         .sort(["o", "pos"]).drop("o"))
    q.write_parquet(os.path.join(work, "queries.parquet"))
    return {
        "stage": "generate", "rows": rows, "queries": q.height, "expected_hits": hit_df.height,
        "seconds": time.perf_counter() - t0, "fixture_bytes": os.path.getsize(path),
        "peak_rss_bytes": _peak_rss(),
    }


# ---------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------


def stage_build(work: str) -> dict:
    from vareff.lookup.am_build import build_table

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    stats = build_table(os.path.join(work, TABLE), os.path.join(work, "am_scale.arrow"), progress=True)
    return {
        "stage": "build", "rows": stats.rows, "seconds": stats.seconds,
        "peak_rss_bytes": stats.peak_rss_bytes, "source_bytes": stats.source_bytes,
        "table_bytes": stats.table_bytes, "transcripts": stats.transcripts,
        "rows_per_second": stats.rows / stats.seconds,
    }


def _annotate_all(lk, q: pl.DataFrame, chunk: int, cpu: list | None = None) -> tuple[float, pl.DataFrame]:
    t, c = time.perf_counter(), time.process_time()
    outs = [lk.annotate(q.slice(i, chunk)) for i in range(0, q.height, chunk)]
    if cpu is not None:
        cpu.append(time.process_time() - c)
    return time.perf_counter() - t, pl.concat(outs)


def stage_lookup(work: str, chunk: int) -> dict:
    from vareff.lookup.alphamissense import AlphaMissenseLookup

    q = pl.read_parquet(os.path.join(work, "queries.parquet"))
    rss0 = _peak_rss()
    t = time.perf_counter()
    lk = AlphaMissenseLookup.open(os.path.join(work, "am_scale.arrow"))
    t_open = time.perf_counter() - t
    alleles = q.select("chrom", "pos", "ref", "alt")
    t1, out = _annotate_all(lk, alleles, chunk)
    cpu: list[float] = []
    t2, out2 = _annotate_all(lk, alleles, chunk, cpu)
    shuffled = alleles.sample(fraction=1.0, shuffle=True, seed=1)
    t3, _ = _annotate_all(lk, shuffled, chunk)
    t4, _ = _annotate_all(lk, alleles, 10_000)
    exp = q["expected"]
    checked = exp.is_not_null()
    wrong = int(((out["am_pathogenicity"] != exp) & checked).sum()
                + (out["am_pathogenicity"].is_null() & checked).sum())
    assert out.equals(out2)
    n = q.height
    return {
        "stage": "lookup", "queries": n, "chunk": chunk, "open_seconds": t_open,
        "first_pass_seconds": t1, "warm_seconds": t2, "shuffled_seconds": t3,
        "chunk10k_seconds": t4,
        "first_pass_alleles_per_s": n / (t_open + t1), "warm_alleles_per_s": n / t2,
        "warm_cpu_seconds": cpu[0], "warm_alleles_per_cpu_s": n / cpu[0],
        "shuffled_alleles_per_s": n / t3, "chunk10k_alleles_per_s": n / t4,
        "hits": int(out["am_pathogenicity"].is_not_null().sum()),
        "expected_hits_checked": int(checked.sum()), "expected_hits_wrong": wrong,
        "peak_rss_bytes": _peak_rss(), "rss_before_open_bytes": rss0,
    }


def stage_tabix(work: str, n_sample: int) -> dict:
    import pysam

    from vareff.lookup.alphamissense import AlphaMissenseLookup

    path = os.path.join(work, TABLE)
    t_index = None
    if not os.path.exists(path + ".tbi"):
        t = time.perf_counter()
        pysam.tabix_index(path, seq_col=0, start_col=1, end_col=1, meta_char="#",
                          zerobased=False, force=True, keep_original=True)
        t_index = time.perf_counter() - t
    q = pl.read_parquet(os.path.join(work, "queries.parquet"))
    sample = q.sample(n=min(n_sample, q.height), seed=7).with_row_index("i")
    order = {c: i for i, c in enumerate(GRCH38)}
    sample = sample.with_columns(o=pl.col("chrom").replace_strict(order)).sort(["o", "pos"]).drop("o")
    rows = sample.select("chrom", "pos", "ref", "alt").rows()
    tbx = pysam.TabixFile(path)
    t = time.perf_counter()
    res = []
    for chrom, pos, ref, alt in rows:  # one tabix query per allele, as VEP's plugin
        best = None
        for line in tbx.fetch(chrom, pos - 1, pos):
            f = line.split("\t")
            if f[2] == ref and f[3] == alt and (best is None or float(f[8]) > best):
                best = float(f[8])
        res.append(best)
    t_tabix = time.perf_counter() - t
    lk = AlphaMissenseLookup.open(os.path.join(work, "am_scale.arrow"))
    ours = lk.annotate(sample.select("chrom", "pos", "ref", "alt"))["am_pathogenicity"]
    theirs = pl.Series(res, dtype=pl.Float32)
    agree = bool(((ours == theirs) | (ours.is_null() & theirs.is_null())).all())
    return {
        "stage": "tabix", "index_seconds": t_index, "queries": len(rows), "seconds": t_tabix,
        "alleles_per_s": len(rows) / t_tabix, "hits": int(theirs.is_not_null().sum()),
        "agrees_with_lookup": agree, "peak_rss_bytes": _peak_rss(),
    }


def stage_parquet(work: str) -> dict:
    import pyarrow.parquet as pq

    src = os.path.join(work, "am_scale.arrow")
    dst = os.path.join(work, "am_scale.parquet")
    t = time.perf_counter()
    pl.scan_ipc(src).sink_parquet(dst, compression="zstd", row_group_size=1 << 20)
    t_write = time.perf_counter() - t
    cols = ["key", "am_pathogenicity", "am_class", "transcript_id", "uniprot_id",
            "protein_pos", "protein_ref", "protein_alt"]
    t = time.perf_counter()
    tbl = pq.read_table(dst, columns=cols)
    t_read = time.perf_counter() - t
    n = tbl.num_rows
    del tbl
    size = os.path.getsize(dst)
    os.unlink(dst)
    return {"stage": "parquet", "rows": n, "write_seconds": t_write, "read_lookup_columns_seconds": t_read,
            "parquet_bytes": size, "peak_rss_bytes": _peak_rss()}


# ---------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------


def _run_stage(argv: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["load_avg_1min_before"] = load
    print(json.dumps(res), flush=True)
    return res


def _summary(r: dict) -> str:
    gb = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    lines = []
    if "generate" in r:
        g = r["generate"]
        lines.append(f"- Fixture: {g['rows']:,} rows, bgzip {gb(g['fixture_bytes'])}, "
                     f"{g['queries']:,} queries ({g['expected_hits']:,} drawn from the table); "
                     f"generated in {g['seconds']:.0f} s")
    if "build" in r:
        b = r["build"]
        lines.append(f"- `am-build`: {b['seconds']:.0f} s ({b['rows_per_second']:,.0f} rows/s), "
                     f"peak RSS {gb(b['peak_rss_bytes'])}, table {gb(b['table_bytes'])}")
    if "lookup" in r:
        lk = r["lookup"]
        lines.append(f"- Lookup ({lk['queries']:,} alleles, chunks of {lk['chunk']:,}): open "
                     f"{lk['open_seconds'] * 1e3:.1f} ms; first pass (incl. open) "
                     f"{lk['first_pass_alleles_per_s']:,.0f} alleles/s; warm {lk['warm_alleles_per_s']:,.0f} "
                     f"alleles/s ({lk['warm_alleles_per_cpu_s']:,.0f} per CPU-second); shuffled order {lk['shuffled_alleles_per_s']:,.0f}; chunks of 10,000 "
                     f"{lk['chunk10k_alleles_per_s']:,.0f}; peak RSS {gb(lk['peak_rss_bytes'])}; "
                     f"{lk['hits']:,} hits, {lk['expected_hits_wrong']} of "
                     f"{lk['expected_hits_checked']:,} expected hits wrong")
    if "tabix" in r:
        tb = r["tabix"]
        idx = f"index {tb['index_seconds']:.0f} s; " if tb.get("index_seconds") else ""
        lines.append(f"- Per-allele tabix (pysam, {tb['queries']:,} alleles sampled from the same set): "
                     f"{idx}{tb['alleles_per_s']:,.0f} alleles/s; results agree with the lookup: "
                     f"{tb['agrees_with_lookup']}")
        if "lookup" in r:
            lk = r["lookup"]
            lines.append(f"- Ratio vs tabix: warm {lk['warm_alleles_per_s'] / tb['alleles_per_s']:,.0f}x, "
                         f"first pass incl. open {lk['first_pass_alleles_per_s'] / tb['alleles_per_s']:,.0f}x")
    if "parquet" in r:
        p = r["parquet"]
        lines.append(f"- Same table as zstd Parquet: {gb(p['parquet_bytes'])}; decoding the lookup's columns "
                     f"takes {p['read_lookup_columns_seconds']:.1f} s per run (Arrow IPC: memory-mapped, "
                     f"no decode)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("--rows", type=int, default=PUBLISHED_ROWS)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--tabix-queries", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stages", default="generate,build,lookup,tabix,parquet")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    if a.stage:
        res = {
            "generate": lambda: stage_generate(a.workdir, a.rows, a.queries, a.seed),
            "build": lambda: stage_build(a.workdir),
            "lookup": lambda: stage_lookup(a.workdir, a.chunk),
            "tabix": lambda: stage_tabix(a.workdir, a.tabix_queries),
            "parquet": lambda: stage_parquet(a.workdir),
        }[a.stage]()
        print(json.dumps(res))
        return
    results_path = os.path.join(a.workdir, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    common = ["--rows", str(a.rows), "--queries", str(a.queries), "--tabix-queries",
              str(a.tabix_queries), "--chunk", str(a.chunk), "--seed", str(a.seed)]
    for st in a.stages.split(","):
        results[st] = _run_stage([a.workdir, "--stage", st] + common)
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
    print(_summary(results))


if __name__ == "__main__":
    main()
