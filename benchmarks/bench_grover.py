"""GROVER backend benchmark: vareff vs the notebook loop a user would write with transformers.

Setup (all created here, nothing downloaded): a GROVER-shaped random ``BertForMaskedLM`` (12 layers,
hidden 768, 12 heads, FFN 3072, 512 positions) with a ~600-token BPE vocabulary trained by
``tokenizers`` on the GRCh38 BRCA1 slice, saved with ``save_pretrained``; SNVs drawn on that slice.

Runs, in one process, on the same SNVs and the same score definitions (docs/grover.md):

* ``loop3`` -- ``transformers.BertForMaskedLM``, fp32, one variant at a time: a forward of the 1 kb
  reference window with the variant's token masked (LLR), one of the unmasked reference window
  (reference embedding) and one of the alt window (alt embedding).  This is the loop that computes
  exactly vareff's scores.
* ``loop2`` -- the loop as the issue words it (masked reference + alt window, two forwards); its
  embedding side compares the alt window against the *masked* reference pass, so it is timed for
  reference only (its scores are not vareff's).
* ``vareff`` -- ``GroverScorer.score`` in each setting of ``MODES`` (``--modes``), on a sparse set (SNVs >= 5 kb apart: no
  window sharing, the same passes as loop3) and a dense set (about one SNV per 100 bp).

Also measured here: the fp32/bf16 matmul rates of this CPU at the shapes involved, the tokenizer's
host throughput, and bf16-vs-fp32 score agreement.  Usage::

    python benchmarks/bench_grover.py --threads 2 --sparse 100 --dense 200 --loop-dense 40 --loop2 30 --out grover.json

Tiny smoke run (checks the script, figures meaningless)::

    python benchmarks/bench_grover.py --tiny --sparse 4 --dense 4 --loop-dense 2 --loop2 2 --rounds 1

Where the time goes (``--profile``: per-part breakdown of one scoring call per setting on a few
sparse SNVs) and which matmuls cause bfloat16's LLR error (``--attribute``: selective bfloat16
policies vs float32, accuracy and speed); either replaces the timing run (benchmarks/grover_profile.py)::

    python benchmarks/bench_grover.py --profile fp32,bf16,mixed --profile-snvs 8
    python benchmarks/bench_grover.py --attribute --sparse 48 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
FASTA = SHARED / "grch38/brca1_region/chr17_42425000_43600000.fwd.fa"
CONTIG, OFFSET0 = "chr17_42425000_43600000", 42_424_999


# --------------------------------------------------------------------------- setup


def build_checkpoint(directory: Path, seed: int = 0, tiny: bool = False) -> None:
    """GROVER-shaped random BertForMaskedLM + ~600-token BPE trained on the BRCA1 slice."""
    import pysam
    from tokenizers import Tokenizer, models, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    fa = pysam.FastaFile(str(FASTA))
    seq = fa.fetch(CONTIG).upper()
    chunks = [seq[i:i + 10_000] for i in range(0, len(seq), 10_000)]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(chunks, trainers.BpeTrainer(vocab_size=609, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=512).save_pretrained(directory)
    C, L, I = (64, 2, 128) if tiny else (768, 12, 3072)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=C, num_hidden_layers=L, num_attention_heads=4 if tiny else 12,
                     intermediate_size=I, max_position_embeddings=512, pad_token_id=tok.token_to_id("[PAD]"))
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # random, non-zero everywhere; word embeddings wider so the MLM is peaky
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "word_embeddings" in name:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.03 * torch.randn(p.shape, generator=g))
    model.save_pretrained(directory)


def snvs(genome, n: int, *, start1: int, step: int | None = None, span: int | None = None, seed: int = 0):
    """``n`` SNVs (chrom, pos1, ref, alt): every ``step`` bp from ``start1``, or at random in ``span`` bp."""
    rng = random.Random(seed)
    if step is not None:
        pos = [start1 + i * step for i in range(n)]
    else:
        pos = sorted(rng.sample(range(start1, start1 + span), n))
    out = []
    for p in pos:
        r = genome.fetch("chr17", p - 1, p)
        out.append(("chr17", p, r, rng.choice([b for b in "ACGT" if b != r])))
    return out


def batch_of(rows):
    from vareff.score.base import AlleleBatch

    n = len(rows)
    pos = np.array([r[1] for r in rows], dtype=np.int64)
    return AlleleBatch(chrom=[r[0] for r in rows], pos1=pos, ref=[r[2] for r in rows], alt=[r[3] for r in rows],
                       norm_pos1=pos, norm_ref=[r[2] for r in rows], norm_alt=[r[3] for r in rows],
                       variant_type=["snv"] * n, status=["ok"] * n)


def flops(cfg, T: int) -> float:
    """Matmul FLOPs of one encoder forward over T tokens (projections + attention)."""
    C, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return L * (2 * T * (4 * C * C + 2 * C * I) + 4 * T * T * C)


def matmul_rate(dtype, M: int, K: int = 768, N: int = 3072, seconds: float = 1.5) -> float:
    a, w = torch.randn(M, K, dtype=dtype), torch.randn(N, K, dtype=dtype)
    for _ in range(3):
        torch.nn.functional.linear(a, w)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.nn.functional.linear(a, w)
        n += 1
    return 2 * M * K * N * n / (time.perf_counter() - t0) / 1e9


# --------------------------------------------------------------------------- the notebook loop


class NotebookLoop:
    """One variant at a time with transformers.BertForMaskedLM in fp32 (same definitions as vareff)."""

    def __init__(self, ckpt: Path, genome, opts):
        from transformers import AutoTokenizer, BertForMaskedLM

        self.tok = AutoTokenizer.from_pretrained(ckpt)
        self.model = BertForMaskedLM.from_pretrained(ckpt).eval()
        self.genome, self.opts = genome, opts
        special = set(self.tok.all_special_ids)
        vocab = self.tok.get_vocab()
        lmax = max(len(t) for t in vocab)
        self.ind = torch.zeros(len(vocab), lmax, 4, dtype=torch.float64)
        for t, i in vocab.items():
            if i not in special:
                for o, c in enumerate(t):
                    self.ind[i, o, "ACGT".index(c)] = 1
        self.special = torch.tensor(sorted(special))
        self.flops = 0.0

    @torch.no_grad()
    def _fwd(self, ids):
        x = torch.tensor([ids])
        self.flops += flops(self.model.config, x.shape[1])
        return self.model(input_ids=x, output_hidden_states=True)

    def score(self, chrom, pos1, ref, alt, passes: int = 3):
        from vareff.score.grover import window_for

        pos0 = pos1 - 1
        ws, we = window_for(pos0, 1, self.opts)
        wseq = self.genome.fetch(chrom, ws, we)
        s = pos0 - ws
        aseq = wseq[:s] + alt + wseq[s + 1:]
        enc = self.tok(wseq, return_offsets_mapping=True)
        ids, offs = enc["input_ids"], enc["offset_mapping"]
        k = next(i for i, (a, b) in enumerate(offs) if a <= s < b and b > a)
        masked = list(ids)
        masked[k] = self.tok.mask_token_id
        out_m = self._fwd(masked)
        p = torch.softmax(out_m.logits[0, k].double(), -1)
        q = torch.einsum("v,vc->c", p, self.ind[:, s - offs[k][0]])
        qa, qr = q["ACGT".index(alt)].item(), q["ACGT".index(ref)].item()
        # no token carries the base at that offset: vareff falls back to the token-level LLR;
        # the loop leaves it out of the comparison (NaN)
        llr = math.log(qa) - math.log(qr) if qa > 0 and qr > 0 else float("nan")

        def mean_emb(out, ids_):
            keep = ~torch.isin(torch.tensor(ids_), self.special)
            return out.hidden_states[-1][0][keep].double().mean(0)

        e_ref = mean_emb(self._fwd(ids) if passes == 3 else out_m, ids)
        aids = self.tok(aseq)["input_ids"]
        e_alt = mean_emb(self._fwd(aids), aids)
        cos = torch.nn.functional.cosine_similarity(e_ref, e_alt, dim=0).item()
        return llr, 1 - cos, (e_ref - e_alt).norm().item()


# --------------------------------------------------------------------------- main


#: vareff settings: name -> (dtype, options).  ``default`` is what ``vareff score`` runs without
#: --dtype (``mixed`` on a CPU with bf16 units); ``wt-marginal`` is the opt-in LLR definition, whose
#: |dLLR| against the loop's masked LLR is a difference of definitions, not a rounding error.
MODES = (("fp32", "float32", None), ("default", None, None), ("mixed", "mixed", None),
         ("bf16", "bfloat16", {"precision": "bf16"}),
         ("wt-marginal", None, {"llr": "wt-marginal"}), ("bf16-delta", "bfloat16", {"precision": "bf16-delta"}))


def diagnose(args, ckpt, genome, sparse, modes_by_name) -> dict:
    """``--profile`` and ``--attribute`` (benchmarks/grover_profile.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import grover_profile as gp
    from vareff.models.bert_precision import POLICIES
    from vareff.score.grover import make_scorer

    out: dict = {}
    if args.profile:
        out["profile"] = []
        rows = sparse[: args.profile_snvs]
        for name in args.profile.split(","):
            if name not in modes_by_name:
                sys.exit(f"bench_grover: --profile setting {name!r} is not one of {sorted(modes_by_name)}")
            _, dt, o = modes_by_name[name]
            sc = make_scorer(ckpt, device="cpu", dtype=dt, batch_size=args.batch_size, options=o)
            sc.score(batch_of(rows[:3]), genome)  # warm-up
            out["profile"].append(gp.profile_setting(sc, batch_of(rows), genome, label=f"{name} ({sc.precision})"))
            del sc
    if args.attribute:
        policies = args.policies.split(",") if args.policies else ["mixed", *POLICIES]
        unknown = [p for p in policies if p not in POLICIES and p not in ("mixed", "fp32")]
        if unknown:
            sys.exit(f"bench_grover: unknown --policies {unknown}; known: mixed, {', '.join(POLICIES)}")
        out["attribution"] = gp.attribute(ckpt, genome, sparse, batch_of, policies=policies,
                                          rounds=max(1, args.rounds), batch_size=args.batch_size)
    return out


class Clock:
    """Accumulated wall and process-CPU seconds (the CPU is shared: CPU time is the steadier work measure)."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse", type=int, default=120, help="SNVs >= 5 kb apart (no sharing)")
    ap.add_argument("--dense", type=int, default=240, help="SNVs at ~1 per 100 bp")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (loop and vareff alternate)")
    ap.add_argument("--loop-dense", type=int, default=60, help="dense SNVs also run through loop3 (accuracy)")
    ap.add_argument("--loop2", type=int, default=40, help="variants timed with the two-pass loop")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--modes", default="fp32,default,bf16,wt-marginal", help=f"vareff settings to run, of {[m[0] for m in MODES]}")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, hidden-64 model (smoke test of the script only)")
    ap.add_argument("--ckpt", type=Path, default=None, help="reuse a checkpoint directory built earlier")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--profile", default=None, metavar="SETTINGS",
                    help="instead of the timing run: profile one scoring call per setting (of fp32, default, mixed, bf16)")
    ap.add_argument("--profile-snvs", type=int, default=8, help="sparse SNVs in each profiled call")
    ap.add_argument("--attribute", action="store_true",
                    help="instead of the timing run: bf16 error attribution over --sparse SNVs in --rounds rounds")
    ap.add_argument("--policies", default=None,
                    help="policies for --attribute (vareff/models/bert_precision.py POLICIES, and mixed); default all")
    args = ap.parse_args(argv)
    modes = [m for m in MODES if m[0] in args.modes.split(",")]
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from vareff.encode.bpe import BpeTokenizer
    from vareff.score.grover import GroverOptions, make_scorer
    from vareff.window.genome import ContigSlice, Genome

    tmp = tempfile.TemporaryDirectory()
    ckpt = args.ckpt or Path(tmp.name) / "grover_shaped"
    if not (ckpt / "config.json").is_file():
        t0 = time.perf_counter()
        build_checkpoint(ckpt, tiny=args.tiny)
        print(f"built checkpoint in {time.perf_counter() - t0:.0f} s", flush=True)
    genome = Genome(FASTA, [ContigSlice("chr17", CONTIG, OFFSET0)])
    opts = GroverOptions()
    R: dict = {"threads": args.threads, "window": opts.window, "stride": opts.stride, "batch_size": args.batch_size}

    sparse = snvs(genome, args.sparse, start1=42_430_000, step=(43_590_000 - 42_430_000) // args.sparse, seed=1)
    dense = snvs(genome, args.dense, start1=43_044_000, span=args.dense * 100, seed=2)
    R["n_sparse"], R["n_dense"] = len(sparse), len(dense)
    if args.profile or args.attribute:
        R.update(diagnose(args, ckpt, genome, sparse, modes_by_name={m[0]: m for m in MODES}))
        if args.out:
            args.out.write_text(json.dumps(R, indent=1, default=str))
        return R

    # tokenizer host throughput on 1 kb windows inside the slice
    tok = BpeTokenizer(ckpt)
    wins = [genome.fetch("chr17", 42_500_000 + i * 500, 42_500_000 + i * 500 + 1000) for i in range(2000)]
    with Clock() as c:
        encs = tok.encode(wins)
    R["tokenizer_windows_per_s"] = len(wins) / c.wall
    R["tokens_per_1kb_window"] = float(np.mean([len(e) for e in encs]))
    print(f"tokenizer: {R['tokenizer_windows_per_s']:.0f} windows/s; {R['tokens_per_1kb_window']:.1f} tokens per 1 kb window",
          flush=True)

    loop = NotebookLoop(ckpt, genome, opts)
    scorers = {name: make_scorer(ckpt, device="cpu", dtype=dt, batch_size=args.batch_size, options=o)
               for name, dt, o in modes}
    R["precision"] = {name: sc.precision for name, sc in scorers.items()}
    for sc in scorers.values():  # warm-up (allocator, oneDNN kernels)
        sc.score(batch_of(sparse[:3]), genome)
    loop.score(*sparse[0])
    loop.score(*sparse[0], passes=2)

    keys = [f"{m}_{s}" for m, _, _ in modes for s in ("sparse", "dense")]
    clocks = {k: Clock() for k in ["loop3", "loop3_dense", "loop2"] + keys}
    ref_sparse, ref_dense, loop_flops = [], [], 0.0
    got = {k: [] for k in keys}
    stats = {k: {"passes": 0, "tokens": 0, "padded_tokens": 0} for k in keys}
    rates = {"fp32": [], "bf16": []}

    def split(xs, n):
        return [xs[i * len(xs) // n:(i + 1) * len(xs) // n] for i in range(n)]

    rounds = zip(split(sparse, args.rounds), split(dense, args.rounds), split(dense[: args.loop_dense], args.rounds),
                 split(sparse[: args.loop2], args.rounds))
    for rd, (sp, de, ld, l2) in enumerate(rounds):
        rates["fp32"].append(matmul_rate(torch.float32, 3520, seconds=0.5))
        rates["bf16"].append(matmul_rate(torch.bfloat16, 3520, seconds=0.5))
        loop.flops = 0.0
        with clocks["loop3"]:
            ref_sparse += [loop.score(*r) for r in sp]
        loop_flops += loop.flops
        with clocks["loop2"]:
            for r in l2:
                loop.score(*r, passes=2)
        with clocks["loop3_dense"]:
            ref_dense += [loop.score(*r) for r in ld]
        for m, _, _ in modes:
            for name, rows in (("sparse", sp), ("dense", de)):
                sc = scorers[m]
                sc.stats.update(passes=0, tokens=0, padded_tokens=0)
                with clocks[f"{m}_{name}"]:
                    res = sc.score(batch_of(rows), genome)
                for k in stats[f"{m}_{name}"]:
                    stats[f"{m}_{name}"][k] += sc.stats[k]
                got[f"{m}_{name}"].append(np.array([res.columns[c].to_pylist() for c in
                                                    ("grover_llr", "grover_embedding_distance", "grover_embedding_l2")],
                                                   dtype=float).T)
        print(f"round {rd + 1}/{args.rounds} done", flush=True)

    R["gflops_fp32_M3520"] = float(np.median(rates["fp32"]))
    R["gflops_bf16_M3520"] = float(np.median(rates["bf16"]))
    R["gflops_fp32_M220"] = matmul_rate(torch.float32, 220)
    R["gflops_bf16_M220"] = matmul_rate(torch.bfloat16, 220)
    flops_per_variant = loop_flops / len(sparse)
    R["loop3_flops_per_variant"] = flops_per_variant
    for key, n in (("loop3", len(sparse)), ("loop3_dense", args.loop_dense), ("loop2", args.loop2)):
        R[f"{key}_variants_per_s"] = n / clocks[key].wall
        R[f"{key}_variants_per_cpu_s"] = n / clocks[key].cpu
    R["loop3_gflops"] = flops_per_variant * R["loop3_variants_per_s"] / 1e9
    R["loop3_fraction_of_fp32_rate"] = R["loop3_gflops"] / R["gflops_fp32_M3520"]
    ref_sparse, ref_dense = np.array(ref_sparse), np.array(ref_dense)
    R["llr_std"] = float(np.std(ref_sparse[:, 0]))
    R["emb_distance_median"] = float(np.median(ref_sparse[:, 1]))
    print({k: round(v, 2) for k, v in R.items() if isinstance(v, float)}, flush=True)
    for m, _, _ in modes:
        for name, rows, ref in (("sparse", sparse, ref_sparse), ("dense", dense, ref_dense)):
            key = f"{m}_{name}"
            c, st = clocks[key], stats[key]
            cols = np.concatenate(got[key])
            loop_key = "loop3" if name == "sparse" else "loop3_dense"
            R[key + "_variants_per_s"] = len(rows) / c.wall
            R[key + "_variants_per_cpu_s"] = len(rows) / c.cpu
            R[key + "_speedup_vs_loop3"] = R[key + "_variants_per_s"] / R[loop_key + "_variants_per_s"]
            R[key + "_speedup_vs_loop3_cpu"] = R[key + "_variants_per_cpu_s"] / R[loop_key + "_variants_per_cpu_s"]
            R[key + "_speedup_vs_loop2"] = R[key + "_variants_per_s"] / R["loop2_variants_per_s"]
            R[key + "_passes_per_variant"] = st["passes"] / len(rows)
            R[key + "_padding_fraction"] = 1 - st["tokens"] / st["padded_tokens"]
            R[key + "_gflops_loop_equivalent"] = flops_per_variant * R[key + "_variants_per_s"] / 1e9
            R[key + "_fraction_of_bf16_rate"] = R[key + "_gflops_loop_equivalent"] / R["gflops_bf16_M3520"]
            n = len(ref)
            d = np.abs(cols[:n] - ref)
            R[key + "_max_abs_dllr"] = float(np.nanmax(d[:, 0]))
            R[key + "_max_rel_demb"] = float(np.nanmax(d[:, 1] / np.abs(ref[:, 1])))
            R[key + "_max_rel_dl2"] = float(np.nanmax(d[:, 2] / np.abs(ref[:, 2])))
            R[key + "_llr_null"] = int(np.isnan(cols[:, 0]).sum())
            ok = ~np.isnan(ref[:, 0]) & ~np.isnan(cols[:n, 0])
            R[key + "_llr_corr"] = float(np.corrcoef(cols[:n][ok, 0], ref[ok, 0])[0, 1]) if ok.sum() > 1 else float("nan")
            R[key + "_median_rel_demb"] = float(np.nanmedian(d[:, 1] / np.abs(ref[:, 1])))
            print(f"{key}: {R[key + '_variants_per_s']:.2f} variants/s = {R[key + '_speedup_vs_loop3']:.2f}x loop3 "
                  f"(CPU-time {R[key + '_speedup_vs_loop3_cpu']:.2f}x), {R[key + '_speedup_vs_loop2']:.2f}x loop2; "
                  f"{R[key + '_passes_per_variant']:.2f} passes/variant, padding {R[key + '_padding_fraction']:.1%}, "
                  f"{R[key + '_fraction_of_bf16_rate']:.0%} of bf16 rate; max|dLLR| {R[key + '_max_abs_dllr']:.1e}, "
                  f"max rel d(emb) {R[key + '_max_rel_demb']:.1e} (median {R[key + '_median_rel_demb']:.1e}), "
                  f"LLR corr {R[key + '_llr_corr']:.4f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(R, indent=1))
    return R


if __name__ == "__main__":
    main()
