"""Triton attention forward vs the eager float32 reference (and the PyTorch/SDPA path too).

On the CPU the kernels run under the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1
before any kernel module is imported), in fp32 and fp16; the interpreter has no bf16.  The
``gpu``-marked tests repeat the comparisons on CUDA with bf16 and larger shapes.
"""
from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("triton")

import vareff_kernels as vk  # noqa: E402
from vareff_kernels import flash_attention as attn_mod  # noqa: E402
from vareff_kernels import reference as ref  # noqa: E402

import kernel_utils as U  # noqa: E402  (the kernel tests' shared fixture module)

CPU_DTYPES = U.CPU_DTYPES
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (name, B, H, T, D, lengths per sequence, holes): one ordinary shape (tile-aligned under the
# interpreter's 16x16 tiles, GROVER/NT head dim 64) and one deliberately odd one (T=37, D=48 =
# NT-v2-250m's head dim, ragged lengths incl. a 1-token sequence, and padding holes mid-sequence).
SHAPES = [
    ("ordinary", 2, 2, 64, 64, [64, 48], False),
    ("odd", 3, 2, 37, 48, [37, 23, 1], True),
]


def make_mask(b, t, lengths, holes, device="cpu"):
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    if holes:  # padding inside a sequence too: the kernel must not assume suffix padding
        mask[0, 3] = False
        mask[0, 17] = False
    return mask.to(device)


def real_rows(mask):
    """(B, 1, T, 1) selector of query rows that are real tokens."""
    return mask[:, None, :, None]


def run_case(device, dtype, shape, rotary_on, check_torch_path=True):
    _, b, h, t, d, lengths, holes = shape
    q, k, v = (U.randn(b, h, t, d, dtype=dtype, device=device) for _ in range(3))
    mask = make_mask(b, t, lengths, holes, device)
    rotary = vk.rotary_cos_sin(t, d, device=device) if rotary_on else None
    expected = ref.attention_reference(q, k, v, key_padding_mask=mask, rotary=rotary)

    out = vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="triton")
    assert out.dtype == dtype and out.shape == q.shape
    assert torch.isfinite(out).all(), "padded rows must be finite"
    U.assert_close_verbose(out, expected, dtype, rows=real_rows(mask), name=f"triton {shape[0]} {dtype}")

    if check_torch_path:
        out_t = vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="torch")
        assert torch.isfinite(out_t).all()
        atol, rtol = U.TOLERANCES[dtype]
        # the torch path rotates in the input dtype before SDPA: allow twice the kernel tolerance
        U.assert_close_verbose(out_t, expected, atol=2 * atol, rtol=2 * rtol, rows=real_rows(mask),
                               name=f"torch {shape[0]} {dtype}")


@pytest.mark.parametrize("rotary_on", [False, True], ids=["plain", "rotary"])
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s[0])
def test_attention_matches_reference(shape, dtype, rotary_on):
    run_case("cpu", dtype, shape, rotary_on)


@pytest.mark.parametrize("d", [32, 64, 128])
def test_attention_head_dims(d):
    b, h, t = 2, 1, 21
    q, k, v = (U.randn(b, h, t, d) for _ in range(3))
    mask = make_mask(b, t, [21, 9], False)
    rotary = vk.rotary_cos_sin(t, d)
    out = vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="triton")
    expected = ref.attention_reference(q, k, v, key_padding_mask=mask, rotary=rotary)
    U.assert_close_verbose(out, expected, torch.float32, rows=real_rows(mask), name=f"D={d}")


def test_attention_without_mask_and_with_scale():
    q, k, v = (U.randn(2, 3, 37, 32) for _ in range(3))
    out = vk.attention(q, k, v, scale=0.37, backend="triton")
    U.assert_close_verbose(out, ref.attention_reference(q, k, v, scale=0.37), torch.float32)


def test_attention_cross_lengths_and_per_batch_rotary():
    """Tq != Tk, and rotary tables given per batch item (B, T, D)."""
    b, h, d = 2, 2, 32
    q = U.randn(b, h, 19, d)
    k, v = U.randn(b, h, 45, d), U.randn(b, h, 45, d)
    mask = make_mask(b, 45, [45, 30], True)
    cos, sin = vk.rotary_cos_sin(50, d)
    cos_b = torch.stack([cos, cos.roll(5, 0)])
    sin_b = torch.stack([sin, sin.roll(5, 0)])
    out = vk.attention(q, k, v, key_padding_mask=mask, rotary=(cos_b, sin_b), backend="triton")
    expected = ref.attention_reference(q, k, v, key_padding_mask=mask, rotary=(cos_b, sin_b))
    U.assert_close_verbose(out, expected, torch.float32, name="cross")  # every query row is real


def test_attention_noncontiguous_view_and_all_padding_sequence():
    """q/k/v as transposed views of (B, T, H, D) projections; one sequence entirely padding."""
    b, t, h, d = 2, 37, 2, 32
    x = [U.randn(b, t, h, d).transpose(1, 2) for _ in range(3)]
    mask = make_mask(b, t, [30, 0], False)
    out = vk.attention(*x, key_padding_mask=mask, backend="triton")
    assert torch.isfinite(out).all()
    expected = ref.attention_reference(*x, key_padding_mask=mask)
    U.assert_close_verbose(out, expected, torch.float32, rows=real_rows(mask), name="view")
    out_t = vk.attention(*x, key_padding_mask=mask, backend="torch")
    assert torch.isfinite(out_t).all()


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_attention_varlen_matches_padded_reference(dtype):
    lengths = [5, 37, 12, 1]
    h, d = 2, 32
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    total = int(cu[-1])
    q, k, v = (U.randn(total, h, d, dtype=dtype) for _ in range(3))
    rotary = vk.rotary_cos_sin(40, d)
    out = vk.attention_varlen(q, k, v, cu, max(lengths), rotary=rotary, backend="triton")
    assert out.shape == q.shape and out.dtype == dtype
    for i, n in enumerate(lengths):  # each sequence alone, positions from 0
        sl = slice(int(cu[i]), int(cu[i + 1]))
        per = [x[sl].transpose(0, 1)[None] for x in (q, k, v)]
        expected = ref.attention_reference(*per, rotary=rotary)[0].transpose(0, 1)
        U.assert_close_verbose(out[sl], expected, dtype, name=f"varlen seq {i} (len {n})")
    out_t = vk.attention_varlen(q, k, v, cu, max(lengths), rotary=rotary, backend="torch")
    U.assert_close_verbose(out_t.float(), out.float(), atol=3 * U.TOLERANCES[dtype][0],
                           rtol=3 * U.TOLERANCES[dtype][1], name="varlen torch vs triton")


def test_fp32_dots_pinned_to_ieee():
    """Every tl.dot in the attention kernel passes the pinned precision; the pin is 'ieee', so fp32
    inputs on a GPU are never silently computed in TF32 (the GPU tests check the numbers)."""
    import inspect

    src = inspect.getsource(attn_mod)
    dots = re.findall(r"tl\.dot\(", src)
    pinned = re.findall(r"tl\.dot\([^\n]*input_precision=PRECISION\)", src)
    assert len(dots) >= 3 and len(pinned) == len(dots)
    assert attn_mod.DOT_PRECISION_FP32 == "ieee"
    assert "PRECISION=DOT_PRECISION_FP32" in src


def test_launcher_rejects_bad_inputs_clearly():
    q = U.randn(1, 2, 8, 32)
    with pytest.raises(vk.KernelInputError, match="shapes do not match"):
        attn_mod.attention_fwd(q, U.randn(1, 2, 8, 16), U.randn(1, 2, 8, 16))
    with pytest.raises(vk.KernelInputError, match="contiguous last"):
        attn_mod.attention_fwd(q, q.transpose(2, 3).contiguous().transpose(2, 3), q)
    with pytest.raises(vk.KernelInputError, match="key_padding_mask must be bool"):
        attn_mod.attention_fwd(q, q, q, key_padding_mask=torch.ones(1, 8, dtype=torch.int64))
    with pytest.raises(vk.KernelInputError, match="rotary cos/sin must be"):
        attn_mod.attention_fwd(q, q, q, rotary=vk.rotary_cos_sin(4, 32))
    with pytest.raises(vk.KernelInputError, match="key_padding_mask must be"):
        vk.attention(q, q, q, key_padding_mask=torch.ones(1, 7, dtype=torch.bool))


# --------------------------------------------------------------------------- GPU set


@pytest.mark.gpu
@pytest.mark.parametrize("rotary_on", [False, True], ids=["plain", "rotary"])
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [("grover", 4, 12, 512, 64, [512, 400, 301, 97], False),
                                            ("nt", 2, 16, 1003, 64, [1003, 777], True)],
                         ids=lambda s: s[0])
def test_attention_gpu(shape, dtype, rotary_on):
    run_case("cuda", dtype, shape, rotary_on)


@pytest.mark.gpu
@pytest.mark.parametrize("d", [32, 48, 64, 80, 128])
def test_attention_gpu_head_dims(d):
    b, h, t = 2, 4, 300
    q, k, v = (U.randn(b, h, t, d, dtype=torch.float16, device="cuda") for _ in range(3))
    mask = make_mask(b, t, [300, 211], True, "cuda")
    rotary = vk.rotary_cos_sin(t, d, device="cuda")
    out = vk.attention(q, k, v, key_padding_mask=mask, rotary=rotary, backend="triton")
    expected = ref.attention_reference(q, k, v, key_padding_mask=mask, rotary=rotary)
    U.assert_close_verbose(out, expected, torch.float16, rows=real_rows(mask), name=f"gpu D={d}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=str)
def test_attention_varlen_gpu(dtype):
    lengths = [500, 1, 129, 64, 1000]
    h, d = 4, 64
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    total = int(cu[-1])
    q, k, v = (U.randn(total, h, d, dtype=dtype, device="cuda") for _ in range(3))
    rotary = vk.rotary_cos_sin(1000, d, device="cuda")
    out = vk.attention_varlen(q, k, v, cu, 1000, rotary=rotary, backend="triton")
    for i in range(len(lengths)):
        sl = slice(int(cu[i]), int(cu[i + 1]))
        per = [x[sl].transpose(0, 1)[None] for x in (q, k, v)]
        expected = ref.attention_reference(*per, rotary=rotary)[0].transpose(0, 1)
        U.assert_close_verbose(out[sl], expected, dtype, name=f"gpu varlen seq {i}")


def test_launch_shrinks_on_out_of_shared_memory_unless_configured():
    """On a GPU with less shared memory than the default tiles need, the launcher retries with
    fewer stages, then smaller tiles (simulated: no GPU here); explicit configurations are kept."""
    from triton.runtime.errors import OutOfResources

    tried = []

    def run(bm, bn, nw, ns):
        tried.append((bm, bn, nw, ns))
        need = bm * bn * ns * 16
        if need > 64 * 32 * 1 * 16:
            raise OutOfResources(need, 64 * 32 * 16, "shared memory")

    attn_mod._run_with_fallback(run, (128, 64, 4, 3), overridden=False)
    assert tried == [(128, 64, 4, 3), (128, 64, 4, 2), (128, 64, 4, 1), (128, 32, 4, 1), (128, 16, 4, 1)]
    tried.clear()
    with pytest.raises(OutOfResources):
        attn_mod._run_with_fallback(run, (128, 64, 4, 3), overridden=True)
    assert tried == [(128, 64, 4, 3)]
