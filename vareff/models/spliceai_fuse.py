"""Fold SpliceAI's BatchNormalizations into its convolutions (inference only).

SpliceAI's residual units are ``BN -> ReLU -> Conv -> BN -> ReLU -> Conv (+ input)``. With
frozen statistics each BN is a per-channel affine ``y = s*x + t``, and the network runs with
*valid* convolutions (no padding), so both kinds of BN fold into convolution weights exactly
in real arithmetic (float results move in the last bits only):

* a BN whose only input is a convolution that feeds nothing else folds into that
  convolution's output: ``W' = s[out] * W``, ``b' = s*b + t``; a ReLU after it runs in place
  on the convolution's output;
* a BN -> ReLU whose ReLU feeds only convolutions, with every ``s > 0``, becomes a per-channel
  clamp: ``relu(s*x + t) = s*max(x, -t/s) + t``, and the affine ``s*z + t`` folds into the
  input side of each following convolution: ``W'[:, i] = W[:, i] * s[i]``,
  ``b' = b + sum_{i,k} W[:, i, k] * t[i]`` (exact because no padding is read).

The first form removes two element-wise passes (BN) and allocates nothing for the ReLU; the
second replaces three passes (multiply, add, ReLU) by one. Weights are combined in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class FusedConv:
    """A convolution's final float64 kernel (out, in, k) and bias after folding."""

    kernel: np.ndarray
    bias: np.ndarray
    relu: bool = False
    in_fold: list = field(default_factory=list)  # (s, t) pairs folded on the input side
    out_fold: list = field(default_factory=list)  # (s, t) pairs folded on the output side


def _bn_affine(w: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    s = w["gamma"].astype(np.float64) / np.sqrt(w["moving_variance"].astype(np.float64) + eps)
    return s, w["beta"].astype(np.float64) - w["moving_mean"].astype(np.float64) * s


def fuse_graph(nodes: list, weights: dict) -> tuple[list, dict[str, FusedConv], dict[str, np.ndarray]]:
    """Rewrite the parsed Keras graph: returns (nodes, convolutions, clamp lower bounds).

    Output nodes keep the kinds ``input | conv | add | crop`` plus ``clamp`` (per-channel
    ``max(x, lo)``) and any ``bn``/``relu`` that could not be folded (executed as before).
    Conv nodes get ``params['relu']`` when a ReLU runs in place after them.
    """
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n.name)
    by_name = {n.name: n for n in nodes}
    convs = {n.name: FusedConv(np.asarray(weights[n.name]["kernel"], np.float64).transpose(2, 1, 0).copy(),
                               np.asarray(weights[n.name]["bias"], np.float64).copy())
             for n in nodes if n.kind == "conv"}
    rename: dict[str, str] = {}  # removed node -> the node that now yields its value
    drop: set[str] = set()
    clamps: dict[str, np.ndarray] = {}
    clamp_src: dict[str, str] = {}
    relu_on: set[str] = set()
    for n in nodes:
        if n.kind != "bn":
            continue
        s, t = _bn_affine(weights[n.name], n.params["eps"])
        src = by_name[n.inputs[0]]
        outs = consumers.get(n.name, [])
        if src.kind == "conv" and not src.params["softmax"] and consumers[src.name] == [n.name]:
            convs[src.name].out_fold.append((s, t))
            drop.add(n.name)
            rename[n.name] = src.name
            if len(outs) == 1 and by_name[outs[0]].kind == "relu":
                relu_on.add(src.name)
                drop.add(outs[0])
                rename[outs[0]] = src.name
            continue
        if len(outs) == 1 and by_name[outs[0]].kind == "relu" and np.all(s > 0):
            relu = by_name[outs[0]]
            nxt = consumers.get(relu.name, [])
            if nxt and all(by_name[c].kind == "conv" for c in nxt):
                for c in nxt:
                    convs[c].in_fold.append((s, t))
                drop.add(n.name)
                clamps[relu.name] = (-t / s)
                clamp_src[relu.name] = n.inputs[0]
    for name, fc in convs.items():
        for s, t in fc.in_fold:  # relu(s*x + t) feeds the conv: W @ (s*z + t) = (W*s) @ z + W @ t
            fc.bias = fc.bias + np.einsum("oik,i->o", fc.kernel, t)
            fc.kernel = fc.kernel * s[None, :, None]
        for s, t in fc.out_fold:
            fc.kernel = fc.kernel * s[:, None, None]
            fc.bias = fc.bias * s + t
        fc.relu = name in relu_on

    def resolve(i: str) -> str:
        while i in rename:
            i = rename[i]
        return i

    out = []
    for n in nodes:
        if n.name in drop:
            continue
        if n.name in clamps:
            out.append(replace(n, kind="clamp", inputs=(resolve(clamp_src[n.name]),), params={}))
            continue
        params = dict(n.params, relu=n.name in relu_on) if n.kind == "conv" else n.params
        out.append(replace(n, inputs=tuple(resolve(i) for i in n.inputs), params=params))
    return out, convs, clamps
