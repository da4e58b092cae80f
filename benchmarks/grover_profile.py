"""Where GROVER's time goes, and which matmuls cause bfloat16's LLR error (``bench_grover.py --profile / --attribute``).

*Profile* (:func:`profile_setting`): one ``GroverScorer.score`` call on a few SNVs under
``torch.profiler``.  The model marks its parts with ``record_function`` ranges (``grover.gemm.qkv``,
``grover.gemm.attn_out``, ``grover.gemm.fc1``, ``grover.gemm.fc2``, ``grover.gemm.head``,
``grover.attention``, ``grover.eltwise``, ``grover.embed``: vareff/models/bert.py, active only while
a profiler records); the host steps are wrapped here in ``host.*`` ranges.  Each range's time
without its nested ranges is one row, as % of the call's wall time; what no range covers is Python
bookkeeping.  Inside each GEMM range the matmul op itself (outermost ``aten::linear``/``addmm``/
``mm``) is separated from the casts and splits around it, and its FLOPs come from the recorded
shapes: *model* GFLOP/s count ``2·M·K·N`` at the model's K, *kernel* GFLOP/s the K actually run
(2x/3x for the ``mixed`` split weights).  Each is compared with a plain ``F.linear`` at the same
(M, K, N) and dtype timed in the same run.  Indicative only (profiler overhead, shared CPU).

*Attribution* (:func:`attribute`): one float32 scorer; its weights are restored and a
:mod:`vareff.models.bert_precision` policy applied before each setting; every setting scores the
same SNVs in interleaved rounds.  Per policy: max / p99 |dLLR| and max relative d(cosine
distance) vs float32, and the speed ratio to float32 (sum of wall times over the rounds).
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.profiler import record_function

#: host steps of a GroverScorer.score call, wrapped in ranges: method -> label
HOST_STEPS = {
    "sites": "host: windows (fetch, REF/N checks, alt windows)",
    "encode": "host: tokenize (BPE encode_batch)",
    "plan_site": "host: plan passes (covering tokens)",
    "batch_arrays": "host: batch arrays (padding, masks)",
    "read_out": "host: read-out (log-softmax, means)",
    "read_site": "host: per-site LLR and distances",
    "result": "host: columns",
}
MODEL_LABELS = {
    "grover.gemm.qkv": "GEMM QKV",
    "grover.gemm.attn_out": "GEMM attention output",
    "grover.gemm.fc1": "GEMM FFN up",
    "grover.gemm.fc2": "GEMM FFN down",
    "grover.gemm.head": "MLM head (masked rows)",
    "grover.attention": "attention (SDPA: scores, softmax, context)",
    "grover.eltwise": "LayerNorm, GELU, residual adds, casts",
    "grover.embed": "embeddings + LayerNorm",
}
_MATMUL = {"aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "aten::bmm"}


def _wrap(obj, method: str, name: str) -> None:
    fn = getattr(obj, method)

    def wrapped(*a, **k):
        with record_function(name):
            return fn(*a, **k)

    setattr(obj, method, wrapped)  # instance attribute: shadows the method for this object only


def _unwrap(obj) -> None:
    for m in HOST_STEPS:
        obj.__dict__.pop(m, None)


def _exclusive(spans: list) -> dict:
    """Per named span (start, end, name) on one thread: its time minus that of named spans nested in it."""
    spans = sorted(spans, key=lambda s: (s[0], -s[1]))
    excl, stack = defaultdict(float), []
    for st, en, name in spans:
        while stack and stack[-1][1] <= st:
            stack.pop()
        if stack:
            excl[stack[-1][2]] -= en - st
        excl[name] += en - st
        stack.append((st, en, name))
    return excl


def _linear_shape(ev) -> tuple[int, int, int] | None:
    """(M, K, N) of a matmul op from its recorded input shapes."""
    sh = [s for s in ev.input_shapes if s]
    try:
        if ev.name == "aten::linear":
            x, w = sh[0], sh[1]
            return int(np.prod(x[:-1])), x[-1], w[0]
        if ev.name == "aten::addmm":
            return sh[1][0], sh[1][1], sh[2][1]
        if ev.name in ("aten::mm", "aten::matmul"):
            return int(np.prod(sh[0][:-1])), sh[0][-1], sh[1][-1]
        if ev.name == "aten::bmm":
            return sh[0][0] * sh[0][1], sh[0][2], sh[1][2]
    except (IndexError, TypeError):
        return None
    return None


def rate_at(dtype, M: int, K: int, N: int, seconds: float = 0.3) -> float:
    """GFLOP/s of a plain F.linear (M, K) x (N, K) in ``dtype``."""
    a, w = torch.randn(M, K).to(dtype), torch.randn(N, K).to(dtype)
    for _ in range(2):
        F.linear(a, w)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        F.linear(a, w)
        n += 1
    return 2 * M * K * N * n / (time.perf_counter() - t0) / 1e9


def _group_module(module, group: str):
    if group == "head":
        return module.head_dense
    return getattr(module.layers[0], group)


def _kernel_dtype(lin) -> torch.dtype:
    w2 = lin.__dict__.get("weight_split")
    return (w2 if w2 is not None else lin.weight).dtype


def profile_setting(scorer, batch, genome, *, label: str) -> dict:
    """Breakdown of one ``scorer.score(batch, genome)`` call (printed and returned)."""
    from torch.profiler import ProfilerActivity, profile

    module, cfg = scorer.model.module, scorer.model.config
    for m, lab in HOST_STEPS.items():
        _wrap(scorer, m, "host." + m)
    scorer.stats.update(passes=0, tokens=0, padded_tokens=0)
    try:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            t0 = time.perf_counter()
            with record_function("host.score"):
                scorer.score(batch, genome)
            wall = time.perf_counter() - t0
    finally:
        _unwrap(scorer)
    events = [e for e in prof.events() if e.time_range.end > e.time_range.start]
    top = next(e for e in events if e.name == "host.score")
    main_events = [e for e in events if e.thread == top.thread]
    named = [(e.time_range.start, e.time_range.end, e.name) for e in main_events
             if e.name.startswith(("grover.", "host."))]
    excl = _exclusive(named)
    ranges = defaultdict(list)
    for st, en, name in named:
        ranges[name].append((st, en))
    mm = [e for e in main_events if e.name in _MATMUL]
    sdpa = [e for e in main_events if "scaled_dot_product" in e.name or e.name.startswith("aten::_scaled_dot")]

    def inside(ev, spans):
        return any(st <= ev.time_range.start and ev.time_range.end <= en for st, en in spans)

    def outermost(evs):
        return [e for e in evs if not any(o is not e and o.time_range.start <= e.time_range.start
                                          and e.time_range.end <= o.time_range.end for o in evs)]

    total_us = excl.pop("host.score", 0.0)  # the un-ranged remainder of the call: Python bookkeeping
    rows, R = [], {"setting": label, "wall_s": wall, "passes": scorer.stats["passes"],
                   "tokens": scorer.stats["padded_tokens"], "parts": {}}
    K_model = {"qkv": cfg.hidden_size, "attn_out": cfg.hidden_size, "fc1": cfg.hidden_size,
               "fc2": cfg.intermediate_size, "head": cfg.hidden_size}
    for name, lab in MODEL_LABELS.items():
        if name not in excl:
            continue
        t = excl[name] / 1e6
        part = {"s": t, "pct": t / wall}
        if name.startswith("grover.gemm."):
            g = name.rsplit(".", 1)[1]
            ops = outermost([e for e in mm if inside(e, ranges[name])])
            t_mm = sum(e.time_range.elapsed_us() for e in ops) / 1e6
            shapes = [s for s in (_linear_shape(e) for e in ops) if s]
            kern = sum(2 * m * k * n for m, k, n in shapes)
            model = sum(2 * m * n * (K_model[g] if k >= K_model[g] else k) for m, k, n in shapes)
            part.update(matmul_s=t_mm, other_s=t - t_mm, model_gflops=model / max(t_mm, 1e-9) / 1e9,
                        kernel_gflops=kern / max(t_mm, 1e-9) / 1e9)
            if shapes:
                M = int(statistics.median(s[0] for s in shapes))
                big = max(shapes, key=lambda s: s[1] * s[2])
                dt = _kernel_dtype(_group_module(module, g))
                part["rate_at_shape"] = rate_at(dt, max(M, 1), big[1], big[2])
                part["shape"] = (M, big[1], big[2], str(dt).replace("torch.", ""))
        elif name == "grover.attention":
            ops = [e for e in sdpa if inside(e, ranges[name])]
            fl = 0
            for e in outermost(ops):
                q = e.input_shapes[0] if e.input_shapes else None
                if q and len(q) == 4:
                    fl += 4 * q[0] * q[1] * q[2] * q[2] * q[3]
            if fl:
                part["model_gflops"] = fl / max(t, 1e-9) / 1e9
        R["parts"][lab] = part
        rows.append((lab, part))
    for m, lab in HOST_STEPS.items():
        if "host." + m in excl:
            t = excl["host." + m] / 1e6
            R["parts"][lab] = part = {"s": t, "pct": t / wall}
            rows.append((lab, part))
    other = total_us / 1e6 + max(0.0, wall - top.time_range.elapsed_us() / 1e6)
    R["parts"]["Python bookkeeping (outside every range)"] = part = {"s": other, "pct": other / wall}
    rows.append(("Python bookkeeping (outside every range)", part))
    print(f"\nprofile [{label}]: {wall:.2f} s wall, {R['passes']} passes, {R['tokens']} padded tokens "
          f"(torch.profiler; indicative)")
    print(f"  {'part':<50} {'% wall':>7} {'s':>7} {'matmul s':>8} {'GFLOP/s':>8} {'kernel':>7} "
          f"{'F.linear':>8} {'% of it':>7}  (M, K, N, dtype) of the kernel")
    for lab, p in rows:
        extra = ""
        if "matmul_s" in p:
            rate = p.get("rate_at_shape", float("nan"))
            extra = (f" {p['matmul_s']:8.3f} {p['model_gflops']:8.0f} {p['kernel_gflops']:7.0f} "
                     f"{rate:8.0f} {p['kernel_gflops'] / rate:7.0%}  {p.get('shape', '')}")
        elif "model_gflops" in p:
            extra = f" {'':8} {p['model_gflops']:8.0f}"
        print(f"  {lab:<50} {p['pct']:7.1%} {p['s']:7.3f}{extra}")
    covered = sum(p["pct"] for _, p in rows)
    print(f"  {'sum of rows':<50} {covered:7.1%}")
    print("  GFLOP/s: model FLOPs (2*M*K*N at the model's K) per second of the matmul op; kernel: at the K run "
          "(split weights: 2-3x); F.linear: a plain matmul at the kernel's shape and dtype, timed now")
    return R


# --------------------------------------------------------------------------- attribution


def accumulation_check(M: int = 64, K: int = 768, N: int = 768) -> float:
    """Fraction of bfloat16 F.linear outputs equal to the exact product rounded once to bfloat16
    (1.0: float32 accumulation, one rounding at the end)."""
    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(M, K, generator=g).bfloat16(), torch.randn(N, K, generator=g).bfloat16()
    exact = (a.double() @ w.double().T).float().bfloat16()
    return float((F.linear(a, w) == exact).float().mean())


def attribute(ckpt, genome, rows, batch_of, *, policies, rounds: int, batch_size: int) -> dict:
    """Accuracy and speed of each policy vs float32 on ``rows`` (one model, weights restored per setting)."""
    from vareff.models.bert_precision import FLOAT32, POLICIES, apply_policy
    from vareff.score.grover import make_scorer

    acc = accumulation_check()
    print(f"\noneDNN bfloat16 matmul: {acc:.2%} of outputs equal the exact product rounded once to bfloat16 "
          "(float32 accumulation)", flush=True)
    sc = make_scorer(ckpt, device="cpu", dtype="float32", batch_size=batch_size)
    module = sc.model.module
    state = {k: v.clone() for k, v in module.state_dict().items()}

    def setting(name):
        module.float()
        module.load_state_dict(state)
        apply_policy(module, POLICIES.get(name, FLOAT32))  # float32 weights, no split weights or flags left over
        if name == "mixed":
            module.set_mixed(torch.bfloat16)

    names = ["fp32"] + [p for p in policies if p != "fp32"]
    wall = dict.fromkeys(names, 0.0)
    cols = {n: [] for n in names}
    parts = [rows[i * len(rows) // rounds:(i + 1) * len(rows) // rounds] for i in range(rounds)]
    for n in ("bf16", "fp32"):  # warm-up (oneDNN kernels, allocator)
        setting(n)
        sc.score(batch_of(rows[:2]), genome)
    for rd, part in enumerate(parts):
        for n in (names if rd % 2 == 0 else names[::-1]):  # alternate the order between rounds
            setting(n)
            t0 = time.perf_counter()
            res = sc.score(batch_of(part), genome)
            wall[n] += time.perf_counter() - t0
            cols[n].append(np.array([res.columns[c].to_pylist() for c in ("grover_llr", "grover_embedding_distance")],
                                    dtype=float).T)
        print(f"attribution round {rd + 1}/{rounds} done", flush=True)
    ref = np.concatenate(cols["fp32"])
    out = {"accumulation_exact_fraction": acc, "n": len(rows), "llr_sd": float(np.nanstd(ref[:, 0])), "policies": {}}
    print(f"\nprecision attribution: {len(rows)} sparse SNVs, float32 LLR sd {out['llr_sd']:.2f}; "
          f"speed = float32 wall / policy wall (same process, interleaved; indicative)")
    print(f"  {'policy':<22} {'max|dLLR|':>10} {'p99|dLLR|':>10} {'mean|dLLR|':>10} {'max rel d(dist)':>15} {'speed vs fp32':>13}")
    for n in names[1:]:
        got = np.concatenate(cols[n])
        d = np.abs(got[:, 0] - ref[:, 0])
        rel = np.abs(got[:, 1] - ref[:, 1]) / np.abs(ref[:, 1])
        r = {"max_abs_dllr": float(np.nanmax(d)), "p99_abs_dllr": float(np.nanpercentile(d, 99)),
             "mean_abs_dllr": float(np.nanmean(d)), "max_rel_ddist": float(np.nanmax(rel)),
             "speed_vs_fp32": wall["fp32"] / wall[n]}
        out["policies"][n] = r
        print(f"  {n:<22} {r['max_abs_dllr']:10.3f} {r['p99_abs_dllr']:10.3f} {r['mean_abs_dllr']:10.3f} "
              f"{r['max_rel_ddist']:15.1e} {r['speed_vs_fp32']:13.2f}")
    return out
