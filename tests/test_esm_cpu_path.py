"""The CPU (PyTorch-kernel) fast paths of the NT trunk and the U-Net head vs their unfused references.

* ``vareff_kernels.rotary_torch`` (q and k rotated together, tokens first) vs ``apply_rotary`` on
  the heads-first views and vs the float32 ``attention_reference`` rotary, on random inputs;
* ``EsmLayer``'s PyTorch path vs its kernel-dispatch path (the one the Triton kernels take), same
  weights, float32 (tolerance 1e-5) and bfloat16 matmuls (bfloat16 rounding of q and k only);
* ``unet1d.im2col`` vs pad-and-concatenate, and ``UpBlock.forward_add`` vs ``forward(x) + skip``
  (bit-identical).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vareff.models.esm_trunk as et
import vareff_kernels as vk
from vareff.models.unet1d import UpBlock, im2col
from vareff_kernels import reference as ref


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.bfloat16, 1.6e-2)], ids=str)
@pytest.mark.parametrize("table_dims", [2, 3])
def test_rotary_torch_matches_apply_rotary(dtype, atol, table_dims):
    torch.manual_seed(1)
    B, T, nh, hs = 2, 37, 3, 8
    qkv = torch.randn(B, T, 3, nh, hs).to(dtype)
    cos, sin = vk.rotary_cos_sin(T + 5, hs, base=123.0)  # longer tables than T: sliced
    if table_dims == 3:  # per-sequence tables (B, T, D), made different per batch row
        cos, sin = torch.stack([cos, cos.flip(0)]), torch.stack([sin, sin.flip(0)])
    qk = vk.rotary_torch(qkv[:, :, :2], cos, sin)  # (B, T, 2, nh, hs)
    assert qk.shape == (B, T, 2, nh, hs) and qk.dtype == dtype
    for i in range(2):
        heads_first = qkv[:, :, i].transpose(1, 2)  # (B, nh, T, hs)
        expected = ref.apply_rotary(heads_first, cos, sin)
        got = qk[:, :, i].transpose(1, 2)
        # float32: last-bit agreement; bfloat16: a couple of ulps (atol = rtol = 1.6e-2, as the kernel tests)
        assert ((got.float() - expected.float()).abs() <= atol + atol * expected.float().abs()).all()
        # and the float32 ground truth of the attention reference
        f32 = ref.apply_rotary(heads_first.float(), cos.float(), sin.float())
        assert ((got.float() - f32).abs() <= atol + atol * f32.abs()).all()


def test_rotary_torch_uses_both_table_halves():
    """Tables whose halves differ (not NeoX's cat(f, f)) still give x*cos + rotate_half(x)*sin."""
    torch.manual_seed(2)
    x = torch.randn(1, 9, 2, 4)
    cos, sin = torch.randn(9, 4), torch.randn(9, 4)
    expected = ref.apply_rotary(x.transpose(1, 2), cos, sin).transpose(1, 2)
    assert torch.allclose(vk.rotary_torch(x, cos, sin), expected, atol=1e-6)


def _model(gated: bool):
    cfg = et.EsmConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                       max_position_embeddings=200, position_embedding_type="rotary" if gated else "absolute",
                       gated_ffn=gated, ffn_bias=not gated, rescaling_factor=2.0 if gated else None)
    torch.manual_seed(3)
    m = et.EsmMaskedLM(cfg, lm_head=False).eval().requires_grad_(False)
    for p in m.parameters():
        p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("gated", [True, False], ids=["nt-v2", "nt-v1"])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)], ids=str)
def test_layer_torch_path_matches_the_dispatch_path(gated, dtype, atol, monkeypatch):
    m = _model(gated).set_compute_dtype(dtype)
    ids = torch.randint(4, 40, (2, 61))
    mask = torch.ones_like(ids)
    mask[1, 50:] = 0  # padding in the second sequence
    with torch.inference_mode():
        assert et._torch_kernels(torch.zeros(1))  # CPU under 'auto': the PyTorch path
        x0 = m.embed(ids, mask)
        before = x0.clone()
        fast = m.encode(ids, mask)
        monkeypatch.setattr(et, "_torch_kernels", lambda x: False)
        slow = m.encode(ids, mask)
        m.layers[0](x0, mask.bool(), None if not gated else vk.rotary_cos_sin(61, 8))
    assert torch.equal(x0, before)  # a layer never writes into its input
    real = mask.bool()
    diff = (fast - slow).abs()[real].max().item()
    assert diff <= atol, diff
    assert torch.isfinite(fast).all()


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("T", [1, 2, 7])
def test_im2col_matches_pad_and_cat(k, T):
    x = torch.randn(2, T, 5)
    xp = F.pad(x, (0, 0, k // 2, k // 2))
    expected = torch.cat([xp[:, j:j + T] for j in range(k)], dim=-1)
    assert torch.equal(im2col(x, k), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_up_block_forward_add_matches_forward_plus_skip(dtype):
    torch.manual_seed(4)
    block = UpBlock(6, 4, 2, 3).eval().to(dtype)
    x = torch.randn(2, 5, 6).to(dtype)
    skip = torch.randn(2, 10, 4).to(dtype)
    with torch.inference_mode():
        expected = block(x) + skip
        got = block.forward_add(x, skip.clone())
    assert torch.equal(got, expected)
