"""Fused attention forward (inference) in Triton: bidirectional, key-padding mask, in-kernel
NeoX rotary, fp16/bf16/fp32 inputs with fp32 accumulation, online (flash) softmax.

Layout: the ``@triton.jit`` functions first, then the plain launchers
(:func:`attention_fwd` for padded (B, H, T, D) batches, :func:`attention_varlen_fwd` for packed
sequences), which check their inputs, choose block sizes, compute the grid and return tensors.
Launchers accept CPU tensors when this module was imported under ``TRITON_INTERPRET=1``.

Algorithm (per program: one BLOCK_M slice of queries of one (batch, head)):

* load the query tile once (rotating it first when ROTARY: the two halves are loaded separately
  and combined in registers, so the rotated q and k never touch memory);
* walk the key/value tiles up to the last real key of this sequence, computing
  ``s = q k^T * scale * log2(e)`` with ``tl.dot`` (fp32 accumulation, ``input_precision`` pinned so
  that fp32 inputs are never silently computed in TF32), setting padded / out-of-range keys to
  -inf, and updating the running max ``m``, the running sum ``l`` and the accumulator with exp2;
* write ``acc / l``.  Rows with no real key get 0 (never NaN).  When the batch is self-attention
  (Tq == Tk) with a key-padding mask, query tiles that lie wholly past the sequence's last real
  token are padding: they store zeros without computing anything.
"""
from __future__ import annotations

import logging
import math

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from vareff.errors import BackendUnavailableError

from .dispatch import KernelInputError, attention_unsupported_reason

__all__ = ["attention_fwd", "attention_varlen_fwd", "INTERPRETED", "DOT_PRECISION_FP32"]

#: ``tl.dot`` input precision used for fp32 inputs (full fp32 products, never TF32); fp16/bf16
#: inputs use the tensor cores natively and ignore it.
DOT_PRECISION_FP32 = "ieee"

_LOG2E = 1.4426950408889634

log = logging.getLogger("vareff_kernels")


@triton.jit
def _attn_fwd_tile(
    q_base, k_base, v_base, o_base, mask_base, cos_base, sin_base,
    stride_qm, stride_kn, stride_vn, stride_om, stride_mn, stride_cm,
    start_m, T_Q, kv_end, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HALF_D: tl.constexpr, BLOCK_HALF: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_MASK: tl.constexpr, ROTARY: tl.constexpr,
    EVEN_M: tl.constexpr, EVEN_N: tl.constexpr, EVEN_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One query tile of one (batch, head): online softmax over keys [0, kv_end); stores the tile.

    All bases already point at this (batch, head)'s row 0; the head dim is contiguous.
    kv_end is the number of keys to visit (<= Tk; keys at or past it are treated as padding).
    """
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < T_Q
    dtype = q_base.dtype.element_ty

    # ---- the query tile (rotated in registers when ROTARY)
    if ROTARY:
        offs_h = tl.arange(0, BLOCK_HALF)
        half_ok = offs_h < HALF_D
        qm = row_ok[:, None] & half_ok[None, :]
        q_ptr = q_base + offs_m[:, None] * stride_qm + offs_h[None, :]
        q1 = tl.load(q_ptr, mask=qm, other=0.0).to(tl.float32)
        q2 = tl.load(q_ptr + HALF_D, mask=qm, other=0.0).to(tl.float32)
        c_ptr = offs_m[:, None] * stride_cm + offs_h[None, :]
        c1 = tl.load(cos_base + c_ptr, mask=qm, other=0.0).to(tl.float32)
        c2 = tl.load(cos_base + c_ptr + HALF_D, mask=qm, other=0.0).to(tl.float32)
        s1 = tl.load(sin_base + c_ptr, mask=qm, other=0.0).to(tl.float32)
        s2 = tl.load(sin_base + c_ptr + HALF_D, mask=qm, other=0.0).to(tl.float32)
        # x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1)
        qr1 = (q1 * c1 - q2 * s1).to(dtype)
        qr2 = (q2 * c2 + q1 * s2).to(dtype)
    else:
        q_ptr = q_base + offs_m[:, None] * stride_qm + offs_d[None, :]
        if EVEN_M & EVEN_D:
            q = tl.load(q_ptr)
        else:
            q = tl.load(q_ptr, mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, kv_end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < kv_end
        # ---- scores s = q k^T (fp32)
        if ROTARY:
            km = half_ok[:, None] & col_ok[None, :]
            kt_ptr = k_base + offs_n[None, :] * stride_kn + offs_h[:, None]
            k1 = tl.load(kt_ptr, mask=km, other=0.0).to(tl.float32)
            k2 = tl.load(kt_ptr + HALF_D, mask=km, other=0.0).to(tl.float32)
            ct_ptr = offs_n[None, :] * stride_cm + offs_h[:, None]
            kc1 = tl.load(cos_base + ct_ptr, mask=km, other=0.0).to(tl.float32)
            kc2 = tl.load(cos_base + ct_ptr + HALF_D, mask=km, other=0.0).to(tl.float32)
            ks1 = tl.load(sin_base + ct_ptr, mask=km, other=0.0).to(tl.float32)
            ks2 = tl.load(sin_base + ct_ptr + HALF_D, mask=km, other=0.0).to(tl.float32)
            kr1 = (k1 * kc1 - k2 * ks1).to(dtype)
            kr2 = (k2 * kc2 + k1 * ks2).to(dtype)
            s = tl.dot(qr1, kr1, input_precision=PRECISION)
            s = tl.dot(qr2, kr2, s, input_precision=PRECISION)
        else:
            kt_ptr = k_base + offs_n[None, :] * stride_kn + offs_d[:, None]
            if EVEN_N & EVEN_D:
                kt = tl.load(kt_ptr)
            else:
                kt = tl.load(kt_ptr, mask=(offs_d[:, None] < HEAD_DIM) & col_ok[None, :], other=0.0)
            s = tl.dot(q, kt, input_precision=PRECISION)
        s = s * qk_scale
        # ---- padding: per-key mask (True = real), and keys past kv_end
        if HAS_MASK:
            key_real = tl.load(mask_base + offs_n * stride_mn, mask=col_ok, other=0)
            s = tl.where((key_real != 0)[None, :], s, float("-inf"))
        elif not EVEN_N:
            s = tl.where(col_ok[None, :], s, float("-inf"))
        # ---- online softmax (base 2); m_safe keeps all-masked rows at p = 0 instead of NaN
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)
        p = tl.math.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v_ptr = v_base + offs_n[:, None] * stride_vn + offs_d[None, :]
        if EVEN_N & EVEN_D:
            v = tl.load(v_ptr)
        else:
            v = tl.load(v_ptr, mask=col_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
        acc = tl.dot(p.to(dtype), v, acc, input_precision=PRECISION)
        m_i = m_new

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    o_ptr = o_base + offs_m[:, None] * stride_om + offs_d[None, :]
    if EVEN_M & EVEN_D:
        tl.store(o_ptr, out.to(o_base.dtype.element_ty))
    else:
        tl.store(o_ptr, out.to(o_base.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


@triton.jit
def _attn_fwd_padded(
    Q, K, V, Out, Mask, KvLen, Cos, Sin,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    stride_mb, stride_mn,
    stride_cb, stride_cm,
    H, T_Q, T_K, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HALF_D: tl.constexpr, BLOCK_HALF: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_MASK: tl.constexpr, ROTARY: tl.constexpr, SKIP_PADDED_Q: tl.constexpr,
    EVEN_M: tl.constexpr, EVEN_N: tl.constexpr, EVEN_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid (cdiv(Tq, BLOCK_M), B * H): padded batches, (B, H, T, D) tensors."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)
    off_h = (off_bh % H).to(tl.int64)
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    o_base = Out + off_b * stride_ob + off_h * stride_oh
    mask_base = Mask + off_b * stride_mb
    cos_base = Cos + off_b * stride_cb
    sin_base = Sin + off_b * stride_cb
    if HAS_MASK:
        kv_end = tl.load(KvLen + off_b)  # one past the last real key of this sequence
    else:
        kv_end = T_K
    q_end = T_Q
    if SKIP_PADDED_Q:
        q_end = kv_end  # self-attention: queries past the last real key are padding
    if start_m * BLOCK_M >= q_end:
        # self-attention: this whole query tile is padding; store finite zeros, compute nothing
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        zero = tl.zeros([BLOCK_M, BLOCK_D], dtype=Out.dtype.element_ty)
        tl.store(o_base + offs_m[:, None] * stride_om + offs_d[None, :], zero,
                 mask=(offs_m[:, None] < T_Q) & (offs_d[None, :] < HEAD_DIM))
    else:
        _attn_fwd_tile(
            q_base, k_base, v_base, o_base, mask_base, cos_base, sin_base,
            stride_qm, stride_kn, stride_vn, stride_om, stride_mn, stride_cm,
            start_m, T_Q, kv_end, qk_scale,
            HEAD_DIM, BLOCK_D, HALF_D, BLOCK_HALF, BLOCK_M, BLOCK_N,
            HAS_MASK, ROTARY, EVEN_M, EVEN_N, EVEN_D, PRECISION,
        )


@triton.jit
def _attn_fwd_varlen(
    Q, K, V, Out, CuSeqlens, Cos, Sin,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_cm,
    H, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HALF_D: tl.constexpr, BLOCK_HALF: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ROTARY: tl.constexpr, EVEN_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid (cdiv(max_seqlen, BLOCK_M), n_seqs * H): packed (total, H, D) tensors; sequence b
    is rows [cu[b], cu[b+1]); rotary positions restart at 0 in each sequence."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // H
    off_h = (off_bh % H).to(tl.int64)
    seq_start = tl.load(CuSeqlens + off_b).to(tl.int64)
    seq_len = (tl.load(CuSeqlens + off_b + 1) - tl.load(CuSeqlens + off_b)).to(tl.int32)
    if start_m * BLOCK_M < seq_len:
        _attn_fwd_tile(
            Q + seq_start * stride_qt + off_h * stride_qh,
            K + seq_start * stride_kt + off_h * stride_kh,
            V + seq_start * stride_vt + off_h * stride_vh,
            Out + seq_start * stride_ot + off_h * stride_oh,
            CuSeqlens, Cos, Sin,
            stride_qt, stride_kt, stride_vt, stride_ot, 0, stride_cm,
            start_m, seq_len, seq_len, qk_scale,
            HEAD_DIM, BLOCK_D, HALF_D, BLOCK_HALF, BLOCK_M, BLOCK_N,
            False, ROTARY, False, False, EVEN_D, PRECISION,
        )


#: True when this module's kernels were defined under TRITON_INTERPRET=1 (they then run on CPU).
INTERPRETED = type(_attn_fwd_padded).__name__ == "InterpretedFunction"


# --------------------------------------------------------------------------- launchers


def _config(head_dim: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for a CUDA launch.

    Fixed from the shapes of the Triton tutorial's non-causal forward (128x64 tiles for fp16/bf16
    at D <= 128); fp32 tiles are smaller.  Compiled offline for sm_80/86/89/90 these need at most
    ~57 KB of shared memory (D <= 128, rotary on or off), within every such GPU's limit; if a
    launch still runs out, :func:`_run_with_fallback` shrinks it.  Untuned on real hardware in this
    project: ``benchmarks/bench_attention.py --sweep`` times the alternatives on a GPU.
    """
    if INTERPRETED:
        return 16, 16, 4, 1  # small tiles: many loop trips and ragged edges, quick under numpy
    if dtype == torch.float32:  # ieee fp32 dots run on FMA units; keep shared memory < 64 KB
        if head_dim <= 64:
            return 64, 32, 4, 2
        return (32, 32, 4, 1) if head_dim <= 128 else (32, 16, 4, 1)
    if head_dim <= 64:
        return 128, 64, 4, 3
    if head_dim <= 128:
        return 128, 64, 8, 3
    return 64, 32, 4, 2


def _run_with_fallback(run, cfg, overridden: bool) -> None:
    """Call ``run(BLOCK_M, BLOCK_N, num_warps, num_stages)``; if the GPU lacks the shared memory
    for that configuration (parts smaller than an H100), retry with fewer stages, then smaller
    tiles.  A configuration the caller chose explicitly is not altered."""
    bm, bn, nw, ns = cfg
    while True:
        try:
            run(bm, bn, nw, ns)
            return
        except OutOfResources as e:
            if overridden:
                raise
            if ns > 1:
                ns -= 1
            elif bn > 16:
                bn //= 2
            elif bm > 16:
                bm //= 2
            else:
                raise
            log.debug("attention: %s; retrying with BLOCK_M=%d BLOCK_N=%d num_stages=%d", e, bm, bn, ns)


def _check_launchable(op: str, q: torch.Tensor, tensors: dict) -> None:
    if q.device.type != "cuda" and not INTERPRETED:
        raise BackendUnavailableError(
            f"{op}: the Triton kernel got {q.device.type} tensors, but it was compiled for CUDA",
            hint="use CUDA tensors, or set TRITON_INTERPRET=1 before importing vareff_kernels.flash_attention",
        )
    reason = attention_unsupported_reason(q, tensors["k"], tensors["v"])
    if reason:
        raise BackendUnavailableError(f"{op}: the Triton kernel does not support {reason}",
                                      hint="use vareff_kernels.attention(..., backend='torch')")
    for name, t in tensors.items():
        if t.device != q.device:
            raise KernelInputError(f"{op}: {name} is on {t.device}, q on {q.device}")
        if t.stride(-1) != 1:
            raise KernelInputError(
                f"{op}: {name} must have a contiguous last (head) dim, got strides {t.stride()}",
                hint="call .contiguous() first (vareff_kernels.attention does this for you)",
            )


def _rotary_tables(rotary, batch: int, t_needed: int, d: int, device, dtype):
    """cos/sin as contiguous (Bc, T, D) in the inputs' dtype, Bc in {1, batch}; returns
    (cos, sin, batch_stride).  The tables are cast to q's dtype as the eager models do (HF ESM /
    NT apply rotary in the activation dtype); fp32 tables would also triple the shared memory the
    pipelined key loop needs on the GPU (180 KB instead of 49 KB at D = 128)."""
    cos, sin = rotary
    if cos.shape != sin.shape:
        raise KernelInputError(f"rotary cos {tuple(cos.shape)} and sin {tuple(sin.shape)} differ")
    if cos.dim() == 2:
        cos, sin = cos[None], sin[None]
    if cos.dim() != 3 or cos.shape[-1] != d or cos.shape[-2] < t_needed or cos.shape[0] not in (1, batch):
        raise KernelInputError(
            f"rotary cos/sin must be (T, D) or (B, T, D) with T >= {t_needed}, D = {d}, got {tuple(rotary[0].shape)}"
        )
    if cos.device != device:
        raise KernelInputError(f"rotary cos/sin are on {cos.device}, q on {device}")
    cos, sin = cos.to(dtype).contiguous(), sin.to(dtype).contiguous()
    return cos, sin, (cos.stride(0) if cos.shape[0] > 1 else 0)


def _dims(d: int):
    block_d = max(16, triton.next_power_of_2(d))
    half = d // 2
    block_half = max(16, triton.next_power_of_2(half))
    return block_d, half, block_half


def attention_fwd(q, k, v, key_padding_mask=None, rotary=None, scale=None, *,
                  block_m=None, block_n=None, num_warps=None, num_stages=None):
    """Triton attention forward on padded batches: q (B, H, Tq, D), k/v (B, H, Tk, D), head dim
    contiguous; key_padding_mask bool (B, Tk), True = real; rotary (cos, sin) (T, D)/(B, T, D).

    Returns (B, H, Tq, D) in q's dtype.  ``block_m``/``block_n``/``num_warps``/``num_stages``
    override the launch configuration (tests, benchmarks).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise KernelInputError("attention_fwd: q, k, v must be 4-D (B, H, T, D)")
    b, h, tq, d = q.shape
    tk = k.shape[2]
    if k.shape != (b, h, tk, d) or v.shape != k.shape:
        raise KernelInputError(
            f"attention_fwd: shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    _check_launchable("attention_fwd", q, {"q": q, "k": k, "v": v})
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    block_d, half, block_half = _dims(d)
    bm, bn, nw, ns = _config(d, q.dtype)
    overridden = any(x is not None for x in (block_m, block_n, num_warps, num_stages))
    bm, bn = block_m or bm, block_n or bn
    nw, ns = num_warps or nw, num_stages or ns

    out = torch.empty((b, h, tq, d), dtype=q.dtype, device=q.device)
    if b == 0 or h == 0 or tq == 0:
        return out

    has_mask = key_padding_mask is not None
    if has_mask:
        if key_padding_mask.shape != (b, tk) or key_padding_mask.dtype != torch.bool:
            raise KernelInputError(
                f"attention_fwd: key_padding_mask must be bool ({b}, {tk}), got "
                f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise KernelInputError("attention_fwd: key_padding_mask is on a different device from q")
        mask = key_padding_mask.view(torch.uint8)
        # one past the last real key per sequence: the kernel never visits keys beyond it
        pos = torch.arange(1, tk + 1, device=q.device, dtype=torch.int32)
        kv_len = (mask.to(torch.int32) * pos).amax(dim=1).to(torch.int32) if tk else \
            torch.zeros(b, dtype=torch.int32, device=q.device)
        stride_mb, stride_mn = mask.stride()
    else:
        mask, kv_len, stride_mb, stride_mn = q, q, 0, 0  # unused placeholders

    has_rot = rotary is not None
    if has_rot:
        cos, sin, stride_cb = _rotary_tables(rotary, b, max(tq, tk), d, q.device, q.dtype)
        stride_cm = cos.stride(1)
    else:
        cos, sin, stride_cb, stride_cm = q, q, 0, 0

    args = (
        q, k, v, out, mask, kv_len, cos, sin,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        stride_mb, stride_mn,
        stride_cb, stride_cm,
        h, tq, tk, scale * _LOG2E,
    )

    def run(kernel_bm, kernel_bn, nw_, ns_):  # EVEN_M / EVEN_N follow the tiles a retry may shrink
        _attn_fwd_padded[(triton.cdiv(tq, kernel_bm), b * h)](
            *args,
            HEAD_DIM=d, BLOCK_D=block_d, HALF_D=half, BLOCK_HALF=block_half,
            BLOCK_M=kernel_bm, BLOCK_N=kernel_bn,
            HAS_MASK=has_mask, ROTARY=has_rot, SKIP_PADDED_Q=has_mask and tq == tk,
            EVEN_M=tq % kernel_bm == 0, EVEN_N=tk % kernel_bn == 0, EVEN_D=d == block_d,
            PRECISION=DOT_PRECISION_FP32,
            num_warps=nw_, num_stages=ns_,
        )

    _run_with_fallback(run, (bm, bn, nw, ns), overridden)
    return out


def attention_varlen_fwd(q, k, v, cu_seqlens, max_seqlen, rotary=None, scale=None, *,
                         block_m=None, block_n=None, num_warps=None, num_stages=None):
    """Triton attention forward on packed sequences: q, k, v (total, H, D), head dim contiguous;
    cu_seqlens int32/int64 (n_seqs + 1,) from 0 to total; rotary (cos, sin) (T, D), positions
    restarting at 0 per sequence.  Returns (total, H, D) in q's dtype."""
    if q.dim() != 3 or q.shape != k.shape or q.shape != v.shape:
        raise KernelInputError(
            f"attention_varlen_fwd: q, k, v must all be (total, H, D), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    _check_launchable("attention_varlen_fwd", q, {"q": q, "k": k, "v": v, "cu_seqlens": cu_seqlens})
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise KernelInputError("attention_varlen_fwd: cu_seqlens must be 1-D int32/int64 with >= 2 entries")
    total, h, d = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    block_d, half, block_half = _dims(d)
    bm, bn, nw, ns = _config(d, q.dtype)
    overridden = any(x is not None for x in (block_m, block_n, num_warps, num_stages))
    bm, bn = block_m or bm, block_n or bn
    nw, ns = num_warps or nw, num_stages or ns
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    n_seqs = cu_seqlens.numel() - 1
    if total == 0 or h == 0 or max_seqlen <= 0:
        return out
    has_rot = rotary is not None
    if has_rot:
        cos, sin, _ = _rotary_tables(rotary, 1, max_seqlen, d, q.device, q.dtype)
        stride_cm = cos.stride(1)
    else:
        cos, sin, stride_cm = q, q, 0
    def run(kernel_bm, kernel_bn, nw_, ns_):
        _attn_fwd_varlen[(triton.cdiv(max_seqlen, kernel_bm), n_seqs * h)](
            q, k, v, out, cu_seqlens, cos, sin,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1),
            stride_cm,
            h, scale * _LOG2E,
            HEAD_DIM=d, BLOCK_D=block_d, HALF_D=half, BLOCK_HALF=block_half,
            BLOCK_M=kernel_bm, BLOCK_N=kernel_bn, ROTARY=has_rot, EVEN_D=d == block_d,
            PRECISION=DOT_PRECISION_FP32,
            num_warps=nw_, num_stages=ns_,
        )

    _run_with_fallback(run, (bm, bn, nw, ns), overridden)
    return out
