"""SegmentNT (NT-v2 trunk + 1D U-Net head) vs an independent reference, on random weights.

The head has no ``transformers`` class: the reference is ``nt_fixtures.reference_segment_head``,
a float64 functional forward written from the published description (explicit conv taps, the
transposed convolution by its scatter definition, reshape-mean pooling, nearest upsampling by the
``jax.image.resize`` index rule).  The trunk reference is ``transformers.EsmForMaskedLM`` with the
gated FFN swapped in and its rotary base set from the published rescaling formula.  Tolerance
1e-4 (fp32) on logits and probabilities.
"""
from __future__ import annotations

import json
import random

import pytest
import torch

import nt_fixtures as nf
from vareff.errors import CheckpointError
from vareff.models.load import load_model
from vareff.models.segment_nt import PUBLISHED_FEATURES, SegmentNT, column_safe
from vareff.models.unet1d import UNet1D, UNet1DConfig

TOL = 1e-4


def draw_dims(seed):
    rng = random.Random(seed)
    nh = rng.choice([2, 4])
    hs = rng.choice([6, 8])
    return dict(hidden_size=nh * hs, num_attention_heads=nh, num_hidden_layers=rng.randint(1, 2),
                intermediate_size=rng.choice([16, 24]))


@pytest.mark.parametrize("channels,levels,T", [(8, 2, 12), (6, 3, 16), (10, 1, 6)])
def test_unet_module_equals_reference(channels, levels, T):
    sd = nf.head_state(channels, 3, levels=levels, seed=channels + levels)
    cfg = UNet1DConfig(in_channels=channels, channels=tuple(channels * 2 ** i for i in range(levels)),
                       out_channels=2 * (channels // 2))
    unet = UNet1D(cfg).eval()
    mine = {k.replace("unet._downsample_blocks.", "down.").replace("unet._upsample_blocks.", "up.")
            .replace("unet.final_block.", "final.").replace(".conv_layers.", ".convs."): v
            for k, v in sd.items() if k.startswith("unet.")}
    unet.load_state_dict(mine, strict=True)
    x = torch.randn(2, 1 + T, channels)  # trunk-shaped input incl. <cls>
    ref = nf.reference_segment_head(x, sd, 3, levels)  # (B, 6T, 3, 2)
    with torch.no_grad():
        y = torch.nn.functional.silu(unet(x[:, 1:]))  # channels last
        got = (y @ sd["fc.weight"].T + sd["fc.bias"]).reshape(2, 6 * T, 3, 2)
    assert (got.double() - ref).abs().max() < TOL


@pytest.mark.parametrize("seed,fmt,n_tokens", [(1, "safetensors", 8), (2, "bin", 20), (3, "safetensors", 12)])
def test_segment_nt_equals_reference(seed, fmt, n_tokens, tmp_path):
    dims = draw_dims(seed)
    hf, head, tok = nf.make_segment_nt(tmp_path, seed=seed, fmt=fmt, **dims)
    m = load_model(tmp_path, device="cpu")
    assert m.family == "segment_nt" and m.features == tuple(nf.FEATURES)
    rng = random.Random(seed)
    seqs = [nf.random_dna(6 * n_tokens, rng) for _ in range(2)]
    ids, am = m.tokenize(seqs)
    out = m.forward(ids, am)
    hs = dims["hidden_size"] // dims["num_attention_heads"]
    h_ref, l_ref, p_ref = nf.reference_segment_nt(hf, head, ids, base=nf.rescaled_base(2.44140625, hs))
    assert out.logits.shape == (2, 6 * n_tokens, 14, 2) and out.probabilities.shape == (2, 6 * n_tokens, 14)
    assert (out.last_hidden_state.double() - h_ref).abs().max() < TOL
    assert (out.logits.double() - l_ref).abs().max() < TOL
    assert (out.probabilities.double() - p_ref).abs().max() < TOL
    assert 0.02 < p_ref.std() and p_ref.min() < 0.3 and p_ref.max() > 0.7  # a non-trivial head


def test_rescaling_applies_at_every_length_and_matters(tmp_path):
    """The training factor 2.44140625 is used for short inputs too; base 10000 would give other outputs."""
    dims = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16)
    hf, head, tok = nf.make_segment_nt(tmp_path, seed=4, **dims)
    m = load_model(tmp_path, device="cpu")
    ids, am = m.tokenize([nf.random_dna(6 * 40, random.Random(4))])
    p = m.forward(ids, am).probabilities.double()
    _, _, p_scaled = nf.reference_segment_nt(hf, head, ids, base=nf.rescaled_base(2.44140625, 16))
    _, _, p_plain = nf.reference_segment_nt(hf, head, ids, base=10000.0)
    assert (p - p_scaled).abs().max() < TOL
    assert (p - p_plain).abs().max() > 30 * TOL
    # the published numbers: base' = 10000 * 2.44140625^(64/62) ~= 25,127 for head size 64
    assert nf.rescaled_base(2.44140625, 64) == pytest.approx(25127.2, abs=0.1)
    assert m.config.backbone.rotary_base() == pytest.approx(nf.rescaled_base(2.44140625, 16), rel=1e-12)


def test_rescaling_beyond_the_training_length_follows_the_notebook(tmp_path):
    """Past the trained length (s * (max_position_embeddings - 2) tokens), s = (T + 1) / (mpe - 2).

    A tiny 'backbone' trained on 16 tokens with s = 2 (trained on 32 DNA tokens) stands in for 2048 / 5000.
    """
    dims = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                max_position_embeddings=18)
    hf, head, tok = nf.make_segment_nt(tmp_path, seed=5, rescaling_factor=2.0, **dims)
    m = load_model(tmp_path, device="cpu")
    for T, s in ((32, 2.0), (36, 37 / 16)):
        ids, am = m.tokenize([nf.random_dna(6 * T, random.Random(T))])
        assert m.config.rescaling_for(T) == pytest.approx(s)
        p = m.forward(ids, am).probabilities.double()
        _, _, p_ref = nf.reference_segment_nt(hf, head, ids, base=nf.rescaled_base(s, 8))
        assert (p - p_ref).abs().max() < TOL, T
        # an explicit factor overrides the rule
        p_fixed = m.forward(ids, am, rescaling_factor=2.0).probabilities.double()
        _, _, p_ref2 = nf.reference_segment_nt(hf, head, ids, base=nf.rescaled_base(2.0, 8))
        assert (p_fixed - p_ref2).abs().max() < TOL


def test_an_optional_lm_head_is_accepted_whole(tmp_path):
    dims = draw_dims(6)
    hf, head, tok = nf.make_segment_nt(tmp_path, seed=6, with_lm_head=True, **dims)
    m = load_model(tmp_path, device="cpu")
    assert m.module.trunk.has_lm_head
    ids, am = m.tokenize([nf.random_dna(48, random.Random(6))])
    h = m.forward(ids, am).last_hidden_state
    with torch.no_grad():
        ref = hf.lm_head(h)
    assert (m.module.trunk.mlm_logits(h) - ref).abs().max() < TOL

    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "model.safetensors"))
    sd.pop("lm_head.dense.bias")
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lm_head.dense.bias"):
        load_model(tmp_path, device="cpu")


def test_head_key_and_shape_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    nf.make_segment_nt(tmp_path, seed=7, **draw_dims(7))
    f = tmp_path / "model.safetensors"
    sd = load_file(str(f))
    w = sd.pop("unet._upsample_blocks.1.conv_layers.0.weight")
    save_file(sd, str(f))
    with pytest.raises(CheckpointError, match="missing 1 key.*_upsample_blocks.1.conv_layers.0.weight"):
        load_model(tmp_path, device="cpu")
    sd["unet._upsample_blocks.1.conv_layers.0.weight"] = w.transpose(0, 1).contiguous()  # Conv1d layout by mistake
    save_file(sd, str(f))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(tmp_path, device="cpu")


def test_window_constraints(tmp_path):
    nf.make_segment_nt(tmp_path, seed=8, **draw_dims(8))
    m = load_model(tmp_path, device="cpu")
    assert m.config.nt_multiple == 24
    ids, am = m.tokenize([nf.random_dna(6 * 10, random.Random(8))])  # 10 tokens: not divisible by 4
    with pytest.raises(ValueError, match="divisible by 4"):
        m.forward(ids, am)


def test_features_and_column_names(tmp_path):
    cfg = json.loads(json.dumps(nf.v2_config_json(nf.hf_esm(**draw_dims(9)), architectures=["SegmentNT"],
                                                   num_features=14, rescaling_factor=2.44140625)))
    from vareff.models.segment_nt import SegmentNTConfig

    assert SegmentNTConfig.from_hf(cfg).features == PUBLISHED_FEATURES  # first upload: num_features only
    names = [column_safe(f) for f in PUBLISHED_FEATURES]
    assert names == ["protein_coding_gene", "lncrna", "exon", "intron", "splice_donor", "splice_acceptor", "5utr",
                     "3utr", "ctcf_bound", "polya_signal", "enhancer_tissue_specific", "enhancer_tissue_invariant",
                     "promoter_tissue_specific", "promoter_tissue_invariant"]
    assert SegmentNT.probabilities(torch.tensor([[0.0, 0.0], [0.0, 2.0]])).tolist() == pytest.approx(
        [0.5, 1 / (1 + torch.exp(torch.tensor(-2.0)).item())])
