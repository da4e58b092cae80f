"""The PyTorch SpliceAI network against an independent Keras-semantics reference, and its cone path."""
from __future__ import annotations

import json

import h5py
import pytest
import torch
import torch.nn.functional as F

from vareff.errors import CheckpointError
from vareff.models.spliceai import _read_h5, load_spliceai
from vareff.models.spliceai_files import wheel_weights_dir


@pytest.fixture(scope="module")
def ensemble():
    return load_spliceai()


def keras_same_forward(path, x: torch.Tensor) -> torch.Tensor:
    """Independent reference: run the h5 graph as Keras does (`same` padding, full length, then crop)."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        mw = f["model_weights"]
        vals, out = {}, None
        for layer in cfg["config"]["layers"]:
            c, name = layer["config"], layer["config"]["name"]
            ins = [vals[n[0]] for nodes in layer["inbound_nodes"] for n in nodes]
            cls = layer["class_name"]
            if cls == "InputLayer":
                v = x
            elif cls == "Conv1D":
                k = torch.from_numpy(mw[name][name]["kernel:0"][()]).permute(2, 1, 0)
                b = torch.from_numpy(mw[name][name]["bias:0"][()])
                v = F.conv1d(ins[0], k, b, padding=c["padding"], dilation=c["dilation_rate"][0])
                if c["activation"] == "softmax":
                    v = torch.softmax(v, dim=1)
            elif cls == "BatchNormalization":
                g = {k: torch.from_numpy(mw[name][name][f"{k}:0"][()])[:, None]
                     for k in ("gamma", "beta", "moving_mean", "moving_variance")}
                v = (ins[0] - g["moving_mean"]) / torch.sqrt(g["moving_variance"] + c["epsilon"]) * g["gamma"] + g["beta"]
            elif cls == "Activation":
                v = torch.relu(ins[0])
            elif cls == "Add":
                v = ins[0] + ins[1]
            elif cls == "Cropping1D":
                a, z = c["cropping"]
                v = ins[0][..., a: ins[0].shape[-1] - z]
            else:
                raise AssertionError(cls)
            vals[name] = out = v
    return out


def _random_onehot(b, length, n_frac=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (b, length), generator=g)
    x = F.one_hot(idx, 4).float().permute(0, 2, 1).contiguous()
    x[torch.rand(b, 1, length, generator=g).expand(b, 4, length) < n_frac] = 0  # some N
    return x


def test_valid_execution_equals_keras_same_padding(ensemble):
    """Valid convolutions + residual cropping give the central outputs Keras computes with padding."""
    path = wheel_weights_dir() / "spliceai3.h5"
    m = ensemble.members[2]
    x = _random_onehot(2, 2 * m.context + 37)
    with torch.inference_mode():
        ours = m(x)
        ref = keras_same_forward(path, x)
    assert ours.shape == ref.shape == (2, 3, 37)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)


CONE_D, CONE_OFFSETS = 20, [0, 7, 130]


@pytest.fixture(scope="module")
def cone_segment(ensemble):
    """One random segment and each window's reference outputs from a plain pass (shared by the
    allele shapes below: only the alt side depends on the shape)."""
    m = ensemble.members[0]
    W = 2 * m.context + 2 * CONE_D + 1
    seg = _random_onehot(1, W + 130, seed=1)
    with torch.inference_mode():
        per_window_ref = m(torch.cat([seg[:, :, o: o + W] for o in CONE_OFFSETS]))
    return seg, per_window_ref


@pytest.mark.parametrize("ref_len,alt_len,v0_shift", [(1, 1, 0), (3, 3, -2), (2, 2, 0), (1, 4, 0), (6, 1, 0),
                                                    (3, 5, -2), (1, 30, 0)])
def test_cone_equals_full_window(ensemble, cone_segment, ref_len, alt_len, v0_shift):
    """Alt outputs from only the changed activations equal a full pass over the alt window
    (substitutions, insertions, deletions, complex alleles)."""
    m = ensemble.members[0]
    D = CONE_D
    W = 2 * m.context + 2 * D + 1
    offsets = CONE_OFFSETS
    seg, per_window_ref = cone_segment
    v0 = m.context + D + v0_shift
    geom = m.cone_geometry(W, v0, ref_len, alt_len)
    g = torch.Generator().manual_seed(2)
    alts = F.one_hot(torch.randint(0, 4, (len(offsets), alt_len), generator=g), 4).float().permute(0, 2, 1)
    with torch.inference_mode():
        kept: dict = {}
        ref_seg = m(seg, kept=kept)
        windows = [seg[:, :, o: o + W] for o in offsets]
        full_in = torch.cat([torch.cat([w[:, :, :v0], alts[i: i + 1], w[:, :, v0 + ref_len:]], dim=2)
                             for i, w in enumerate(windows)])
        full = m(full_in)
        cone = m.forward_cone(alts.contiguous(), [(kept, o) for o in offsets], geom)
    assert cone.shape == full.shape == (3, 3, 2 * D + 1 + alt_len - ref_len)
    torch.testing.assert_close(cone, full, atol=1e-6, rtol=1e-5)
    # the shared segment pass gives each window's reference outputs
    for i, o in enumerate(offsets):
        torch.testing.assert_close(ref_seg[0, :, o: o + 2 * D + 1], per_window_ref[i], atol=1e-6, rtol=1e-5)


def test_ensemble_is_mean_of_members(ensemble):
    x = _random_onehot(1, 2 * ensemble.context + 11, seed=3)
    with torch.inference_mode():
        y = ensemble(x)
        members = torch.stack([m(x) for m in ensemble.members])
    torch.testing.assert_close(y, members.mean(0), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(y.sum(1), torch.ones(1, 11), atol=1e-5, rtol=0)


def test_rejects_unknown_layer(tmp_path):
    src = wheel_weights_dir() / "spliceai1.h5"
    bad = tmp_path / "bad.h5"
    bad.write_bytes(src.read_bytes())
    with h5py.File(bad, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][2]["class_name"] = "LayerNormalization"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(CheckpointError, match="unsupported layer LayerNormalization"):
        _read_h5(bad)


def test_missing_weights_folder(tmp_path):
    with pytest.raises(CheckpointError, match="lacks spliceai1.h5"):
        load_spliceai(tmp_path)


def test_prepacked_convolutions_equal_plain_conv2d(ensemble):
    """Weights prepacked for oneDNN with the ReLU fused: the plain Conv2d path's floats, bit for bit
    (a reference pass with kept activations and a cone from them)."""
    m = ensemble.members[1]
    if not m._packed:
        pytest.skip("no oneDNN on this CPU build")
    x = _random_onehot(1, 2 * m.context + 41, seed=7)
    geom = m.cone_geometry(2 * m.context + 21, m.context + 10, 2, 1)
    alt = _random_onehot(2, 1, seed=8)
    packed = m._packed
    outs = []
    for p in (packed, {}):
        m._packed = p
        try:
            with torch.inference_mode():
                kept: dict = {}
                y = m(x, kept=kept)
                outs.append((y, m.forward_cone(alt, [(kept, 0), (kept, 20)], geom)))
        finally:
            m._packed = packed
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
