"""Pieces shared by the model families (BERT, the NT trunk, ...): state-dict helpers and the MLM head.

This module imports no family, so every family may import it (the families never import each other).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["EncoderSizes", "legacy_layernorm_names", "fused_qkv", "take", "linear_shapes", "norm_shapes", "attention_shapes",
           "add_mlm_head", "cast_matmuls"]


@dataclass(frozen=True)
class EncoderSizes:
    """The sizes every transformer-encoder config shares (``transformers`` defaults: BERT-base)."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def legacy_layernorm_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename TF-era ``LayerNorm.gamma/beta`` to ``LayerNorm.weight/bias`` (``transformers`` 5 still writes them)."""
    out = {}
    for k, v in sd.items():
        if k.endswith("LayerNorm.gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith("LayerNorm.beta"):
            k = k[: -len("beta")] + "bias"
        out[k] = v
    return out


def fused_qkv(get: Callable[[str], torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One stacked Q/K/V projection (weight (3C, C), bias (3C,)) from ``<prefix>{query,key,value}.{weight,bias}``."""
    names = ("query", "key", "value")
    return (torch.cat([get(f"{prefix}{n}.weight") for n in names], 0),
            torch.cat([get(f"{prefix}{n}.bias") for n in names], 0))


def take(get: Callable[[str], torch.Tensor], src_prefix: str, dst_prefix: str, names: dict[str, str],
         params: tuple[str, ...] = ("weight", "bias")) -> dict[str, torch.Tensor]:
    """``{dst_prefix + d + "." + p: get(src_prefix + s + "." + p)}`` for every ``d: s`` of ``names`` and ``p`` of ``params``."""
    return {f"{dst_prefix}{d}.{p}": get(f"{src_prefix}{s}.{p}") for d, s in names.items() for p in params}


def add_mlm_head(module: nn.Module, hidden: int, vocab: int, eps: float, tied: bool) -> None:
    """The MLM head parameters of a BERT/RoBERTa-style model: ``head_dense``, ``head_ln``, ``head_bias``
    and ``decoder`` (None when the decoder is tied to the word embeddings)."""
    module.head_dense = nn.Linear(hidden, hidden)
    module.head_ln = nn.LayerNorm(hidden, eps=eps)
    module.head_bias = nn.Parameter(torch.zeros(vocab))
    module.decoder = None if tied else nn.Linear(hidden, vocab, bias=False)


def cast_matmuls(layers, dtype: torch.dtype, *extra: nn.Module) -> None:
    """Cast each layer's ``qkv``, ``attn_out``, ``fc1``, ``fc2`` (and ``extra`` modules) to ``dtype``."""
    for layer in layers:
        for lin in (layer.qkv, layer.attn_out, layer.fc1, layer.fc2):
            lin.to(dtype)
    for m in extra:
        m.to(dtype)


def linear_shapes(name: str, n_out: int, n_in: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    """Hugging Face keys of one ``nn.Linear`` with their shapes."""
    return {f"{name}.weight": (n_out, n_in), **({f"{name}.bias": (n_out,)} if bias else {})}


def norm_shapes(name: str, n: int) -> dict[str, tuple[int, ...]]:
    """Hugging Face keys of one ``nn.LayerNorm`` with their shapes."""
    return {f"{name}.weight": (n,), f"{name}.bias": (n,)}


def attention_shapes(prefix: str, hidden: int) -> dict[str, tuple[int, ...]]:
    """``<prefix>attention.self.{query,key,value}`` and ``<prefix>attention.output.dense`` of a BERT/ESM layer."""
    e: dict[str, tuple[int, ...]] = {}
    for n in ("query", "key", "value"):
        e.update(linear_shapes(f"{prefix}attention.self.{n}", hidden, hidden))
    e.update(linear_shapes(f"{prefix}attention.output.dense", hidden, hidden))
    return e
