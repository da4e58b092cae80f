#!/usr/bin/env python
"""Produce the outputs of the README demo and of every backend's CLI test, and store or compare them.

Refactors promise identical output bytes.  Run this once on the unchanged code with ``--save DIR``
(keep DIR outside the repository), then after every step with ``--compare DIR``:

    PYTHONPATH=$PWD:$PWD/kernels python scripts/check-identical-outputs.py --save /tmp/vareff-ref
    PYTHONPATH=$PWD:$PWD/kernels python scripts/check-identical-outputs.py --compare /tmp/vareff-ref

What runs (all on CPU, ``--threads 1`` so that float reductions are reproducible, in a fixed work
folder so that the paths in the file metadata are the same from run to run):

* ``demo``: examples/demo.sh -- SpliceAI on all 36 Pangolin BRCA1 records on the GRCh38 BRCA1 slice.
* ``host_no_model``: no model: every allele kind and a malformed line of each kind on the BRCA1
  slice (BGZF, ``--skip-malformed``), and the ClinVar test VCF lookup-only (docs/host-path.md).
* ``spliceai_tubb8``: the SpliceAI run of tests/test_cli.py (TUBB8, distance 5), TSV.
* ``grover_brca1``: tests/test_grover_cli.py -- the small random GROVER checkpoint on BRCA1.
* ``nt_segmentnt_brca1``: the CLI run of tests/test_nt_scores.py -- SegmentNT + NT v2 with their
  default windows on BRCA1.
* ``dnabert_brca1``: the CLI run of tests/test_dnabert.py -- a small random DNABERT on BRCA1.
* ``synthetic_*``: the random contig of tests/test_nt_scores.py (N block, soft-masked run) with
  SNVs, an MNV, insertions, deletions, a complex allele, a multi-allelic record and alleles at the
  contig ends, in chunks of 3 records (so reference caches are reused across chunks), through
  GROVER (float32, bfloat16, bfloat16-delta), NT v1, NT v2 and SegmentNT (with profiles); every
  output format.

Parquet files are compared as tables (values, schema and its metadata) and as bytes; ``.vcf.gz``
as their decompressed text; VCF and TSV as text.  Exit status 0 when everything is identical.
"""
from __future__ import annotations

import argparse
import gzip
import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import pyarrow.parquet as pq  # noqa: E402

SHARED = Path(__import__("os").environ.get("VAREFF_SHARED_DATA", REPO.parent / "shared" / "data"))
COMMON = ["--device", "cpu", "--threads", "1", "--no-progress"]


def _vareff(args: list[str]) -> None:
    from vareff.cli import main

    rc = main(args)
    if rc != 0:
        raise SystemExit(f"vareff {' '.join(args)} exited with {rc}")


def _brca_vcf(work: Path) -> Path:
    from engine_helpers import shifted_pangolin_vcf

    return shifted_pangolin_vcf(SHARED, work / "brca1.grch38.vcf")


def demo(work: Path) -> list[Path]:
    from engine_helpers import brca_paths

    p = brca_paths(SHARED)
    outs = [work / "demo.spliceai.parquet", work / "demo.spliceai.vcf.gz"]
    _vareff(["score", str(_brca_vcf(work)), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", "spliceai",
             "--spliceai-annotation", p["annotation"], "--skip-malformed"] + sum((["-o", str(o)] for o in outs), [])
            + COMMON)
    return outs


def spliceai_tubb8(work: Path) -> list[Path]:
    from engine_helpers import tubb8_paths, write_vcf

    p = tubb8_paths(SHARED)
    vcf = write_vcf(work / "tubb8.vcf", [("chr10", 94077, ".", "A", "C,T"), ("chr10", 94078, ".", "G", "A")])
    out = work / "tubb8.tsv"
    _vareff(["score", str(vcf), "-f", p["fasta"], "--spliceai-annotation", p["annotation"],
             "--spliceai-distance", "5", "-o", str(out)] + COMMON)
    return [out]


def grover_ckpt(work: Path) -> Path:
    from grover_fixtures import make_checkpoint

    d = work / "ckpt_grover"
    make_checkpoint(d, vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=40, seed=8, weight_std=0.12)
    return d


DIMS = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)


def nt_ckpts(work: Path) -> dict[str, Path]:
    import nt_fixtures as nf

    out = {"nt_v2": work / "ckpt_nt_v2", "nt_v1": work / "ckpt_nt_v1", "segment_nt": work / "ckpt_segment_nt"}
    nf.make_nt_v2(out["nt_v2"], seed=21, **DIMS)
    nf.make_nt_v1(out["nt_v1"], seed=22, **DIMS)
    nf.make_segment_nt(out["segment_nt"], seed=31, **DIMS)
    return out


def grover_brca1(work: Path, ckpts: dict) -> list[Path]:
    from engine_helpers import brca_paths

    p = brca_paths(SHARED)
    outs = [work / "grover.parquet", work / "grover.vcf"]
    _vareff(["score", str(_brca_vcf(work)), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(ckpts["grover"]),
             "--skip-malformed"] + sum((["-o", str(o)] for o in outs), []) + COMMON)
    return outs


def dnabert_brca1(work: Path) -> list[Path]:
    from dnabert_fixtures import make_checkpoint
    from engine_helpers import brca_paths

    make_checkpoint(work / "ckpt_dnabert", seed=4)
    p = brca_paths(SHARED)
    outs = [work / "dnabert.parquet", work / "dnabert.vcf"]
    _vareff(["score", str(_brca_vcf(work)), "-f", p["fasta"], "--contig-map", p["contig_map"],
             "-m", str(work / "ckpt_dnabert"), "--skip-malformed"] + sum((["-o", str(o)] for o in outs), []) + COMMON)
    return outs


def nt_segmentnt_brca1(work: Path, ckpts: dict) -> list[Path]:
    from engine_helpers import brca_paths

    p = brca_paths(SHARED)
    outs = [work / "nt_seg.parquet", work / "nt_seg.vcf"]
    _vareff(["score", str(_brca_vcf(work)), "-f", p["fasta"], "--contig-map", p["contig_map"],
             "-m", str(ckpts["segment_nt"]), "-m", str(ckpts["nt_v2"]), "--skip-malformed"]
            + sum((["-o", str(o)] for o in outs), []) + COMMON)
    return outs


def synthetic_genome(work: Path) -> tuple[Path, str]:
    """The random 6 kb contig of tests/test_nt_scores.py: an N block at 4000-4009, soft-masked 700-899."""
    import pysam

    import nt_fixtures as nf

    rng = random.Random(42)
    seq = list(nf.random_dna(6000, rng))
    for i in range(4000, 4010):
        seq[i] = "N"
    for i in range(700, 900):
        seq[i] = seq[i].lower()
    fa = work / "g.fa"
    s = "".join(seq)
    fa.write_text(">chrT\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    pysam.faidx(str(fa))
    return fa, s.upper()


def synthetic_vcf(work: Path, g: str) -> Path:
    from engine_helpers import write_vcf

    def other(c: str) -> str:
        return "G" if c != "G" else "A"

    recs = []
    for p0 in (3, 1000, 1001, 1003, 1200, 1201, 1210, 1300, 1310, 2210, 2990, 3990, 5996):  # SNVs (0-based)
        recs.append(("chrT", p0 + 1, ".", g[p0], other(g[p0])))
    recs.append(("chrT", 1101, ".", g[1100], ",".join(b for b in "ACGT" if b != g[1100])))  # multi-allelic
    recs.append(("chrT", 1501, ".", g[1500:1502], "".join("A" if c != "A" else "C" for c in g[1500:1502])))  # MNV
    recs.append(("chrT", 2000, ".", g[1999], g[1999] + "TTA"))  # insertion
    recs.append(("chrT", 2600, ".", g[2599], g[2599] + "CAT"))
    recs.append(("chrT", 2500, ".", g[2499:2504], g[2499]))  # deletion of 4
    recs.append(("chrT", 2201, ".", g[2199:2203], g[2199]))  # deletion of 3
    recs.append(("chrT", 3001, ".", g[3000:3003], "GA"))  # complex
    recs.append(("chrT", 801, ".", g[800], other(g[800])))  # soft-masked run
    recs.append(("chrT", 5990, ".", g[5989], g[5989] + "GG"))  # insertion near the contig end
    recs.append(("chrT", 4003, ".", g[4002], other(g[4002])))  # REF is N
    recs.sort(key=lambda r: r[1])
    return write_vcf(work / "synthetic.vcf", recs, contigs={"chrT": len(g)})


SYNTH_OPTS = {
    "grover": ["grover.window=600", "grover.stride=300", "grover.min_flank=60"],
    "nt": ["nt.window=600", "nt.stride=300", "nt.min_flank=60"],
    "segmentnt": ["segmentnt.window=480", "segmentnt.stride=192", "segmentnt.min_flank=48", "segmentnt.k=20"],
}


def synthetic(work: Path, name: str, model: Path, opts: list[str], extra: list[str] = ()) -> list[Path]:
    fa, g = synthetic_genome(work)
    vcf = synthetic_vcf(work, g)
    outs = [work / f"{name}.parquet", work / f"{name}.tsv", work / f"{name}.vcf"]
    args = ["score", str(vcf), "-f", str(fa), "-m", str(model), "--chunk-size", "3", "--batch-size", "4"]
    for o in opts:
        args += ["--model-option", o]
    _vareff(args + list(extra) + sum((["-o", str(o)] for o in outs), []) + COMMON)
    return outs


def host_no_model(work: Path) -> list[Path]:
    """The host path without a model (docs/host-path.md): records of every allele kind on the BRCA1
    slice with a malformed line of each kind (BGZF, --skip-malformed), and the ClinVar test VCF
    lookup-only; Parquet and TSV."""
    import pysam
    import vareff
    from engine_helpers import tubb8_paths
    from host_fixtures import CONTIG, EDITS, FASTA, HEADER, OFFSET, synthetic_records

    fasta = SHARED / FASTA
    lines = synthetic_records(pysam.FastaFile(str(fasta)).fetch(CONTIG).upper(), n=400)
    for i, (_, edit) in enumerate(sorted(EDITS.items())):
        lines[10 + 15 * i] = edit(lines[10 + 15 * i])
    vcf = work / "host.vcf.gz"
    with pysam.BGZFile(str(vcf), "wb") as fh:
        fh.write(("\n".join(HEADER + lines) + "\n").encode())
    outs = [work / "host.parquet", work / "host.tsv"]
    vareff.score_vcf(vcf, [str(o) for o in outs], fasta=str(fasta), models=[], contig_map=[f"chr17={CONTIG}+{OFFSET}"],
                     chunk_size=50, skip_malformed=True)
    clinvar = [work / "host_clinvar.parquet"]
    vareff.score_vcf(SHARED / "clinvar" / "clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz", str(clinvar[0]),
                     models=[], annotation=tubb8_paths(SHARED)["annotation"], chunk_size=7)
    return outs + clinvar


def run_all(work: Path, only: set[str] | None) -> dict[str, list[Path]]:
    ckpts: dict[str, Path] = {}
    runs = {}

    def want(name: str) -> bool:
        return not only or name in only or any(name.startswith(o) for o in only)

    if want("host_no_model"):
        runs["host_no_model"] = host_no_model(work)
    if want("demo"):
        runs["demo"] = demo(work)
    if want("spliceai_tubb8"):
        runs["spliceai_tubb8"] = spliceai_tubb8(work)
    if want("grover_brca1") or want("synthetic_grover"):
        ckpts["grover"] = grover_ckpt(work)
    if want("nt_segmentnt_brca1") or want("synthetic_nt") or want("synthetic_segmentnt"):
        ckpts.update(nt_ckpts(work))
    if want("grover_brca1"):
        runs["grover_brca1"] = grover_brca1(work, ckpts)
    if want("nt_segmentnt_brca1"):
        runs["nt_segmentnt_brca1"] = nt_segmentnt_brca1(work, ckpts)
    if want("dnabert_brca1"):
        runs["dnabert_brca1"] = dnabert_brca1(work)
    synth = [
        ("synthetic_grover_fp32", "grover", SYNTH_OPTS["grover"], []),
        ("synthetic_grover_bf16", "grover", SYNTH_OPTS["grover"], ["--dtype", "bfloat16"]),
        ("synthetic_grover_bf16delta", "grover", SYNTH_OPTS["grover"] + ["grover.precision=bf16-delta"],
         ["--dtype", "bfloat16"]),
        ("synthetic_nt_v2", "nt_v2", SYNTH_OPTS["nt"], []),
        ("synthetic_nt_v1", "nt_v1", SYNTH_OPTS["nt"], []),
        ("synthetic_segmentnt", "segment_nt",
         SYNTH_OPTS["segmentnt"] + [f"segmentnt.profiles={work / 'synthetic_segmentnt.profiles.parquet'}"], []),
    ]
    for name, ck, opts, extra in synth:
        if want(name):
            runs[name] = synthetic(work, name, ckpts[ck], opts, extra)
            if name == "synthetic_segmentnt":
                runs[name].append(work / "synthetic_segmentnt.profiles.parquet")
    return runs


def _text(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def compare(got: Path, want: Path) -> str | None:
    """None when identical, else what differs."""
    if not want.exists():
        return "not in the reference"
    if got.suffix == ".parquet":
        a, b = pq.read_table(got), pq.read_table(want)
        if not a.schema.equals(b.schema, check_metadata=True):
            return f"schema or metadata differ:\n  {a.schema.metadata}\n  {b.schema.metadata}"
        if not a.equals(b):
            for name in a.column_names:
                if not a[name].equals(b[name]):
                    return f"column {name} differs: {a[name].to_pylist()[:8]} vs {b[name].to_pylist()[:8]}"
            return "tables differ"
        if got.read_bytes() != want.read_bytes():
            return "tables equal, file bytes differ"
        return None
    ta, tb = _text(got), _text(want)
    if ta != tb:
        la, lb = ta.decode().splitlines(), tb.decode().splitlines()
        for i, (x, y) in enumerate(zip(la, lb)):
            if x != y:
                return f"line {i + 1} differs:\n  got  {x[:300]}\n  want {y[:300]}"
        return f"{len(la)} vs {len(lb)} lines"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path, metavar="DIR", help="store the outputs here (the reference)")
    g.add_argument("--compare", type=Path, metavar="DIR", help="compare the outputs with this reference")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vareff-identical-outputs.work"),
                    help="scratch folder, emptied first (a fixed path: paths are part of the file metadata)")
    ap.add_argument("--only", nargs="*", help="run only these scenarios (name prefixes)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"shared test data not found at {SHARED} (set VAREFF_SHARED_DATA)")
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    runs = run_all(args.work, set(args.only) if args.only else None)
    bad = 0
    for name, outs in runs.items():
        for out in outs:
            if args.save:
                dest = args.save / name / out.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, dest)
                print(f"saved    {name}/{out.name}")
            else:
                diff = compare(out, args.compare / name / out.name)
                bad += diff is not None
                print(f"{'same    ' if diff is None else 'DIFFERS '} {name}/{out.name}" + (f": {diff}" if diff else ""))
    if args.compare:
        print("identical" if not bad else f"{bad} output(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
