"""Triton bias + exact GELU and SwiGLU vs the eager float32 references (and the PyTorch path)."""
from __future__ import annotations


import pytest
import torch

pytest.importorskip("triton")

import vareff_kernels as vk  # noqa: E402
from vareff_kernels import activations as act_mod  # noqa: E402
from vareff_kernels import reference as ref  # noqa: E402

import kernel_utils as U  # noqa: E402  (the kernel tests' shared fixture module)

CPU_DTYPES = U.CPU_DTYPES

# bias-GELU: ordinary = GROVER's intermediate size 3072 (several column tiles), odd = 37 columns.
GELU_SHAPES = [("ordinary", (2, 5, 3072)), ("odd", (7, 37))]
# SwiGLU input (..., 2I): ordinary I = 1024 (one full tile), odd I = 37 (masked tail).
SWIGLU_SHAPES = [("ordinary", (3, 4, 2048)), ("odd", (11, 74))]


def check_bias_gelu(device, dtype, shape):
    x = U.randn(*shape, dtype=dtype, device=device, scale=2.0)  # covers the curved region
    bias = U.randn(shape[-1], dtype=dtype, device=device)
    expected = ref.bias_gelu_reference(x, bias)
    out = vk.bias_gelu(x, bias, backend="triton")
    assert out.shape == x.shape and out.dtype == dtype
    U.assert_close_verbose(out, expected, dtype, name=f"triton bias_gelu {shape} {dtype}")
    U.assert_close_verbose(vk.bias_gelu(x, bias, backend="torch"), expected, dtype,
                           name=f"torch bias_gelu {shape} {dtype}")


def check_swiglu(device, dtype, shape):
    x = U.randn(*shape, dtype=dtype, device=device, scale=2.0)
    expected = ref.swiglu_reference(x)
    out = vk.swiglu(x, backend="triton")
    assert out.shape == (*shape[:-1], shape[-1] // 2) and out.dtype == dtype
    U.assert_close_verbose(out, expected, dtype, name=f"triton swiglu {shape} {dtype}")
    U.assert_close_verbose(vk.swiglu(x, backend="torch"), expected, dtype, name=f"torch swiglu {shape} {dtype}")


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("name,shape", GELU_SHAPES, ids=[s[0] for s in GELU_SHAPES])
def test_bias_gelu_matches_reference(name, shape, dtype):
    check_bias_gelu("cpu", dtype, shape)


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("name,shape", SWIGLU_SHAPES, ids=[s[0] for s in SWIGLU_SHAPES])
def test_swiglu_matches_reference(name, shape, dtype):
    check_swiglu("cpu", dtype, shape)


def test_swiglu_gates_the_first_half():
    """silu(first half) * second half, not the other way round (NT v2's convention)."""
    a, g = U.randn(4, 16), U.randn(4, 16)
    out = vk.swiglu(torch.cat([a, g], dim=-1), backend="triton")
    U.assert_close_verbose(out, torch.nn.functional.silu(a) * g, torch.float32, name="first half gated")
    assert not torch.allclose(out, torch.nn.functional.silu(g) * a, atol=1e-3)


def test_bias_gelu_is_exact_erf_not_tanh():
    x = torch.linspace(-4, 4, 257).reshape(1, 257)
    bias = torch.full((257,), 0.25)
    out = vk.bias_gelu(x, bias, backend="triton")
    U.assert_close_verbose(out, torch.nn.functional.gelu(x + bias), torch.float32, name="erf gelu")
    tanh = torch.nn.functional.gelu(x + bias, approximate="tanh")
    assert (out - tanh).abs().max() > 1e-4  # the tanh approximation would be caught


def test_activations_reject_bad_inputs():
    with pytest.raises(vk.KernelInputError, match="last dim must be even"):
        vk.swiglu(U.randn(3, 7), backend="triton")
    with pytest.raises(vk.KernelInputError, match=r"bias must be \(8,\)"):
        vk.bias_gelu(U.randn(3, 8), U.randn(9), backend="triton")
    with pytest.raises(vk.KernelInputError, match="dtype torch.float64"):
        act_mod.swiglu_fwd(U.randn(3, 8).double())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,shape", GELU_SHAPES + [("big", (8, 512, 3072))], ids=lambda s: str(s))
def test_bias_gelu_gpu(name, shape, dtype):
    check_bias_gelu("cuda", dtype, shape)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,shape", SWIGLU_SHAPES + [("nt", (4, 2048, 2 * 4096))], ids=lambda s: str(s))
def test_swiglu_gpu(name, shape, dtype):
    check_swiglu("cuda", dtype, shape)
