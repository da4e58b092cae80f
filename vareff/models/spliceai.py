"""SpliceAI-10k in native PyTorch, built from the published Keras ``.h5`` files.

The five models of the ``spliceai`` wheel are read with h5py only (keras and
tensorflow are never imported).  Each file's ``model_config`` graph is walked
and checked against the layer kinds SpliceAI uses (Conv1D, BatchNormalization,
ReLU, Add, Cropping1D, softmax Conv1D), so a file with another topology is
rejected rather than silently mis-read.

Execution differs from Keras in one respect only: convolutions are *valid*
(no padding) and residual inputs are cropped to match, so a forward pass on an
input of length ``L`` returns the ``L - 2*context`` central outputs.  Those are
exactly the outputs Keras computes from the same input with ``same`` padding
and its final ``Cropping1D(context)``, because the receptive field of each kept
output never reaches the padding (``context`` = 5000 = the receptive field).

Input: one-hot ``(B, 4, L)`` in the order A, C, G, T (N = all zeros).
Output: ``(B, 3, L - 2*context)`` softmax over (neither, acceptor, donor).

Inside, activations are ``(B, C, 1, L)`` in channels-last memory and the convolutions are
``Conv2d`` with ``(1, k)`` kernels: with 32 channels, oneDNN runs these 1.4-1.7x faster on
this project's CPUs than ``Conv1d`` on ``(B, C, L)`` (measured; same arithmetic).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vareff.errors import CheckpointError
from vareff.models.spliceai_files import WHEEL_HINT, weight_checksums, weight_paths, weights_folder
from vareff.models.spliceai_fuse import fuse_graph


@dataclass(frozen=True)
class _Node:
    kind: str  # conv | bn | relu | add | crop | input (+ clamp after folding)
    name: str
    inputs: tuple[str, ...]
    params: dict


def _parse_graph(cfg: dict) -> list[_Node]:
    """Keras functional config -> list of nodes in file order (which is topological)."""
    nodes = []
    for layer in cfg["config"]["layers"]:
        cls, name, c = layer["class_name"], layer["config"]["name"], layer["config"]
        ins = tuple(n[0] for nodes_ in layer["inbound_nodes"] for n in nodes_)
        if cls == "InputLayer":
            nodes.append(_Node("input", name, ins, {}))
        elif cls == "Conv1D":
            if c.get("strides", [1]) != [1]:
                raise CheckpointError(f"SpliceAI layer {name}: strided convolution is not supported")
            act = c["activation"]
            if act not in ("linear", "softmax"):
                raise CheckpointError(f"SpliceAI layer {name}: unexpected activation {act!r}")
            nodes.append(_Node("conv", name, ins, dict(
                k=c["kernel_size"][0], dil=c["dilation_rate"][0], padding=c["padding"], softmax=act == "softmax")))
        elif cls == "BatchNormalization":
            nodes.append(_Node("bn", name, ins, dict(eps=float(c["epsilon"]))))
        elif cls == "Activation":
            if c["activation"] != "relu":
                raise CheckpointError(f"SpliceAI layer {name}: unexpected activation {c['activation']!r}")
            nodes.append(_Node("relu", name, ins, {}))
        elif cls == "Add":
            nodes.append(_Node("add", name, ins, {}))
        elif cls == "Cropping1D":
            a, b = c["cropping"]
            nodes.append(_Node("crop", name, ins, dict(left=a, right=b)))
        else:
            raise CheckpointError(f"SpliceAI file has an unsupported layer {cls} ({name})", WHEEL_HINT)
    return nodes


class SpliceAIModel(nn.Module):
    """One SpliceAI network executed as its Keras graph, with valid convolutions."""

    def __init__(self, nodes: list[_Node], weights: dict[str, dict[str, np.ndarray]], *, fuse: bool = True):
        super().__init__()
        self.convs = nn.ModuleDict()
        if fuse:  # BatchNorms folded into the convolutions (see vareff.models.spliceai_fuse)
            nodes, fused, clamps = fuse_graph(nodes, weights)
            for name, lo in clamps.items():
                self.register_buffer(f"clamp_lo_{name}", torch.from_numpy(lo.astype(np.float32))[None, :, None, None])
        else:
            fused = {n.name: (weights[n.name]["kernel"].transpose(2, 1, 0), weights[n.name]["bias"])
                     for n in nodes if n.kind == "conv"}
        self.nodes = nodes
        for n in nodes:
            if n.kind == "conv":
                f = fused[n.name]
                kernel, bias = (f.kernel, f.bias) if fuse else f
                kernel = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))  # (out, in, k)
                conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], (1, kernel.shape[2]), dilation=(1, n.params["dil"]))
                conv.weight.data.copy_(kernel[:, :, None, :])  # (out, in, 1, k)
                conv.bias.data.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
                self.convs[n.name] = conv.to(memory_format=torch.channels_last)
            elif n.kind == "bn":
                w = weights[n.name]
                scale = w["gamma"] / np.sqrt(w["moving_variance"] + n.params["eps"])
                shift = w["beta"] - w["moving_mean"] * scale
                self.register_buffer(f"bn_scale_{n.name}", torch.from_numpy(scale.astype(np.float32))[:, None, None])
                self.register_buffer(f"bn_shift_{n.name}", torch.from_numpy(shift.astype(np.float32))[:, None, None])
        self.context = self._check_context()
        self._packed: dict[str, torch.Tensor] = {}  # see :meth:`prepack`
        # free each intermediate after its last use (the graph has ~125 nodes of (B, 32, L) floats)
        last_use: dict[str, int] = {}
        for j, n in enumerate(nodes):
            for i in n.inputs:
                last_use[i] = j
        self._free_after = [[i for i in dict.fromkeys(n.inputs) if last_use[i] == j] for j, n in enumerate(nodes)]
        n_uses: dict[str, int] = {}
        for n in nodes:
            for i in n.inputs:
                n_uses[i] = n_uses.get(i, 0) + 1
        # an add may write into its first input when that is a convolution's output (a tensor of
        # its own, not a view of another node's value) that nothing else reads
        kind = {n.name: n.kind for n in nodes}
        self._add_in_place = {n.name for n in nodes if n.kind == "add" and n_uses[n.inputs[0]] == 1
                              and kind[n.inputs[0]] == "conv" and n.inputs[0] not in n.inputs[1:]}
        #: nodes whose reference values a cone may read (inputs of convolutions, adds and crops)
        self.cone_inputs = frozenset(i for n in nodes if n.kind in ("conv", "add", "crop") for i in n.inputs)

    def prepack(self) -> None:
        """On a CPU with oneDNN, in float32: store each convolution's weights in oneDNN's blocked
        layout once, instead of reordering them on every call, and run the ReLU that follows a
        convolution as its post-op (same floats: measured bit-identical, both orders round the
        same sums).  Other devices and dtypes keep the plain ``Conv2d`` path."""
        self._packed = {}
        ws = [c.weight for c in self.convs.values()]
        if not (torch.backends.mkldnn.is_available() and all(w.device.type == "cpu" and w.dtype == torch.float32
                                                              for w in ws)):
            return
        packed = {}
        try:
            for name, conv in self.convs.items():
                w, dil = conv.weight.detach(), list(conv.dilation)
                packed[name] = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    w.contiguous().to_mkldnn(), [0, 0], [1, 1], dil, 1,
                    [32, w.shape[1], 1, 4096 + (w.shape[-1] - 1) * dil[1]])
        except (RuntimeError, AttributeError, NotImplementedError):  # a build without these oneDNN ops
            return
        self._packed = packed

    def _check_context(self) -> int:
        """Receptive-field half-width; must equal the final cropping for valid execution."""
        trim: dict[str, int] = {}
        crop = 0
        for n in self.nodes:
            if n.kind == "input":
                trim[n.name] = 0
            elif n.kind == "conv":
                t = trim[n.inputs[0]] + (n.params["k"] - 1) // 2 * n.params["dil"]
                if n.params["k"] % 2 == 0:
                    raise CheckpointError(f"SpliceAI layer {n.name}: even kernel width is not supported")
                trim[n.name] = t
            elif n.kind == "add":
                trim[n.name] = max(trim[i] for i in n.inputs)
            elif n.kind == "crop":
                if n.params["left"] != n.params["right"]:
                    raise CheckpointError("SpliceAI cropping must be symmetric")
                crop = n.params["left"]
                if trim[n.inputs[0]] > crop:
                    raise CheckpointError("SpliceAI receptive field exceeds its cropping")
                trim[n.name] = crop
            else:
                trim[n.name] = trim[n.inputs[0]]
        self._trim = trim
        return crop

    def _node(self, n: _Node, xs: list[torch.Tensor], in_place: bool = True) -> torch.Tensor:
        """One node on already-aligned inputs (for ``add``: inputs cropped to the same span)."""
        if n.kind == "conv":
            pw = self._packed.get(n.name) if self._packed and xs[0].dtype == torch.float32 else None
            if pw is not None:  # oneDNN with its weights in their blocked layout already and the ReLU fused
                conv = self.convs[n.name]
                y = torch.ops.mkldnn._convolution_pointwise(
                    xs[0], pw, conv.bias, [0, 0], [1, 1], list(conv.dilation), 1,
                    "relu" if n.params.get("relu") else "none", [], "")
            else:
                y = self.convs[n.name](xs[0])
                if n.params.get("relu"):
                    return y.relu_()
            return torch.softmax(y, dim=1) if n.params["softmax"] else y
        if n.kind == "clamp":
            return torch.clamp(xs[0], min=getattr(self, f"clamp_lo_{n.name}"))
        if n.kind == "bn":
            return xs[0] * getattr(self, f"bn_scale_{n.name}") + getattr(self, f"bn_shift_{n.name}")
        if n.kind == "relu":
            return F.relu(xs[0])
        if n.kind == "add":
            acc = xs[0]
            if in_place and n.name in self._add_in_place and acc.is_contiguous(memory_format=torch.channels_last):
                for v in xs[1:]:
                    acc.add_(v)
                return acc
            for v in xs[1:]:
                acc = acc + v
            return acc
        raise AssertionError(n.kind)

    def forward(self, x: torch.Tensor, kept: "dict[str, torch.Tensor] | None" = None) -> torch.Tensor:
        """Valid pass: (B, 4, L) -> (B, 3, L - 2*context).

        ``kept``: optional dict, filled with the whole value of every node a cone may read
        (:attr:`cone_inputs`), as computed (no copy): node ``m``'s value ``i`` is at input
        position ``i + trim[m]``.  Those values are then not overwritten in place.
        """
        vals: dict[str, torch.Tensor] = {}
        trim = self._trim
        keep = self.cone_inputs if kept is not None else frozenset()
        out = None
        for j, n in enumerate(self.nodes):
            if n.kind == "input":
                v = _to4d(x)
            elif n.kind == "crop":
                c = trim[n.name] - trim[n.inputs[0]]
                v = vals[n.inputs[0]]
                v = v if c == 0 else v[..., c:v.shape[-1] - c]
            else:
                t = trim[n.name]
                xs = []
                for i in n.inputs:
                    c = t - trim[i] if n.kind == "add" else 0
                    xs.append(vals[i] if c == 0 else vals[i][..., c:vals[i].shape[-1] - c])
                v = self._node(n, xs, in_place=n.inputs[0] not in keep)
            vals[n.name] = out = v
            if n.name in keep:
                kept[n.name] = v
            for i in self._free_after[j]:
                del vals[i]
        return out.squeeze(2)

    def cone_geometry(self, W: int, v0: int, ref_len: int, alt_len: int) -> "ConeGeometry":
        """Which activations an allele changes, for a reference window of length ``W``.

        The alt window is the reference window with bases [v0, v0 + ref_len) replaced by
        ``alt_len`` bases (length ``W + alt_len - ref_len``).  ``cone`` (alt coordinates):
        per node, the span whose values differ from the reference and are recomputed.
        Alt positions left of a cone equal the reference at the same index, positions right of it
        the reference shifted by ``alt_len - ref_len`` (:meth:`forward_cone` reads them there).
        """
        delta = alt_len - ref_len
        Wa = W + delta
        cone: dict[str, tuple[int, int]] = {}
        for n in self.nodes:
            t = self._trim[n.name]
            if n.kind == "input":
                cone[n.name] = (v0, v0 + alt_len)
                continue
            ins = [cone[i] for i in n.inputs]
            lo, hi = min(c[0] for c in ins), max(c[1] for c in ins)
            h = (n.params["k"] - 1) // 2 * n.params["dil"] if n.kind == "conv" else 0
            lo, hi = max(lo - h, t), min(hi + h, Wa - t)
            if lo >= hi:
                raise CheckpointError("SpliceAI cone geometry: the allele changes no output (window too small)")
            cone[n.name] = (lo, hi)
        last = self.nodes[-1].name
        if cone[last] != (self._trim[last], Wa - self._trim[last]):
            raise CheckpointError("SpliceAI cone geometry: the cone does not cover every output")
        return ConeGeometry(W, v0, ref_len, alt_len, cone)

    def forward_cone(self, alt: torch.Tensor, refs: "list[tuple[dict[str, torch.Tensor], int]]",
                     geom: "ConeGeometry") -> torch.Tensor:
        """Alt outputs from only the activations the allele changes.

        ``alt``: (B, 4, alt_len) one-hot alt bases; ``refs``: per row, the ``kept`` values of a
        reference pass (:meth:`forward`) and the offset of the row's reference window in that
        pass's input.  Reference values are read from those tensors directly (no per-site copy).
        Returns (B, 3, W + alt_len - ref_len - 2*context), equal to a valid pass over the whole
        alt window.
        """
        vals: dict[str, torch.Tensor] = {}
        cone, delta, trim = geom.cone, geom.alt_len - geom.ref_len, self._trim
        out = None

        def take(m: str, lo: int, hi: int) -> torch.Tensor:
            c_lo, c_hi = cone[m]
            v = vals[m]
            if c_lo <= lo and hi <= c_hi:
                return v[..., lo - c_lo: hi - c_lo]
            x = torch.empty((v.shape[0], v.shape[1], 1, hi - lo), dtype=v.dtype, device=v.device,
                            memory_format=torch.channels_last)
            a, b = max(lo, c_lo), min(hi, c_hi)
            if a < b:
                x[..., a - lo: b - lo] = v[..., a - c_lo: b - c_lo]
            left, right = (lo, min(hi, c_lo)), (max(lo, c_hi), hi)
            for r, (kept, off) in enumerate(refs):
                s = off - trim[m]
                r_m = kept[m]
                if left[0] < left[1]:  # left of the cone: reference, same coordinates
                    x[r, :, :, : left[1] - lo] = r_m[0, :, :, left[0] + s: left[1] + s]
                if right[0] < right[1]:  # right of the cone: reference shifted by the length change
                    x[r, :, :, right[0] - lo:] = r_m[0, :, :, right[0] - delta + s: right[1] - delta + s]
            return x

        for j, n in enumerate(self.nodes):
            lo, hi = cone[n.name]
            if n.kind == "input":
                v = _to4d(alt)
            elif n.kind == "conv":
                h = (n.params["k"] - 1) // 2 * n.params["dil"]
                v = self._node(n, [take(n.inputs[0], lo - h, hi + h)])
            elif n.kind == "add":
                v = self._node(n, [take(i, lo, hi) for i in n.inputs])
            elif n.kind == "crop":
                v = take(n.inputs[0], lo, hi)
            else:
                v = self._node(n, [vals[n.inputs[0]]])
            vals[n.name] = out = v
            for i in self._free_after[j]:
                del vals[i]
        return out.squeeze(2)


def _to4d(x: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (B, C, 1, L) in channels-last memory."""
    return x[:, :, None, :].contiguous(memory_format=torch.channels_last)


@dataclass
class ConeGeometry:
    """See :meth:`SpliceAIModel.cone_geometry`."""

    W: int
    v0: int
    ref_len: int
    alt_len: int
    cone: dict[str, tuple[int, int]]


class SpliceAIEnsemble(nn.Module):
    """The mean of the five published models' outputs, as the official scorer computes it."""

    def __init__(self, models: list[SpliceAIModel], checksums: list[str]):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.checksums = checksums
        ctx = {m.context for m in models}
        if len(ctx) != 1:
            raise CheckpointError("SpliceAI models disagree on their context width")
        self.context = ctx.pop()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = None
        for m in self.members:
            y = m(x).float()
            acc = y if acc is None else acc + y
        return acc / len(self.members)


def _read_h5(path: Path) -> tuple[list[_Node], dict[str, dict[str, np.ndarray]]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            cfg = f.attrs["model_config"]
            cfg = json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg)
            mw = f["model_weights"] if "model_weights" in f else f
            weights: dict[str, dict[str, np.ndarray]] = {}
            for lname in mw:
                grp = mw[lname]
                arrays: dict[str, np.ndarray] = {}

                def visit(name, obj, arrays=arrays):
                    if isinstance(obj, h5py.Dataset):
                        arrays[name.rsplit("/", 1)[-1].split(":")[0]] = obj[()]

                grp.visititems(visit)
                if arrays:
                    weights[lname] = arrays
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"cannot read SpliceAI weights {str(path)!r}: {e}", WHEEL_HINT) from None
    nodes = _parse_graph(cfg)
    for n in nodes:
        need = {"conv": {"kernel", "bias"}, "bn": {"gamma", "beta", "moving_mean", "moving_variance"}}.get(n.kind)
        if need and not need <= set(weights.get(n.name, {})):
            raise CheckpointError(f"{path.name}: layer {n.name} lacks weights {sorted(need - set(weights.get(n.name, {})))}")
    return nodes, weights


def load_spliceai(weights_dir: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> SpliceAIEnsemble:
    """Load ``spliceai1.h5`` … ``spliceai5.h5`` (default: from the installed wheel) as one ensemble.

    Loaded ensembles are cached per (folder, device, dtype) for repeated API calls.
    """
    return _load_cached(str(weights_folder(weights_dir)), str(device), dtype)


@functools.lru_cache(maxsize=2)
def _load_cached(folder: str, device: str, dtype: torch.dtype) -> SpliceAIEnsemble:
    d = weights_folder(folder)
    models = [SpliceAIModel(*_read_h5(p)) for p in weight_paths(d)]
    ens = SpliceAIEnsemble(models, list(weight_checksums(str(d)))).eval().to(device=device, dtype=dtype)
    for m in ens.members:
        m.prepack()
    return ens
