"""Native NT v1/v2 masked LM vs references, on random configurations drawn per seed (not tuned).

* NT v1 (learned positions, token dropout, GELU) and ESM rotary: ``transformers.EsmForMaskedLM``
  saved by ``save_pretrained`` is the reference; tolerance 1e-4 (fp32) on non-pad positions.
* NT v2 (rotary + gated bias-free FFN, no ``transformers`` class): the reference is
  ``EsmForMaskedLM`` with the feed-forward swapped for ``nt_fixtures.GatedFFN`` (written from the
  description), and separately :func:`reference_v2`, a functional forward written line by line.
"""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

import nt_fixtures as nf
from vareff.errors import CheckpointError
from vareff.models.load import load_model

TOL = 1e-4


def draw_dims(seed: int) -> dict:
    """A random small configuration (heads, head size, layers, FFN width all vary with the seed)."""
    rng = random.Random(seed)
    nh = rng.choice([1, 2, 4])
    hs = rng.choice([4, 8, 12])
    return dict(hidden_size=nh * hs, num_attention_heads=nh, num_hidden_layers=rng.randint(1, 3),
                intermediate_size=rng.choice([8, 20, 36]))


def batch(tok, rng, n=3, lo=20, hi=90, alphabet="ACGTN"):
    seqs = [nf.random_dna(rng.randint(lo, hi), rng, alphabet) for _ in range(n)]
    e = tok(seqs, padding=True, return_tensors="pt")
    return seqs, e["input_ids"], e["attention_mask"]


def assert_close(a, b, mask, what):
    err = (a.double() - b.double())[mask.bool()].abs().max().item()
    scale = b.double()[mask.bool()].abs().max().item()
    assert err < TOL, f"{what}: max |diff| {err:.2e} (reference scale {scale:.2f})"


@pytest.mark.parametrize("seed,fmt", [(1, "safetensors"), (2, "bin"), (3, "safetensors")])
def test_nt_v1_equals_transformers(seed, fmt, tmp_path):
    dims = draw_dims(seed)
    hf, tok = nf.make_nt_v1(tmp_path, seed=seed, fmt=fmt, **dims)
    m = load_model(tmp_path, device="cpu")
    assert m.config.variant == "NT-v1" and m.config.token_dropout
    rng = random.Random(seed)
    seqs, ids, am = batch(tok, rng)
    ids2, am2 = m.tokenize(seqs)
    assert torch.equal(ids2, ids) and torch.equal(am2, am)
    ids[0, 3] = tok.mask_token_id  # token dropout: mask rows zeroed, rescaled by the observed mask ratio
    ids[1, 1:3] = tok.mask_token_id
    out = m.forward(ids, am)
    with torch.no_grad():
        ref_h = hf.esm(input_ids=ids, attention_mask=am).last_hidden_state
        ref_l = hf(input_ids=ids, attention_mask=am).logits
    assert_close(out.last_hidden_state, ref_h, am, "hidden")
    assert_close(out.logits, ref_l, am, "logits")


@pytest.mark.parametrize("seed", [4, 5])
def test_esm_rotary_gelu_equals_transformers(seed, tmp_path):
    """The rotary path alone, against transformers' own rotary ESM (base 10000)."""
    dims = draw_dims(seed)
    hf = nf.hf_esm(seed=seed, rotary=True, gated=False, ffn_bias=True, **dims)
    hf.save_pretrained(str(tmp_path))
    tok = nf.write_tokenizer(tmp_path, "v2")
    m = load_model(tmp_path, device="cpu")
    assert m.config.variant == "ESM (rotary)"
    _, ids, am = batch(tok, random.Random(seed))
    out = m.forward(ids, am)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=am)
    assert_close(out.logits, ref.logits, am, "logits")


@pytest.mark.parametrize("seed,fmt", [(6, "safetensors"), (7, "bin"), (8, "safetensors")])
def test_nt_v2_equals_transformers_with_gated_ffn(seed, fmt, tmp_path):
    dims = draw_dims(seed)
    hf, tok = nf.make_nt_v2(tmp_path, seed=seed, fmt=fmt, **dims)
    m = load_model(tmp_path, device="cpu")
    assert m.config.variant == "NT-v2" and not m.config.ffn_bias
    seqs, ids, am = batch(tok, random.Random(seed))
    ids[2, 4] = tok.mask_token_id
    out = m.forward(ids, am)
    with torch.no_grad():
        ref_h = hf.esm(input_ids=ids, attention_mask=am).last_hidden_state
        ref_l = hf(input_ids=ids, attention_mask=am).logits
    assert_close(out.last_hidden_state, ref_h, am, "hidden")
    assert_close(out.logits, ref_l, am, "logits")


def reference_v2(sd: dict, cfg: dict, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-v2 forward written line by line from the published description (float64, one unpadded sequence).

    x = E[ids]; per layer x += Wo attn(LN(x)) with rotary q,k (NeoX halves, base 10000, positions
    0..T-1, q scaled by d^-1/2); x += W2 (silu(a) * b) with [a | b] = W1 LN(x); h = LN(x);
    logits = Wdec LN(gelu(Wd h + bd)) + bias.
    """
    w = {k: v.double() for k, v in sd.items()}
    eps, nh, C = cfg["layer_norm_eps"], cfg["num_attention_heads"], cfg["hidden_size"]
    d = C // nh
    T = ids.shape[0]
    x = w["esm.embeddings.word_embeddings.weight"][ids]  # (T, C)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None]  # (T, d/2)
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rot(z):  # z (nh, T, d): pairs (i, i + d/2) rotated by angle[t, i]
        z1, z2 = z[..., : d // 2], z[..., d // 2:]
        return torch.cat([z1 * cos - z2 * sin, z2 * cos + z1 * sin], -1)

    def ln(z, p):
        return F.layer_norm(z, (C,), w[p + ".weight"], w[p + ".bias"], eps)

    for i in range(cfg["num_hidden_layers"]):
        p = f"esm.encoder.layer.{i}."
        h = ln(x, p + "attention.LayerNorm")
        q, k, v = (h @ w[p + f"attention.self.{n}.weight"].T + w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value"))
        q, k, v = (z.view(T, nh, d).transpose(0, 1) for z in (q, k, v))  # (nh, T, d)
        q, k = rot(q * d ** -0.5), rot(k)
        att = torch.softmax(q @ k.transpose(1, 2), -1) @ v  # (nh, T, d)
        x = x + att.transpose(0, 1).reshape(T, C) @ w[p + "attention.output.dense.weight"].T + w[p + "attention.output.dense.bias"]
        h = ln(x, p + "LayerNorm")
        a, b = (h @ w[p + "intermediate.dense.weight"].T).chunk(2, -1)
        x = x + (F.silu(a) * b) @ w[p + "output.dense.weight"].T
    h = ln(x, "esm.encoder.emb_layer_norm_after")
    z = F.gelu(h @ w["lm_head.dense.weight"].T + w["lm_head.dense.bias"])
    z = F.layer_norm(z, (C,), w["lm_head.layer_norm.weight"], w["lm_head.layer_norm.bias"], eps)
    return h, z @ w["lm_head.decoder.weight"].T + w["lm_head.bias"]


@pytest.mark.parametrize("seed", [9, 10])
def test_nt_v2_equals_a_line_by_line_reference(seed, tmp_path):
    from safetensors.torch import load_file

    dims = draw_dims(seed)
    _, tok = nf.make_nt_v2(tmp_path, seed=seed, **dims)
    sd = load_file(str(tmp_path / "model.safetensors"))
    cfg = json.loads((tmp_path / "config.json").read_text())
    m = load_model(tmp_path, device="cpu")
    seq = nf.random_dna(77, random.Random(seed), "ACGTN")
    ids, am = m.tokenize([seq])
    out = m.forward(ids, am)
    h, logits = reference_v2(sd, cfg, ids[0])
    assert_close(out.last_hidden_state[0], h, am[0], "hidden")
    assert_close(out.logits[0], logits, am[0], "logits")


def test_padding_does_not_change_real_positions(tmp_path):
    _, tok = nf.make_nt_v2(tmp_path, seed=12, **draw_dims(12))
    m = load_model(tmp_path, device="cpu")
    rng = random.Random(1)
    a, b = nf.random_dna(30, rng), nf.random_dna(90, rng)
    ids, am = m.tokenize([a, b])
    alone, _ = m.tokenize([a])
    out = m.forward(ids, am).last_hidden_state[0, : alone.shape[1]]
    ref = m.forward(alone).last_hidden_state[0]
    assert (out - ref).abs().max() < 1e-5


def test_bf16_compute_tracks_fp32(tmp_path):
    _, tok = nf.make_nt_v2(tmp_path, seed=13, **draw_dims(13))
    m32 = load_model(tmp_path, device="cpu")
    m16 = load_model(tmp_path, device="cpu", dtype="bfloat16")
    ids, am = m32.tokenize([nf.random_dna(60, random.Random(2))])
    a, b = m32.forward(ids, am).logits, m16.forward(ids, am).logits
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.05 * a.abs().max()  # bf16 matmuls: ~3 significant digits


# --------------------------------------------------------------------------- loading errors


def _resave(tmp_path, mutate):
    from safetensors.torch import load_file, save_file

    f = tmp_path / "model.safetensors"
    sd = load_file(str(f))
    mutate(sd)
    save_file(sd, str(f))


def test_missing_extra_and_misshaped_keys_are_named(tmp_path):
    nf.make_nt_v2(tmp_path, seed=14, **draw_dims(14))
    _resave(tmp_path, lambda sd: sd.pop("esm.encoder.layer.0.attention.self.key.bias"))
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): esm.encoder.layer.0.attention.self.key.bias"):
        load_model(tmp_path, device="cpu")
    nf.make_nt_v2(tmp_path, seed=14, **draw_dims(14))
    _resave(tmp_path, lambda sd: sd.update({"esm.encoder.layer.0.adapter.weight": torch.ones(2)}))
    with pytest.raises(CheckpointError, match="unexpected 1 key.*adapter"):
        load_model(tmp_path, device="cpu")


def test_v2_config_with_v1_ffn_weights_is_a_shape_error(tmp_path):
    """A checkpoint whose config says NT-v2 (add_bias_fnn) but whose FFN is [I, H] is refused, not misread."""
    hf, _ = nf.make_nt_v1(tmp_path, seed=15, rotary=True, **draw_dims(15))
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["add_bias_fnn"] = False
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="intermediate.dense.weight: checkpoint"):
        load_model(tmp_path, device="cpu")


def test_pickles_with_code_are_refused(tmp_path):
    nf.make_nt_v2(tmp_path, seed=16, fmt="bin", **draw_dims(16))
    sd = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    sd["evil"] = random.Random(0)  # an arbitrary object: needs full unpickling
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(tmp_path, device="cpu")


def test_family_is_found_from_model_type(tmp_path):
    from vareff.models.load import _find_family

    fam = _find_family({"model_type": "esm", "architectures": ["SegmentNT"]}, "config.json")
    assert fam.name == "esm"
