"""Selective low-precision policies for :class:`~vareff.models.bert.BertMaskedLM` (docs/grover.md 6.7).

A policy names the matmul groups that run in bfloat16 (``qkv``, ``attn_out``, ``fc1``, ``fc2`` in
each encoder layer, ``head`` = the MLM head transform), optionally only in some encoder layers, and
whether the attention (scores, softmax, context) runs in float32 when QKV is bfloat16.  Everything
else (embeddings, residual stream, LayerNorms, vocabulary projection) stays float32, as in every
precision of the model.  oneDNN's bfloat16 matmuls accumulate in float32 and round the output once
(checked by ``benchmarks/bench_grover.py --attribute``), so a bfloat16 group rounds its weights,
its input and its output.

The policies exist to find which parts cause plain bfloat16's LLR error and what each costs
(``bench_grover.py --attribute``); a policy is applied to a float32 model and is not reversible
in place (reload the weights to change it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GROUPS", "MatmulPolicy", "POLICIES", "FLOAT32", "apply_policy"]

#: matmul groups: the four encoder projections of every layer and the MLM head transform
GROUPS = ("qkv", "attn_out", "fc1", "fc2", "head")
_ENCODER = ("qkv", "attn_out", "fc1", "fc2")


@dataclass(frozen=True)
class MatmulPolicy:
    """Which matmuls run in a low-precision dtype; the rest of the model stays float32.

    Parameters
    ----------
    groups : frozenset of str
        Members of :data:`GROUPS` run in low precision.
    layers : (int, int) or None
        ``(start, stop)`` slice of encoder layers the encoder groups apply to (negative stop counts
        from the end: ``(0, -2)`` = all but the last two); None = every layer.
    attention_fp32 : bool
        Cast q, k, v to float32 before the attention (scores, softmax, context in float32).
    """

    groups: frozenset
    layers: tuple[int, int] | None = None
    attention_fp32: bool = False

    def layer_in(self, i: int, n_layers: int) -> bool:
        if self.layers is None:
            return True
        return i in range(n_layers)[slice(*self.layers)]


def _p(*groups: str, layers=None, attention_fp32: bool = False) -> MatmulPolicy:
    return MatmulPolicy(frozenset(groups), layers, attention_fp32)


#: no group in low precision: applying it clears any earlier policy or split weights
FLOAT32 = MatmulPolicy(frozenset())

#: named policies (``bench_grover.py --attribute --policies``); ``bf16`` equals plain bfloat16
POLICIES: dict[str, MatmulPolicy] = {
    "bf16": _p(*GROUPS),
    "bf16-fp32-attention": _p(*GROUPS, attention_fp32=True),
    "bf16-no-head": _p(*_ENCODER),
    "bf16-not-last2": _p(*_ENCODER, layers=(0, -2)),
    "bf16-not-first2": _p(*_ENCODER, layers=(2, None)),
    "bf16-ffn": _p("fc1", "fc2"),
    "bf16-attn-proj": _p("qkv", "attn_out"),
    "bf16-ffn-no-first2": _p("fc1", "fc2", layers=(2, None)),
    "only-qkv": _p("qkv"),
    "only-attn-out": _p("attn_out"),
    "only-fc1": _p("fc1"),
    "only-fc2": _p("fc2"),
    "only-head": _p("head"),
}


def apply_policy(module, policy: MatmulPolicy, dtype: torch.dtype = torch.bfloat16):
    """Cast the matmul weights ``policy`` names to ``dtype`` on a float32 ``BertMaskedLM`` (in place).

    Any ``mixed`` split weights are dropped first.  Raises ``ValueError`` if the module is not
    float32 (a weight rounded once cannot be restored: reload it).
    """
    if any(p.dtype != torch.float32 for p in module.parameters()):
        raise ValueError("apply_policy needs a float32 model (reload the weights to change the policy)")
    n = len(module.layers)
    for i, layer in enumerate(module.layers):
        inside = policy.layer_in(i, n)
        for g in _ENCODER:
            lin = getattr(layer, g)
            for k in ("weight_split", "split_input", "bias_lp"):
                lin.__dict__.pop(k, None)
            if inside and g in policy.groups:
                lin.to(dtype)
        layer.__dict__["attention_fp32"] = policy.attention_fp32
    if "head" in policy.groups:
        module.head_dense.to(dtype)
    return module
