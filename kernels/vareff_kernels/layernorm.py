"""Fused residual-add + LayerNorm forward in Triton.

One program normalises one row (the hidden size fits one tile: up to 65,536 elements).  Fusing
the residual add saves the round trip of writing ``x + residual`` and reading it back for the
norm; pre-LN blocks (Nucleotide Transformer) also need the sum, which the kernel stores in the
same pass (``store_sum=True``), post-LN blocks (GROVER, BERT-style) do not.

Statistics are computed in fp32 from the sum rounded to the input dtype (what the eager
``F.layer_norm(x + residual)`` sees), two-pass over registers (mean, then centred variance).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from vareff.errors import BackendUnavailableError

from .dispatch import KernelInputError

__all__ = ["layer_norm_fwd", "MAX_FUSED_SIZE"]

MAX_FUSED_SIZE = 65536


@triton.jit
def _layer_norm_fwd(
    X, Res, Y, Sum, W, B,
    stride_x, stride_r, stride_y, stride_s,
    N, eps,
    HAS_RESIDUAL: tl.constexpr, STORE_SUM: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid (rows,): y = LayerNorm(x + residual) * w + b for one row; optionally store the sum."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    x = tl.load(X + row * stride_x + cols, mask=col_ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(Res + row * stride_r + cols, mask=col_ok, other=0.0).to(tl.float32)
        h = (x + r).to(X.dtype.element_ty)
        if STORE_SUM:
            tl.store(Sum + row * stride_s + cols, h, mask=col_ok)
        x = h.to(tl.float32)
    mean = tl.sum(x, axis=0) / N
    xc = tl.where(col_ok, x - mean, 0.0)
    var = tl.sum(xc * xc, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    y = xc * rstd
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=col_ok)


INTERPRETED = type(_layer_norm_fwd).__name__ == "InterpretedFunction"


def _num_warps(block_n: int) -> int:
    if block_n >= 32768:
        return 32
    if block_n >= 8192:
        return 16
    if block_n >= 2048:
        return 8
    return 4


def _rows(name: str, t: torch.Tensor, n: int) -> torch.Tensor:
    """View t (..., N) as (rows, N) with a contiguous last dim (copying only if it must)."""
    t2 = t.reshape(-1, n)
    if t2.stride(-1) != 1:
        t2 = t2.contiguous()
    return t2


def layer_norm_fwd(x, weight, bias, eps=1e-5, residual=None, *, store_sum=True):
    """Triton LayerNorm over the last dim of ``x + residual``.

    Returns ``(y, h)``: y the normalised tensor (x's shape and dtype), h the summed residual
    ``x + residual`` (x itself when residual is None; None when ``store_sum=False``).
    """
    if x.device.type != "cuda" and not INTERPRETED:
        raise BackendUnavailableError(
            f"layer_norm: the Triton kernel got {x.device.type} tensors, but it was compiled for CUDA",
            hint="use CUDA tensors, or set TRITON_INTERPRET=1 before importing vareff_kernels.layernorm",
        )
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise KernelInputError(f"layer_norm: dtype {x.dtype} not supported (float16, bfloat16, float32)")
    if x.dim() == 0:
        raise KernelInputError("layer_norm: x must have at least one dim")
    n = x.shape[-1]
    if n > MAX_FUSED_SIZE:
        raise KernelInputError(f"layer_norm: rows of {n} elements exceed the fused limit {MAX_FUSED_SIZE}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (tuple(t.shape) != (n,) or t.device != x.device):
            raise KernelInputError(f"layer_norm: {name} must be ({n},) on {x.device}, got {tuple(t.shape)}")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype
                                 or residual.device != x.device):
        raise KernelInputError("layer_norm: residual must match x in shape, dtype and device")

    x2 = _rows("x", x, n)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    has_res = residual is not None
    store = has_res and store_sum
    r2 = _rows("residual", residual, n) if has_res else x2
    h2 = torch.empty((m, n), dtype=x.dtype, device=x.device) if store else x2
    if m and n:
        block_n = triton.next_power_of_2(n)
        w = weight.contiguous() if weight is not None else x2
        b = bias.contiguous() if bias is not None else x2
        _layer_norm_fwd[(m,)](
            x2, r2, y, h2, w, b,
            x2.stride(0), r2.stride(0), y.stride(0), h2.stride(0),
            n, float(eps),
            HAS_RESIDUAL=has_res, STORE_SUM=store,
            HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            BLOCK_N=block_n, num_warps=_num_warps(block_n),
        )
    y = y.view(x.shape)
    if not has_res:
        return y, x
    return y, (h2.view(x.shape) if store else None)
