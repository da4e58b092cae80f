"""The 1D U-Net segmentation head of SegmentNT (the head only; the trunk is :mod:`vareff.models.esm_trunk`).

Published architecture (InstaDeep ``UNET1DSegmentationHead``)::

    x: (B, T, C_in)  channels last               T divisible by 2^levels
    down i (i = 0..levels-1):  [Conv1d(k3, same) -> SiLU] x n  -> skip_i ;  AvgPool(2, 2)
    up   j (j = 0..levels-1):  [ConvTranspose1d(k3, stride 1, pad 1) -> SiLU] x n ;
                               nearest x2 upsample ;  + skip_{levels-1-j}
    final:                     [Conv1d(k3, same) -> SiLU] x (n-1) ; Conv1d(k3, same)   (no activation)
    -> (B, T, C_out)

Channels: level i has ``channels[i]`` (SegmentNT: C, 2C); up block j maps ``channels[-1]`` (j = 0)
or ``channels[-j]`` to ``channels[-1-j]``; the final block maps ``channels[0]`` to ``out_channels``
(SegmentNT: 2 * (C // 2)).  There is no bottleneck block between the two paths.  Every conv has a
bias.  Weights are kept in torch layout (``Conv1d`` (out, in, k), ``ConvTranspose1d`` (in, out, k)),
but every convolution is computed channels-last as one matrix multiply over the k shifted copies
of the input (im2col): a stride-1 transposed convolution with padding (k-1)/2 is the convolution
with the kernel flipped and in/out swapped.  This keeps the trunk's (B, T, C) layout end to end
and runs the head at GEMM speed in bfloat16 on CPUs, where the conv kernels are slow.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["UNet1DConfig", "UNet1D"]


@dataclass(frozen=True)
class UNet1DConfig:
    """Shape of a 1D U-Net head.

    Parameters
    ----------
    in_channels : int
        Channels of the input (the trunk's hidden size).
    channels : tuple of int
        Output channels of each down level (SegmentNT: ``(C, 2C)``); the number of levels is its length.
    out_channels : int
        Channels of the final block (SegmentNT: ``2 * (C // 2)``).
    convs_per_block : int
        Convolutions per block (2).
    kernel_size : int
        Odd kernel size (3), "same" padding.
    """

    in_channels: int
    channels: tuple[int, ...]
    out_channels: int
    convs_per_block: int = 2
    kernel_size: int = 3

    @property
    def levels(self) -> int:
        return len(self.channels)

    def up_channels(self) -> list[tuple[int, int]]:
        """(in, out) channels of each up block, deepest first."""
        rev = tuple(reversed(self.channels))
        ins = (self.channels[-1],) + rev[:-1]
        return list(zip(ins, rev))


def _convs(cls, c_in: int, c_out: int, n: int, k: int) -> nn.ModuleList:
    return nn.ModuleList(cls(c_in if i == 0 else c_out, c_out, k, padding=k // 2) for i in range(n))


def conv_same(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Stride-1 'same' convolution of channels-last ``x`` (B, T, C_in) -> (B, T, C_out) as one GEMM.

    ``conv`` is an ``nn.Conv1d`` (weight (out, in, k)) or an ``nn.ConvTranspose1d`` with stride 1 and
    padding (k-1)/2 (weight (in, out, k)), which equals the convolution with the flipped kernel.
    """
    w2 = _gemm_weight(conv)  # (C_out, k*C_in)
    return F.linear(im2col(x, conv.kernel_size[0]), w2, conv.bias)  # (B, T, C_out)


def im2col(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, C) -> (B, T, k*C): tap j, channel i at ``j*C + i`` is ``x[:, t + j - k//2, i]`` (zero outside).

    One output buffer written tap by tap (no padded copy, no concatenation).
    """
    B, T, C = x.shape
    p = k // 2
    cols = torch.empty(B, T, k * C, dtype=x.dtype, device=x.device)
    for j in range(k):
        d = j - p  # time offset of tap j
        dst = cols[:, :, j * C:(j + 1) * C]
        lo, hi = max(0, -d), min(T, T - d)  # output rows whose source row t + d lies inside [0, T)
        if hi > lo:
            dst[:, lo:hi].copy_(x[:, lo + d:hi + d])
        dst[:, :max(lo, 0)].zero_()
        dst[:, max(hi, lo):].zero_()
    return cols


def _gemm_weight(conv: nn.Module) -> torch.Tensor:
    """The conv kernel as a (C_out, k*C_in) GEMM matrix (tap-major), cached until the weight changes."""
    w = conv.weight
    key = (w.data_ptr(), w.dtype, w.device, w._version)
    cached = getattr(conv, "_gemm_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if isinstance(conv, nn.ConvTranspose1d):
        w = w.transpose(0, 1).flip(-1)  # (out, in, k): stride-1 transposed conv = conv with flipped kernel
    c_out, c_in, k = w.shape
    w2 = w.permute(0, 2, 1).reshape(c_out, k * c_in).contiguous()  # element [o, j*C_in + i] = w[o, i, j]
    object.__setattr__(conv, "_gemm_cache", (key, w2))  # a plain attribute: not a parameter or buffer
    return w2


class DownBlock(nn.Module):
    """Convs + SiLU, then 2x average pooling; returns (pooled, skip)."""

    def __init__(self, c_in: int, c_out: int, n: int, k: int):
        super().__init__()
        self.convs = _convs(nn.Conv1d, c_in, c_out, n, k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            x = F.silu(conv_same(x, conv), inplace=True)  # (B, L, c_out)
        B, L, C = x.shape
        return x.view(B, L // 2, 2, C).mean(2), x  # (B, L/2, c_out), skip (B, L, c_out)


class UpBlock(nn.Module):
    """Transposed convs + SiLU, then nearest 2x upsampling."""

    def __init__(self, c_in: int, c_out: int, n: int, k: int):
        super().__init__()
        self.convs = _convs(nn.ConvTranspose1d, c_in, c_out, n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.silu(conv_same(x, conv), inplace=True)  # (B, L, c_out)
        return torch.repeat_interleave(x, 2, dim=1)  # (B, 2L, c_out): each position twice

    def forward_add(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``forward(x) + skip`` without the upsampled copy: adds into ``skip`` (B, 2L, c_out) in place and returns it."""
        for conv in self.convs:
            x = F.silu(conv_same(x, conv), inplace=True)  # (B, L, c_out)
        B, L, C = x.shape
        skip.view(B, L, 2, C).add_(x[:, :, None])  # position l of x onto skip rows 2l and 2l+1
        return skip


class FinalBlock(nn.Module):
    """Convs with SiLU between them and none after the last."""

    def __init__(self, c_in: int, c_out: int, n: int, k: int):
        super().__init__()
        self.convs = _convs(nn.Conv1d, c_in, c_out, n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv_same(x, conv)  # (B, L, c_out)
            if i < len(self.convs) - 1:
                x = F.silu(x, inplace=True)
        return x


class UNet1D(nn.Module):
    """1D U-Net, channels last: (B, T, in_channels) -> (B, T, out_channels); T divisible by ``2**levels``."""

    def __init__(self, cfg: UNet1DConfig):
        super().__init__()
        self.cfg = cfg
        n, k = cfg.convs_per_block, cfg.kernel_size
        ins = (cfg.in_channels,) + tuple(cfg.channels[:-1])
        self.down = nn.ModuleList(DownBlock(i, o, n, k) for i, o in zip(ins, cfg.channels))
        self.up = nn.ModuleList(UpBlock(i, o, n, k) for i, o in cfg.up_channels())
        self.final = FinalBlock(cfg.channels[0], cfg.out_channels, n, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T % (2 ** self.cfg.levels):
            raise ValueError(f"U-Net input length {T} is not divisible by 2^{self.cfg.levels}; "
                             f"SegmentNT needs a number of 6-mer tokens divisible by {2 ** self.cfg.levels}")
        skips = []
        for block in self.down:
            x, skip = block(x)
            skips.append(skip)
        for block, skip in zip(self.up, reversed(skips)):
            x = block.forward_add(x, skip)  # (B, L, c): upsampled block output + skip, in the skip's buffer
        return self.final(x)  # (B, T, out_channels)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape (for checkpoint checks)."""
        return {k: tuple(v.shape) for k, v in self.state_dict().items()}

    def flops(self, T: int) -> float:
        """Forward FLOPs at input length T (convolutions only)."""
        total, L = 0.0, T
        cfg = self.cfg
        ins = (cfg.in_channels,) + tuple(cfg.channels[:-1])
        for i, o in zip(ins, cfg.channels):
            total += 2 * L * cfg.kernel_size * (i * o + (cfg.convs_per_block - 1) * o * o)
            L //= 2
        for i, o in cfg.up_channels():
            total += 2 * L * cfg.kernel_size * (i * o + (cfg.convs_per_block - 1) * o * o)
            L *= 2
        c0 = cfg.channels[0]
        total += 2 * L * cfg.kernel_size * (c0 * cfg.out_channels + (cfg.convs_per_block - 1) * cfg.out_channels ** 2)
        return total
