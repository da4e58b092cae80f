"""Eager PyTorch versions of every kernel.

Two kinds live here:

* ``*_torch`` functions are the PyTorch backend the dispatcher runs wherever Triton does not
  (CPU by default): SDPA for attention, ``torch.nn.functional`` ops for the rest, in the input dtype.
* ``*_reference`` functions are the independent ground truth for tests and benchmarks: plain
  eager math, computed in float32 (float64 if the input is float64) whatever the input dtype,
  with the result cast back to the input dtype.  They never call SDPA or a fused op.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "rotate_half",
    "apply_rotary",
    "rotary_torch",
    "rotary_cos_sin",
    "attention_torch",
    "attention_reference",
    "layer_norm_torch",
    "layer_norm_reference",
    "bias_gelu_torch",
    "bias_gelu_reference",
    "swiglu_torch",
    "swiglu_reference",
]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- rotary


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """NeoX rotate-half: ``cat(-x[..., D/2:], x[..., :D/2])``."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary_for(x: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """cos/sin given as (T, D) or (B, T, D): make them broadcast over x (B, H, T, D)."""
    if cos.dim() == 2:
        return cos[: x.shape[-2]]
    if cos.dim() == 3:
        return cos[:, None, : x.shape[-2]]
    raise ValueError(f"rotary cos/sin must be (T, D) or (B, T, D), got shape {tuple(cos.shape)}")


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x*cos + rotate_half(x)*sin`` for x (B, H, T, D), in x's dtype (cos/sin cast to it)."""
    c = _rotary_for(x, cos).to(x.dtype)
    s = _rotary_for(x, sin).to(x.dtype)
    return x * c + rotate_half(x) * s


def rotary_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rotary` for a tokens-first ``x`` (B, T, ..., D) (e.g. q and k together as
    (B, T, 2, H, D) straight from a fused QKV projection), as one new tensor of x's shape.

    Written half by half without the rotate-half copy, the negation and the temporaries: with
    ``x = (x1, x2)``, ``cos = (c1, c2)``, ``sin = (s1, s2)`` split at D/2 the result is
    ``(x1 c1 - x2 s1, x2 c2 + x1 s2)``.  cos/sin: (T, D) or (B, T, D), cast to x's dtype.
    """
    T, D = x.shape[1], x.shape[-1]
    if cos.dim() == 2:
        cos, sin = cos[:T], sin[:T]
    else:
        cos, sin = cos[:, :T], sin[:, :T]
    bshape = (-1 if cos.dim() == 3 else 1, T) + (1,) * (x.dim() - 3) + (D,)
    c = cos.to(x.dtype).reshape(bshape)
    s = sin.to(x.dtype).reshape(bshape)
    half = D // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    o1, o2 = out[..., :half], out[..., half:]
    torch.mul(x1, c[..., :half], out=o1)
    o1.addcmul_(x2, s[..., :half], value=-1)
    torch.mul(x2, c[..., half:], out=o2)
    o2.addcmul_(x1, s[..., half:])
    return out


def rotary_cos_sin(
    seq_len: int, dim: int, base: float = 10000.0, device=None, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nucleotide Transformer v2 rotary tables: ``inv_freq[i] = base^(-2i/D)``, positions
    ``0..T-1``, ``cos/sin = cat(freqs, freqs)``; returns (cos, sin), each (T, D)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


# --------------------------------------------------------------------------- attention


def attention_torch(q, k, v, key_padding_mask=None, rotary=None, scale=None):
    """The PyTorch backend: eager rotary, then SDPA with a boolean mask (True = attend).

    A sequence whose keys are all padding attends to all of its keys instead (its output rows are
    padding too, so callers ignore them; this keeps them finite rather than NaN).
    """
    if rotary is not None:
        cos, sin = rotary
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
    attn_mask = None
    if key_padding_mask is not None:
        m = key_padding_mask.to(torch.bool)
        m = m | ~m.any(dim=-1, keepdim=True)
        attn_mask = m[:, None, None, :]  # (B, 1, 1, Tk), broadcast over heads and queries
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def attention_reference(q, k, v, key_padding_mask=None, rotary=None, scale=None):
    """Ground truth: rotary and softmax(q k^T * scale, masked) v in float32, cast to q's dtype.

    Rows whose keys are all padding come out as zeros.
    """
    acc = _acc_dtype(q.dtype)
    qf, kf, vf = q.to(acc), k.to(acc), v.to(acc)
    if rotary is not None:
        cos, sin = (t.to(acc) for t in rotary)
        qf = qf * _rotary_for(qf, cos) + rotate_half(qf) * _rotary_for(qf, sin)
        kf = kf * _rotary_for(kf, cos) + rotate_half(kf) * _rotary_for(kf, sin)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    if key_padding_mask is not None:
        keep = key_padding_mask.to(torch.bool)[:, None, None, :]
        s = s.masked_fill(~keep, float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    den = p.sum(dim=-1, keepdim=True)
    p = p / torch.where(den > 0, den, torch.ones_like(den))
    return torch.matmul(p, vf).to(q.dtype)


# --------------------------------------------------------------------------- layer norm


def layer_norm_torch(x, weight, bias, eps, residual=None):
    """The PyTorch backend: ``(LayerNorm(x + residual), x + residual)`` in x's dtype."""
    h = x if residual is None else x + residual
    return F.layer_norm(h, (h.shape[-1],), weight, bias, eps), h


def layer_norm_reference(x, weight, bias, eps, residual=None):
    """Ground truth: ``(LayerNorm(x + residual), x + residual)``; mean/var by hand in float32.

    The sum is rounded to x's dtype before normalising, as the kernel and the torch path do.
    """
    acc = _acc_dtype(x.dtype)
    h = x.to(acc) if residual is None else x.to(acc) + residual.to(acc)
    h_rounded = h.to(x.dtype)
    hf = h_rounded.to(acc)
    mean = hf.mean(dim=-1, keepdim=True)
    var = ((hf - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (hf - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.to(acc)
    if bias is not None:
        y = y + bias.to(acc)
    return y.to(x.dtype), h_rounded


# --------------------------------------------------------------------------- activations


def bias_gelu_torch(x, bias):
    """The PyTorch backend: exact (erf) GELU of ``x + bias``."""
    return F.gelu(x + bias, approximate="none")


def bias_gelu_reference(x, bias):
    """Ground truth: ``0.5 * v * (1 + erf(v / sqrt(2)))``, ``v = x + bias``, in float32."""
    acc = _acc_dtype(x.dtype)
    v = x.to(acc) + bias.to(acc)
    return (0.5 * v * (1.0 + torch.erf(v / math.sqrt(2.0)))).to(x.dtype)


def swiglu_torch(x):
    """The PyTorch backend: ``silu(x[..., :I]) * x[..., I:]`` for x (..., 2I)."""
    a, b = x.chunk(2, dim=-1)
    return F.silu(a) * b


def swiglu_reference(x):
    """Ground truth: ``a * sigmoid(a) * b`` with ``a, b`` the first and second halves, in float32."""
    acc = _acc_dtype(x.dtype)
    i = x.shape[-1] // 2
    a, b = x[..., :i].to(acc), x[..., i:].to(acc)
    return (a / (1.0 + torch.exp(-a)) * b).to(x.dtype)
