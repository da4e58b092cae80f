"""Fused Triton kernels for vareff's encoders (GROVER, Nucleotide Transformer / SegmentNT),
with eager PyTorch references and one dispatcher choosing between them.

Public API (every function takes ``backend=None|"auto"|"triton"|"torch"``; None means the
process-wide setting, see :mod:`vareff_kernels.dispatch` and docs/kernels.md):

* :func:`attention` -- bidirectional multi-head attention, (B, H, T, D) in and out, optional
  key-padding mask (True = real token) and NeoX rotary embedding applied inside the kernel.
* :func:`attention_varlen` -- the same on packed sequences (no padding), flash-attn style.
* :func:`layer_norm`, :func:`layer_norm_residual` -- LayerNorm(x + residual).
* :func:`bias_gelu` -- exact GELU(x + bias).
* :func:`swiglu` -- silu(first half) * second half.

The import name is ``vareff_kernels`` (the folder ``kernels/`` is not a package) so that it can
never be confused with the unrelated PyPI package ``kernels`` that ``transformers`` probes for.
"""
from __future__ import annotations

import importlib

import torch

from . import reference
from .dispatch import (
    BACKENDS,
    KernelInputError,
    attention_unsupported_reason,
    get_backend,
    resolve_backend,
    set_backend,
    triton_available,
)
from .reference import apply_rotary, rotary_cos_sin, rotary_torch

__all__ = [
    "attention",
    "attention_varlen",
    "layer_norm",
    "layer_norm_residual",
    "bias_gelu",
    "swiglu",
    "set_backend",
    "get_backend",
    "triton_available",
    "rotary_cos_sin",
    "apply_rotary",
    "rotary_torch",
    "KernelInputError",
    "BACKENDS",
]


def _triton_module(name: str):
    """Import a Triton kernel module only when the Triton path was chosen."""
    return importlib.import_module(f"vareff_kernels.{name}")


def _check_tensor(name, t):
    if not isinstance(t, torch.Tensor):
        raise KernelInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


# --------------------------------------------------------------------------- attention


def _check_attention_args(q, k, v, key_padding_mask, rotary):
    for n, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(n, t)
        if t.dim() != 4:
            raise KernelInputError(
                f"attention: {n} must be 4-D (B, H, T, D), got shape {tuple(t.shape)}",
                hint="reshape (B, T, H*D) projections with .view(B, T, H, D).transpose(1, 2)",
            )
    b, h, tq, d = q.shape
    if k.shape[0] != b or k.shape[1] != h or k.shape[3] != d or v.shape != k.shape:
        raise KernelInputError(
            f"attention: shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}",
            hint="k and v must be (B, H, Tk, D) with q's B, H and D",
        )
    if not (q.device == k.device == v.device):
        raise KernelInputError(f"attention: q, k, v on different devices ({q.device}, {k.device}, {v.device})")
    if not (q.dtype == k.dtype == v.dtype):
        raise KernelInputError(f"attention: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    tk = k.shape[2]
    if key_padding_mask is not None:
        _check_tensor("key_padding_mask", key_padding_mask)
        if tuple(key_padding_mask.shape) != (b, tk):
            raise KernelInputError(
                f"attention: key_padding_mask must be (B, Tk) = ({b}, {tk}), got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.dtype != torch.bool:
            raise KernelInputError(
                f"attention: key_padding_mask must be bool (True = real token), got {key_padding_mask.dtype}",
                hint="pass attention_mask.bool() for a 0/1 tokenizer mask",
            )
        if key_padding_mask.device != q.device:
            raise KernelInputError("attention: key_padding_mask is on a different device from q")
    if rotary is not None:
        if not (isinstance(rotary, (tuple, list)) and len(rotary) == 2):
            raise KernelInputError("attention: rotary must be a (cos, sin) pair")
        cos, sin = rotary
        _check_tensor("rotary cos", cos)
        _check_tensor("rotary sin", sin)
        if cos.shape != sin.shape:
            raise KernelInputError(f"attention: rotary cos {tuple(cos.shape)} and sin {tuple(sin.shape)} differ")
        ok = cos.dim() in (2, 3) and cos.shape[-1] == d and cos.shape[-2] >= max(tq, tk)
        if ok and cos.dim() == 3:
            ok = cos.shape[0] in (1, b)
        if not ok:
            raise KernelInputError(
                f"attention: rotary cos/sin must be (T, D) or (B, T, D) with T >= {max(tq, tk)} and D = {d}, "
                f"got {tuple(cos.shape)}"
            )
        if d % 2:
            raise KernelInputError(f"attention: rotary needs an even head dim, got {d}")
        if cos.device != q.device:
            raise KernelInputError("attention: rotary cos/sin are on a different device from q")


def attention(q, k, v, *, key_padding_mask=None, rotary=None, scale=None, backend=None):
    """Bidirectional scaled-dot-product attention.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D); returns (B, H, Tq, D) in q's dtype.
    key_padding_mask: bool (B, Tk), True = real token.  When Tq == Tk the mask marks the padded
    query positions too (self-attention); output rows there are finite but otherwise unspecified
    (the Triton kernel writes zeros for whole tiles of them without computing).  rotary: (cos, sin), each (T, D) or (B, T, D), NeoX
    rotate-half, applied to q and k before the dot product (inside the Triton kernel).
    scale: default 1/sqrt(D).
    """
    _check_attention_args(q, k, v, key_padding_mask, rotary)
    which = resolve_backend(
        "attention", q.device, backend, unsupported=attention_unsupported_reason(q, k, v, rotary)
    )
    if which == "triton":
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        return _triton_module("flash_attention").attention_fwd(
            q, k, v, key_padding_mask=key_padding_mask, rotary=rotary, scale=scale
        )
    return reference.attention_torch(q, k, v, key_padding_mask=key_padding_mask, rotary=rotary, scale=scale)


def _check_varlen_args(q, k, v, cu_seqlens, max_seqlen, rotary):
    for n, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(n, t)
        if t.dim() != 3:
            raise KernelInputError(f"attention_varlen: {n} must be 3-D (total_tokens, H, D), got {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise KernelInputError(
            f"attention_varlen: q, k, v shapes differ ({tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)})"
        )
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise KernelInputError("attention_varlen: q, k, v must share dtype and device")
    _check_tensor("cu_seqlens", cu_seqlens)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise KernelInputError(
            "attention_varlen: cu_seqlens must be a 1-D int32/int64 tensor [0, len0, len0+len1, ..., total]"
        )
    if cu_seqlens.device != q.device:
        raise KernelInputError("attention_varlen: cu_seqlens is on a different device from q")
    cu = cu_seqlens.tolist()
    lens = [b - a for a, b in zip(cu[:-1], cu[1:])]
    if cu[0] != 0 or cu[-1] != q.shape[0] or min(lens) < 0:
        raise KernelInputError(
            f"attention_varlen: cu_seqlens must rise from 0 to total_tokens={q.shape[0]}, got {cu[:4]}..{cu[-1]}"
        )
    if max_seqlen < max(lens):
        raise KernelInputError(f"attention_varlen: max_seqlen={max_seqlen} < longest sequence {max(lens)}")
    if rotary is not None:
        cos, sin = rotary
        if cos.dim() != 2 or cos.shape != sin.shape or cos.shape[0] < max(lens) or cos.shape[1] != q.shape[-1]:
            raise KernelInputError(
                f"attention_varlen: rotary cos/sin must be (T, D) with T >= {max(lens)}, D = {q.shape[-1]}"
            )
        if cos.device != q.device:
            raise KernelInputError("attention_varlen: rotary cos/sin are on a different device from q")
    return lens


def attention_varlen(q, k, v, cu_seqlens, max_seqlen, *, rotary=None, scale=None, backend=None):
    """Attention over packed sequences (no padding).

    q, k, v: (total_tokens, H, D), sequence i occupying rows ``cu_seqlens[i]:cu_seqlens[i+1]``;
    tokens attend only within their own sequence.  Rotary positions restart at 0 in each
    sequence (cos/sin: (T, D), T >= max_seqlen).  Returns (total_tokens, H, D).
    """
    lens = _check_varlen_args(q, k, v, cu_seqlens, max_seqlen, rotary)
    which = resolve_backend(
        "attention_varlen", q.device, backend, unsupported=attention_unsupported_reason(q, k, v, rotary)
    )
    if which == "triton":
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        return _triton_module("flash_attention").attention_varlen_fwd(
            q, k, v, cu_seqlens, max_seqlen, rotary=rotary, scale=scale
        )
    # PyTorch path: pad to (B, H, max_len, D), SDPA with a key mask, unpad.
    qp, kp, vp, mask = _pad_packed(q, k, v, lens)
    out = reference.attention_torch(qp, kp, vp, key_padding_mask=mask, rotary=rotary, scale=scale)
    return _unpad(out, lens)


def _pad_packed(q, k, v, lens):
    b, t = len(lens), max(max(lens), 1)
    h, d = q.shape[1], q.shape[2]
    idx = torch.cat([torch.arange(n, device=q.device) + i * t for i, n in enumerate(lens)])
    mask = torch.zeros(b * t, dtype=torch.bool, device=q.device)
    mask[idx] = True
    out = []
    for x in (q, k, v):
        p = x.new_zeros(b * t, h, d)
        p[idx] = x
        out.append(p.view(b, t, h, d).transpose(1, 2))
    return (*out, mask.view(b, t))


def _unpad(out, lens):
    b, h, t, d = out.shape
    idx = torch.cat([torch.arange(n, device=out.device) + i * t for i, n in enumerate(lens)])
    return out.transpose(1, 2).reshape(b * t, h, d)[idx]


# --------------------------------------------------------------------------- layer norm


def _check_ln_args(x, weight, bias, residual):
    _check_tensor("x", x)
    n = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_tensor(name, t)
            if tuple(t.shape) != (n,):
                raise KernelInputError(f"layer_norm: {name} must be ({n},), got {tuple(t.shape)}")
            if t.device != x.device:
                raise KernelInputError(f"layer_norm: {name} is on a different device from x")
    if residual is not None:
        _check_tensor("residual", residual)
        if residual.shape != x.shape or residual.dtype != x.dtype or residual.device != x.device:
            raise KernelInputError(
                f"layer_norm: residual must match x (shape {tuple(x.shape)}, {x.dtype}, {x.device}), "
                f"got {tuple(residual.shape)}, {residual.dtype}, {residual.device}"
            )


def _eltwise_unsupported(x):
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {x.dtype}"
    if x.device.type == "cpu" and x.dtype == torch.bfloat16:
        return "bfloat16 under the CPU interpreter (numpy has no bfloat16)"
    return None


def layer_norm_residual(x, weight, bias, eps=1e-5, residual=None, *, backend=None):
    """``(LayerNorm(x + residual), x + residual)`` over the last dim (pre-LN blocks need the sum;
    with ``residual=None`` the second item is x itself)."""
    return _layer_norm(x, weight, bias, eps, residual, backend, want_sum=True)


def _layer_norm(x, weight, bias, eps, residual, backend, want_sum):
    _check_ln_args(x, weight, bias, residual)
    unsupported = _eltwise_unsupported(x)
    if unsupported is None and x.shape[-1] > 65536:
        unsupported = f"rows of {x.shape[-1]} > 65536 elements"
    which = resolve_backend("layer_norm", x.device, backend, unsupported=unsupported)
    if which == "triton":
        return _triton_module("layernorm").layer_norm_fwd(
            x, weight, bias, eps, residual=residual, store_sum=want_sum
        )
    return reference.layer_norm_torch(x, weight, bias, eps, residual=residual)


def layer_norm(x, weight, bias, eps=1e-5, residual=None, *, backend=None):
    """``LayerNorm(x + residual)`` over the last dim (``residual=None``: plain LayerNorm)."""
    return _layer_norm(x, weight, bias, eps, residual, backend, want_sum=False)[0]


# --------------------------------------------------------------------------- activations


def bias_gelu(x, bias, *, backend=None):
    """Exact (erf) GELU of ``x + bias``; bias is (N,) for x (..., N)."""
    _check_tensor("x", x)
    _check_tensor("bias", bias)
    if tuple(bias.shape) != (x.shape[-1],) or bias.device != x.device:
        raise KernelInputError(
            f"bias_gelu: bias must be ({x.shape[-1]},) on {x.device}, got {tuple(bias.shape)} on {bias.device}"
        )
    which = resolve_backend("bias_gelu", x.device, backend, unsupported=_eltwise_unsupported(x))
    if which == "triton":
        return _triton_module("activations").bias_gelu_fwd(x, bias)
    return reference.bias_gelu_torch(x, bias)


def swiglu(x, *, backend=None):
    """``silu(x[..., :I]) * x[..., I:]`` for x (..., 2I); returns (..., I)."""
    _check_tensor("x", x)
    if x.dim() == 0 or x.shape[-1] % 2:
        raise KernelInputError(f"swiglu: last dim must be even (2I), got shape {tuple(x.shape)}")
    which = resolve_backend("swiglu", x.device, backend, unsupported=_eltwise_unsupported(x))
    if which == "triton":
        return _triton_module("activations").swiglu_fwd(x)
    return reference.swiglu_torch(x)
