"""SegmentNT throughput on this machine: alleles/s, model FLOP/s against the measured matmul rate,
and the saving from sharing one reference pass between nearby alleles.

A SegmentNT-shaped random model (published shapes: NT-v2-500m trunk, hidden 1024, 29 layers,
16 heads, SwiGLU 4096, 2-level U-Net head, 14 features, rescaling factor 2.44140625) scores real
SNVs of the GRCh38 BRCA1 slice (shared test data) at the 30 kb input:

* ``shared``: the alleles lie within a few hundred nt, so the 12 kb window grid gives them one
  reference window: 1 reference pass + 1 alt pass per allele;
* ``unshared``: the same alleles with ``stride=6`` (every allele its own window), i.e. one
  reference pass per allele, as a scorer without reuse would do.

The bf16 (and fp32) matrix-multiply rate is measured in the same run (4096^3 GEMMs).  After the
timed forward, one more forward runs under ``torch.profiler`` for the per-part breakdown (trunk ops
by kind: attention = SDPA, projections/MLP = the matmuls, element-wise = everything else; the head
timed on its own), each part's share of the profiled pass and its FLOP rate.  Run once:

    python benchmarks/bench_segment_nt.py [--layers 29] [--window 30000] [--alleles 4] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VAREFF_SHARED_DATA", REPO.parent / "shared" / "data"))
BRCA_CONTIG, BRCA_OFFSET0 = "chr17_42425000_43600000", 42_424_999


def matmul_rate(dtype: torch.dtype, n: int = 4096, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def build_model(layers: int, dtype: torch.dtype):
    from vareff.encode.kmer import KmerTokenizer, published_vocab
    from vareff.models.esm_trunk import EsmConfig
    from vareff.models.segment_nt import PUBLISHED_FEATURES, SegmentNT, SegmentNTConfig, SegmentNTModel

    bb = EsmConfig(vocab_size=4107, hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
                   intermediate_size=4096, max_position_embeddings=2050, position_embedding_type="rotary",
                   gated_ffn=True, ffn_bias=False, tie_word_embeddings=False, rescaling_factor=2.44140625)
    cfg = SegmentNTConfig(backbone=bb, features=PUBLISHED_FEATURES, num_layers_head=2)
    torch.manual_seed(0)
    module = SegmentNT(cfg).eval().requires_grad_(False)
    module.set_compute_dtype(dtype)
    model = SegmentNTModel(name="segment_nt-shaped random", family="segment_nt", path=Path("."), config=cfg,
                           module=module, tokenizer=KmerTokenizer(published_vocab("v2")), device=torch.device("cpu"),
                           dtype=dtype, features=cfg.features)
    model._checksum = "sha256:random"
    return model


def model_flops(model, n_nt: int) -> float:
    from vareff.models.esm_trunk import flops_per_token

    cfg = model.config
    T = n_nt // 6 + 1
    trunk = flops_per_token(cfg.backbone, T) * T
    head = model.module.head.unet.flops(T - 1) + 2 * (T - 1) * cfg.unet().out_channels * 6 * cfg.num_features * 2
    return trunk + head


def breakdown(model, ids) -> dict[str, tuple[float, float]]:
    """{part: (seconds, FLOPs)} of one forward: trunk ops under torch.profiler by kind, head timed alone."""
    from torch.profiler import ProfilerActivity, profile

    m, cfg = model.module, model.config
    bb = cfg.backbone
    T, C, I, L = ids.shape[1], bb.hidden_size, bb.intermediate_size, bb.num_hidden_layers
    with torch.inference_mode():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            hidden = m.encode(ids)
        t = time.perf_counter()
        m.head(hidden)
        t_head = time.perf_counter() - t
    parts = {"attention": 0.0, "projections/MLP": 0.0, "element-wise": 0.0}
    for ev in prof.key_averages():
        name = ev.key
        us = ev.self_cpu_time_total
        if "scaled_dot_product" in name or "flash_attention" in name:
            parts["attention"] += us
        elif name in ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn::_linear_pointwise"):
            parts["projections/MLP"] += us
        else:
            parts["element-wise"] += us
    ffn = 3 * C * I if bb.gated_ffn else 2 * C * I
    flops = {"attention": 4 * T * T * C * L, "projections/MLP": 2 * T * (4 * C * C + ffn) * L, "element-wise": 0.0}
    out = {k: (v / 1e6, flops[k]) for k, v in parts.items()}
    head_flops = m.head.unet.flops(T - 1) + 2 * (T - 1) * cfg.unet().out_channels * cfg.kmer * cfg.num_features * 2
    out["head (U-Net + fc)"] = (t_head, head_flops)
    return out


def snv_batch(positions_1based: list[int], genome):
    from vareff.score.base import AlleleBatch

    rows = []
    for p in positions_1based:
        ref = genome.fetch("chr17", p - 1, p)
        rows.append((p, ref, "A" if ref != "A" else "G"))
    n = len(rows)
    return AlleleBatch(chrom=["chr17"] * n, pos1=np.array([r[0] for r in rows]), ref=[r[1] for r in rows],
                       alt=[r[2] for r in rows], norm_pos1=np.array([r[0] for r in rows]), norm_ref=[r[1] for r in rows],
                       norm_alt=[r[2] for r in rows], variant_type=["snv"] * n, status=["ok"] * n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=29)
    ap.add_argument("--window", type=int, default=30000)
    ap.add_argument("--alleles", type=int, default=4)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-unshared", action="store_true")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the profiled per-part pass")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    from vareff.score.segment_nt import SegmentNTOptions, SegmentNTScorer
    from vareff.window.genome import ContigSlice, Genome

    fasta = SHARED / "grch38" / "brca1_region" / "chr17_42425000_43600000.fwd.fa"
    if not fasta.exists():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    genome = Genome(fasta, [ContigSlice("chr17", BRCA_CONTIG, BRCA_OFFSET0)])

    bf16, fp32 = matmul_rate(torch.bfloat16), matmul_rate(torch.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul 4096^3: "
          f"bf16 {bf16 / 1e12:.3f} TFLOP/s, fp32 {fp32 / 1e12:.3f} TFLOP/s")

    t = time.perf_counter()
    model = build_model(args.layers, dtype)
    print(f"model: {args.layers} layers, hidden 1024, {sum(p.numel() for p in model.module.parameters()) / 1e6:.0f} M params, "
          f"{args.dtype} matmuls; built in {time.perf_counter() - t:.1f} s")

    # tokenizer speed at the window
    rng = random.Random(0)
    seq = "".join(rng.choice("ACGT") for _ in range(args.window))
    t = time.perf_counter()
    for _ in range(20):
        model.tokenizer.encode_one(seq)
    tok_us = (time.perf_counter() - t) / 20 * 1e6

    # one forward at the window (after a short warm-up)
    with torch.inference_mode():
        ids, _ = model.tokenizer([seq[:2400]])
        model.module(ids)
        ids, _ = model.tokenizer([seq])
        t = time.perf_counter()
        model.module(ids)
        t_pass = time.perf_counter() - t
    flops = model_flops(model, args.window)
    rate = flops / t_pass
    ref_rate = bf16 if dtype == torch.bfloat16 else fp32
    print(f"one {args.window} nt pass ({args.window // 6 + 1} tokens): {t_pass:.2f} s, {flops / 1e12:.2f} TFLOP, "
          f"{rate / 1e12:.3f} TFLOP/s = {100 * rate / ref_rate:.0f}% of the {args.dtype} matmul rate; "
          f"tokenizing the window: {tok_us:.0f} us")
    if not args.no_breakdown:
        parts = breakdown(model, ids)
        total = sum(sec for sec, _ in parts.values())
        print(f"per part (one profiled {args.window} nt pass, {total:.2f} s; FLOP rates vs the {args.dtype} matmul rate):")
        for name, (sec, fl) in parts.items():
            rate = f"{fl / sec / 1e12:.3f} TFLOP/s = {100 * fl / sec / ref_rate:.0f}%" if fl and sec else "memory-bound"
            print(f"  {name:18s} {sec:7.2f} s  {100 * sec / total:4.0f}%   {rate}")

    centre = 43_094_500  # BRCA1 exon region (GRCh38)
    positions = [centre + 37 * i for i in range(args.alleles)]
    batch = snv_batch(positions, genome)
    results = {}
    for label, extra in (("shared", {}), ("unshared", {"stride": 6})):
        if label == "unshared" and args.skip_unshared:
            continue
        opts = SegmentNTOptions(window=args.window, **extra)
        sc = SegmentNTScorer(model, batch_size=1, options=opts)
        t = time.perf_counter()
        res = sc.score(batch, genome)
        el = time.perf_counter() - t
        assert all(s is None for s in res.status), res.status
        results[label] = (el, sc.stats["ref_passes"], sc.stats["alt_passes"])
        print(f"{label:9s}: {args.alleles} alleles in {el:.1f} s = {args.alleles / el:.4f} alleles/s; "
              f"{sc.stats['ref_passes']} reference + {sc.stats['alt_passes']} alt passes")
    if "unshared" in results:
        (a, ra, aa), (b, rb, ab) = results["shared"], results["unshared"]
        print(f"saving from the shared reference pass: {ra + aa} vs {rb + ab} passes, {a:.1f} vs {b:.1f} s "
              f"({100 * (1 - a / b):.0f}% less time, x{b / a:.2f} alleles/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
