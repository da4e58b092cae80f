"""Element-wise fusions in Triton: bias + exact GELU, and SwiGLU.

* ``bias_gelu``: the BERT-style feed-forward of GROVER (and NT v1) is ``gelu(x W + b)``; adding
  the bias inside the activation kernel reads x once and writes y once, instead of a bias-add
  pass plus a GELU pass (use it after a bias-free GEMM).
* ``swiglu``: NT v2's gated feed-forward is ``silu(a) * g`` with ``[a, g] = x W`` (first half
  gated); one pass reads both halves and writes the product, instead of materialising silu(a).

Both compute in fp32 registers and store in the input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from vareff.errors import BackendUnavailableError

from .dispatch import KernelInputError

__all__ = ["bias_gelu_fwd", "swiglu_fwd"]


@triton.jit
def _bias_gelu_fwd(X, Bias, Y, stride_x, stride_y, N, BLOCK: tl.constexpr, EVEN_N: tl.constexpr):
    """Grid (rows, cdiv(N, BLOCK)): y = v * 0.5 * (1 + erf(v / sqrt 2)), v = x + bias."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    if EVEN_N:
        x = tl.load(X + row * stride_x + cols).to(tl.float32)
        b = tl.load(Bias + cols).to(tl.float32)
    else:
        ok = cols < N
        x = tl.load(X + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
        b = tl.load(Bias + cols, mask=ok, other=0.0).to(tl.float32)
    v = x + b
    y = 0.5 * v * (1.0 + tl.math.erf(v * 0.7071067811865476))
    if EVEN_N:
        tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty))
    else:
        tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=cols < N)


@triton.jit
def _swiglu_fwd(X, Y, stride_x, stride_y, I, BLOCK: tl.constexpr, EVEN_I: tl.constexpr):
    """Grid (rows, cdiv(I, BLOCK)): y = silu(x[:I]) * x[I:] for one row of x (2I,)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    if EVEN_I:
        a = tl.load(X + row * stride_x + cols).to(tl.float32)
        g = tl.load(X + row * stride_x + I + cols).to(tl.float32)
    else:
        ok = cols < I
        a = tl.load(X + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
        g = tl.load(X + row * stride_x + I + cols, mask=ok, other=0.0).to(tl.float32)
    y = a * tl.sigmoid(a) * g
    if EVEN_I:
        tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty))
    else:
        tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=cols < I)


INTERPRETED = type(_bias_gelu_fwd).__name__ == "InterpretedFunction"


def _check(op: str, x: torch.Tensor) -> None:
    if x.device.type != "cuda" and not INTERPRETED:
        raise BackendUnavailableError(
            f"{op}: the Triton kernel got {x.device.type} tensors, but it was compiled for CUDA",
            hint="use CUDA tensors, or set TRITON_INTERPRET=1 before importing vareff_kernels.activations",
        )
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise KernelInputError(f"{op}: dtype {x.dtype} not supported (float16, bfloat16, float32)")
    if x.dim() == 0:
        raise KernelInputError(f"{op}: x must have at least one dim")


def _as_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    x2 = x.reshape(-1, n)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _block(n: int) -> int:
    return min(1024, max(16, triton.next_power_of_2(n)))


def bias_gelu_fwd(x, bias):
    """Triton exact GELU of ``x + bias``; x (..., N), bias (N,).  Returns x's shape and dtype."""
    _check("bias_gelu", x)
    n = x.shape[-1]
    if tuple(bias.shape) != (n,) or bias.device != x.device:
        raise KernelInputError(f"bias_gelu: bias must be ({n},) on {x.device}, got {tuple(bias.shape)}")
    x2 = _as_rows(x, n)
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    if x2.numel():
        block = _block(n)
        _bias_gelu_fwd[(x2.shape[0], triton.cdiv(n, block))](
            x2, bias.contiguous(), y, x2.stride(0), y.stride(0), n,
            BLOCK=block, EVEN_N=n % block == 0, num_warps=4 if block <= 512 else 8,
        )
    return y.view(x.shape)


def swiglu_fwd(x):
    """Triton SwiGLU: x (..., 2I) -> silu(x[..., :I]) * x[..., I:], shape (..., I)."""
    _check("swiglu", x)
    if x.shape[-1] % 2:
        raise KernelInputError(f"swiglu: last dim must be even (2I), got {x.shape[-1]}")
    i = x.shape[-1] // 2
    x2 = _as_rows(x, 2 * i)
    y = torch.empty((x2.shape[0], i), dtype=x.dtype, device=x.device)
    if y.numel():
        block = _block(i)
        _swiglu_fwd[(x2.shape[0], triton.cdiv(i, block))](
            x2, y, x2.stride(0), y.stride(0), i,
            BLOCK=block, EVEN_I=i % block == 0, num_warps=4 if block <= 512 else 8,
        )
    return y.view(*x.shape[:-1], i)
