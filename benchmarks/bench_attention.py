"""Kernel benchmark: vareff's Triton attention (and element-wise fusions) vs the PyTorch path.

On a CUDA machine: times attention at T in {512, 1024, 2048, 4096, 6000} on ragged batches
(each sequence 10-30% padding), Triton vs the PyTorch path (eager rotary + SDPA with a boolean
mask), and reports TFLOP/s and the ratio; also SDPA without a mask on the same padded tensors
(flash backend, computing on the padding too) as a yardstick.  ``--sweep`` times launch
configurations of the Triton kernel at one T.  Element-wise kernels are reported in GB/s.

On a machine without CUDA it says so, prints the FLOP and byte counts of the kernels for the
GROVER and Nucleotide Transformer shapes (the floors docs/kernels.md quotes), and exits 0.

    python benchmarks/bench_attention.py [--dtype float16|bfloat16] [--heads 16] [--head-dim 64]
                                         [--tokens 16384] [--sweep 4096] [--no-rotary]
"""
from __future__ import annotations

import argparse
import sys

import torch

T_VALUES = (512, 1024, 2048, 4096, 6000)

# (label, batch, tokens T, heads H, head dim D, layers, rotary): worked examples of docs/kernels.md
MODELS = (
    ("GROVER-base", 32, 512, 12, 64, 12, False),
    ("NT-v2-500m", 1, 2048, 16, 64, 29, True),
    ("SegmentNT (NT-v2-500m, 30 kb)", 1, 5001, 16, 64, 29, True),
)


# --------------------------------------------------------------------------- counts


def attention_flops(lengths_q, lengths_k, heads, head_dim) -> int:
    """Matmul FLOPs of attention forward: 2 GEMMs (QK^T, PV), 2 FLOPs per multiply-add."""
    return sum(4 * heads * head_dim * lq * lk for lq, lk in zip(lengths_q, lengths_k))


def attention_bytes(batch, t, heads, head_dim, elem=2, mask=True, rotary=False) -> int:
    """Compulsory HBM traffic: read Q, K, V, write O once (+ the bool mask, fp32 rotary tables)."""
    b = 4 * batch * heads * t * head_dim * elem
    if mask:
        b += batch * t
    if rotary:
        b += 2 * t * head_dim * 4
    return b


def layer_norm_bytes(rows, n, elem=2, residual=True, store_sum=False) -> int:
    """Read x (+ residual), write y (+ the sum); weight and bias once."""
    per_row = n * elem * (1 + residual + 1 + store_sum)
    return rows * per_row + 2 * n * elem


def layer_norm_flops(rows, n, residual=True) -> int:
    """Add, mean, centre, square-sum (2), scale, affine (2): about 8 per element (7 without add)."""
    return rows * n * (8 if residual else 7)


def bias_gelu_bytes(rows, n, elem=2) -> int:
    return rows * n * 2 * elem + n * elem


def swiglu_bytes(rows, i, elem=2) -> int:
    return rows * 3 * i * elem


def _fmt(x: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.0f} {unit}"


def print_counts() -> None:
    print("FLOP and byte counts (fp16/bf16 tensors, per layer; see docs/kernels.md for the formulas)")
    print()
    print("| model | B | T | H | D | attention FLOP | compulsory bytes | FLOP/byte | per forward (all layers) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, b, t, h, d, layers, rot in MODELS:
        fl = attention_flops([t] * b, [t] * b, h, d)
        by = attention_bytes(b, t, h, d, rotary=rot)
        print(f"| {label} | {b} | {t} | {h} | {d} | {_fmt(fl, 'FLOP')} | {_fmt(by, 'B')} | {fl / by:.0f} "
              f"| {_fmt(fl * layers, 'FLOP')} ({layers} layers) |")
    print()
    print("| kernel (per layer) | shape | bytes fused | bytes unfused (PyTorch) | saved |")
    print("|---|---|---|---|---|")
    rows = 32 * 512
    fused = layer_norm_bytes(rows, 768, residual=True, store_sum=False)
    unfused = rows * 768 * 2 * 5  # add: read 2, write 1; layer_norm: read 1, write 1
    print(f"| residual+LayerNorm, post-LN (GROVER) | {rows} x 768 | {_fmt(fused, 'B')} | {_fmt(unfused, 'B')} "
          f"| {100 * (1 - fused / unfused):.0f}% |")
    rows = 5001
    fused = layer_norm_bytes(rows, 1024, residual=True, store_sum=True)
    unfused = rows * 1024 * 2 * 5
    print(f"| residual+LayerNorm, pre-LN with sum (NT) | {rows} x 1024 | {_fmt(fused, 'B')} | {_fmt(unfused, 'B')} "
          f"| {100 * (1 - fused / unfused):.0f}% |")
    rows = 32 * 512
    fused = bias_gelu_bytes(rows, 3072)
    unfused = rows * 3072 * 2 * 4  # bias add: read 1 write 1; gelu: read 1 write 1
    print(f"| bias+GELU after a bias-free GEMM (GROVER) | {rows} x 3072 | {_fmt(fused, 'B')} | {_fmt(unfused, 'B')} "
          f"| {100 * (1 - fused / unfused):.0f}% |")
    rows = 5001
    fused = swiglu_bytes(rows, 4096)
    unfused = rows * 4096 * 2 * 5  # silu: read 1 write 1; mul: read 2 write 1
    print(f"| SwiGLU (NT-v2) | {rows} x 2*4096 | {_fmt(fused, 'B')} | {_fmt(unfused, 'B')} "
          f"| {100 * (1 - fused / unfused):.0f}% |")


# --------------------------------------------------------------------------- CUDA timing


def ragged_lengths(batch: int, t: int, gen: torch.Generator) -> list[int]:
    """Realistic padding: the longest sequence fills T, the others lose 10-30%."""
    fracs = 0.10 + 0.20 * torch.rand(batch, generator=gen)
    lengths = [max(1, int(round(t * (1 - f)))) for f in fracs.tolist()]
    lengths[0] = t
    return lengths


def _bench(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100)  # milliseconds


def run_attention(dtype, heads, head_dim, tokens, rotary_on) -> None:
    import vareff_kernels as vk

    gen = torch.Generator().manual_seed(0)
    dev = "cuda"
    print(f"Attention forward on {torch.cuda.get_device_name()}: {dtype}, H={heads}, D={head_dim}, "
          f"~{tokens} tokens per batch, rotary={'on' if rotary_on else 'off'}; padding 10-30% per sequence")
    print("TFLOP/s counts the real (unpadded) tokens' matmul FLOPs; 'dense' counts the padded T x T.")
    print()
    print("| T | B | pad % | triton ms | torch (SDPA+mask) ms | SDPA no mask ms | triton TFLOP/s | "
          "torch TFLOP/s | triton dense TFLOP/s | ratio torch/triton |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in T_VALUES:
        b = max(1, tokens // t)
        lengths = ragged_lengths(b, t, gen)
        q, k, v = (torch.randn(b, heads, t, head_dim, device=dev, dtype=dtype) for _ in range(3))
        mask = torch.zeros(b, t, dtype=torch.bool, device=dev)
        for i, n in enumerate(lengths):
            mask[i, :n] = True
        rotary = vk.rotary_cos_sin(t, head_dim, device=dev) if rotary_on else None
        ms_tri = _bench(lambda: vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="triton"))
        ms_tor = _bench(lambda: vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="torch"))
        ms_dense = _bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
        useful = attention_flops(lengths, lengths, heads, head_dim)
        dense = attention_flops([t] * b, [t] * b, heads, head_dim)
        pad = 100.0 * (1 - sum(lengths) / (b * t))
        print(f"| {t} | {b} | {pad:.0f} | {ms_tri:.3f} | {ms_tor:.3f} | {ms_dense:.3f} "
              f"| {useful / ms_tri / 1e9:.1f} | {useful / ms_tor / 1e9:.1f} | {dense / ms_tri / 1e9:.1f} "
              f"| {ms_tor / ms_tri:.2f} |")


def run_sweep(dtype, heads, head_dim, t) -> None:
    import vareff_kernels as vk
    from vareff_kernels import flash_attention as fa

    b = max(1, 16384 // t)
    q, k, v = (torch.randn(b, heads, t, head_dim, device="cuda", dtype=dtype) for _ in range(3))
    mask = torch.ones(b, t, dtype=torch.bool, device="cuda")
    rotary = vk.rotary_cos_sin(t, head_dim, device="cuda")
    flops = attention_flops([t] * b, [t] * b, heads, head_dim)
    print(f"Launch-configuration sweep at B={b}, T={t}, H={heads}, D={head_dim}, {dtype}, rotary on")
    print("| BLOCK_M | BLOCK_N | warps | stages | ms | TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for bm in (64, 128):
        for bn in (32, 64, 128):
            for nw in (4, 8):
                for ns in (2, 3, 4):
                    try:
                        ms = _bench(lambda: fa.attention_fwd(q, k, v, mask, rotary, block_m=bm, block_n=bn,
                                                             num_warps=nw, num_stages=ns))
                    except Exception as e:  # out of shared memory etc.
                        print(f"| {bm} | {bn} | {nw} | {ns} | failed: {type(e).__name__} | |")
                        continue
                    print(f"| {bm} | {bn} | {nw} | {ns} | {ms:.3f} | {flops / ms / 1e9:.1f} |")


def run_elementwise(dtype) -> None:
    import vareff_kernels as vk

    print()
    print(f"Element-wise kernels, {dtype} (GB/s of compulsory traffic)")
    print("| kernel | shape | triton ms | torch ms | triton GB/s | torch GB/s |")
    print("|---|---|---|---|---|---|")
    elem = torch.tensor([], dtype=dtype).element_size()
    x = torch.randn(16384, 768, device="cuda", dtype=dtype)
    r = torch.randn_like(x)
    w, bias = torch.randn(768, device="cuda", dtype=dtype), torch.randn(768, device="cuda", dtype=dtype)
    by = layer_norm_bytes(16384, 768, elem, residual=True)
    a = _bench(lambda: vk.layer_norm(x, w, bias, 1e-12, residual=r, backend="triton"))
    c = _bench(lambda: vk.layer_norm(x, w, bias, 1e-12, residual=r, backend="torch"))
    print(f"| residual+LayerNorm | 16384 x 768 | {a:.3f} | {c:.3f} | {by / a / 1e6:.0f} | {by / c / 1e6:.0f} |")
    x = torch.randn(16384, 3072, device="cuda", dtype=dtype)
    bias = torch.randn(3072, device="cuda", dtype=dtype)
    by = bias_gelu_bytes(16384, 3072, elem)
    a = _bench(lambda: vk.bias_gelu(x, bias, backend="triton"))
    c = _bench(lambda: vk.bias_gelu(x, bias, backend="torch"))
    print(f"| bias+GELU | 16384 x 3072 | {a:.3f} | {c:.3f} | {by / a / 1e6:.0f} | {by / c / 1e6:.0f} |")
    x = torch.randn(5001, 8192, device="cuda", dtype=dtype)
    by = swiglu_bytes(5001, 4096, elem)
    a = _bench(lambda: vk.swiglu(x, backend="triton"))
    c = _bench(lambda: vk.swiglu(x, backend="torch"))
    print(f"| SwiGLU | 5001 x 8192 | {a:.3f} | {c:.3f} | {by / a / 1e6:.0f} | {by / c / 1e6:.0f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--tokens", type=int, default=16384, help="about B*T per measurement")
    p.add_argument("--no-rotary", action="store_true")
    p.add_argument("--sweep", type=int, metavar="T", help="time launch configurations at this T instead")
    p.add_argument("--counts", action="store_true", help="only print the FLOP/byte tables")
    args = p.parse_args(argv)

    if args.counts or not torch.cuda.is_available():
        if not args.counts:
            print("No CUDA device is present: nothing to time (the Triton kernels are proven against the "
                  "eager references under TRITON_INTERPRET=1 by tests/kernels instead).")
            print()
        print_counts()
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("CUDA is present but triton cannot be imported: pip install 'vareff[triton]'")
        return 0
    dtype = getattr(torch, args.dtype)
    if args.sweep:
        run_sweep(dtype, args.heads, args.head_dim, args.sweep)
        return 0
    run_attention(dtype, args.heads, args.head_dim, args.tokens, not args.no_rotary)
    run_elementwise(dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
