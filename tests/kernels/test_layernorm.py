"""Triton residual-add + LayerNorm vs the eager float32 reference (and the PyTorch path)."""
from __future__ import annotations


import pytest
import torch

pytest.importorskip("triton")

import vareff_kernels as vk  # noqa: E402
from vareff_kernels import layernorm as ln_mod  # noqa: E402
from vareff_kernels import reference as ref  # noqa: E402

import kernel_utils as U  # noqa: E402  (the kernel tests' shared fixture module)

CPU_DTYPES = U.CPU_DTYPES

# ordinary: GROVER's hidden size 768 over a (batch, tokens) grid; odd: 37 features (not a power of
# two, masked tail) on rows that are a strided view of a wider tensor.
SHAPES = [("ordinary", (2, 9, 768)), ("odd", (5, 37))]


def make_inputs(shape, dtype, device="cpu", odd_view=False):
    n = shape[-1]
    if odd_view:  # rows with a stride != n: every other column block of a wider tensor
        x = U.randn(*shape[:-1], n + 11, dtype=dtype, device=device)[..., 3:3 + n]
    else:
        x = U.randn(*shape, dtype=dtype, device=device)
    # offset and spread like real activations, so mean and variance both matter
    x = (x * 3 + 1.5).to(dtype)
    r = U.randn(*shape, dtype=dtype, device=device)
    w = (U.randn(n, device=device) * 0.5 + 1).to(dtype)
    b = U.randn(n, dtype=dtype, device=device)
    return x, r, w, b


def check(device, dtype, name, shape, residual_on):
    x, r, w, b = make_inputs(shape, dtype, device, odd_view=name == "odd")
    eps = 1e-12 if name == "ordinary" else 1e-5  # GROVER (BERT) uses 1e-12, NT 1e-5
    res = r if residual_on else None
    y_ref, h_ref = ref.layer_norm_reference(x, w, b, eps, residual=res)

    y, h = vk.layer_norm_residual(x, w, b, eps, residual=res, backend="triton")
    assert y.shape == x.shape and y.dtype == dtype
    U.assert_close_verbose(y, y_ref, dtype, name=f"triton LN {name} {dtype}")
    U.assert_close_verbose(h, h_ref, dtype, name=f"triton residual sum {name} {dtype}")
    y_only = vk.layer_norm(x, w, b, eps, residual=res, backend="triton")
    U.assert_close_verbose(y_only, y_ref, dtype, name=f"triton LN (no sum) {name} {dtype}")

    y_t, h_t = vk.layer_norm_residual(x, w, b, eps, residual=res, backend="torch")
    U.assert_close_verbose(y_t, y_ref, dtype, name=f"torch LN {name} {dtype}")
    U.assert_close_verbose(h_t, h_ref, dtype, name=f"torch residual sum {name} {dtype}")


@pytest.mark.parametrize("residual_on", [True, False], ids=["residual", "plain"])
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("name,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_layer_norm_matches_reference(name, shape, dtype, residual_on):
    check("cpu", dtype, name, shape, residual_on)


def test_layer_norm_without_affine():
    x = U.randn(4, 50) * 2 + 0.7
    y = vk.layer_norm(x, None, None, 1e-5, backend="triton")
    U.assert_close_verbose(y, ref.layer_norm_reference(x, None, None, 1e-5)[0], torch.float32)
    # and against torch's own implementation, an independent second opinion
    U.assert_close_verbose(y, torch.nn.functional.layer_norm(x, (50,), eps=1e-5), torch.float32)


def test_layer_norm_rejects_bad_inputs():
    x = U.randn(3, 8)
    with pytest.raises(vk.KernelInputError, match=r"weight must be \(8,\)"):
        vk.layer_norm(x, U.randn(7), None, 1e-5, backend="triton")
    with pytest.raises(vk.KernelInputError, match="residual must match x"):
        vk.layer_norm(x, None, None, 1e-5, residual=U.randn(3, 9), backend="triton")
    with pytest.raises(vk.KernelInputError, match="dtype torch.float64"):
        ln_mod.layer_norm_fwd(x.double(), None, None, 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("residual_on", [True, False], ids=["residual", "plain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,shape", SHAPES + [("nt2.5b", (8, 1000, 2560))], ids=lambda s: str(s))
def test_layer_norm_gpu(name, shape, dtype, residual_on):
    check("cuda", dtype, name, shape, residual_on)
