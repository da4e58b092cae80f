"""Selective bfloat16 policies (vareff/models/bert_precision.py) and the model's profiler ranges.

* a policy casts exactly the matmul groups (and layers) it names; the rest stays float32;
* ``bf16-ffn`` equals an independent emulation on ``transformers.BertForMaskedLM``: the FFN weights,
  inputs and outputs rounded to bfloat16 around float32 matmuls (oneDNN accumulates bfloat16
  products in float32 and rounds the output once);
* ``bf16-fp32-attention`` hands float32 q/k/v to the attention kernel;
* under ``torch.profiler`` every part of a forward is inside its named range, once per layer;
* the profile's exclusive-time helper subtracts nested ranges.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from grover_fixtures import make_checkpoint, random_dna
from vareff.models.bert_precision import FLOAT32, POLICIES, MatmulPolicy, apply_policy
from vareff.models.load import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import grover_profile  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_policies")
    hf_model, hf_tok = make_checkpoint(d, vocab_size=90, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                       intermediate_size=96, seed=5)
    return d, hf_model, hf_tok


def _inputs(model, n=3, seed=3):
    rng = random.Random(seed)
    return model.tokenize([random_dna(rng.randint(150, 300), rng) for _ in range(n)])


def test_policy_casts_only_what_it_names(checkpoint):
    d, _, _ = checkpoint
    bf, f32 = torch.bfloat16, torch.float32
    m = apply_policy(load_model(d, device="cpu").module, POLICIES["bf16-not-last2"])
    got = [[getattr(layer, g).weight.dtype for g in ("qkv", "attn_out", "fc1", "fc2")] for layer in m.layers]
    assert got == [[bf] * 4, [f32] * 4, [f32] * 4]  # 3 layers: only the first is outside the last two
    assert m.head_dense.weight.dtype == f32 and m.word.weight.dtype == f32 and m.layers[0].ln1.weight.dtype == f32
    m = apply_policy(load_model(d, device="cpu").module, POLICIES["only-head"])
    assert m.head_dense.weight.dtype == bf and all(p.dtype == f32 for p in m.layers.parameters())
    with pytest.raises(ValueError, match="float32"):
        apply_policy(m, POLICIES["bf16"])  # already rounded: refused, not silently re-rounded
    m = load_model(d, device="cpu").module.set_mixed()
    apply_policy(m, MatmulPolicy(frozenset(), attention_fp32=True))  # flags only, weights stay float32
    apply_policy(m, FLOAT32)  # clears split weights and flags: a plain float32 model again
    assert all("weight_split" not in lin.__dict__ for layer in m.layers for lin in (layer.qkv, layer.fc1))
    assert not any(layer.__dict__["attention_fp32"] for layer in m.layers)


def _round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def test_bf16_ffn_equals_a_rounding_emulation_on_transformers(checkpoint):
    d, hf_model, _ = checkpoint
    model = load_model(d, device="cpu")
    ids, mask = _inputs(model)
    apply_policy(model.module, POLICIES["bf16-ffn"])
    with torch.inference_mode():
        hidden, logits = model.module(ids, mask)

    import copy

    emu = copy.deepcopy(hf_model).eval()
    handles = []
    for layer in emu.bert.encoder.layer:
        for lin in (layer.intermediate.dense, layer.output.dense):
            with torch.no_grad():
                lin.weight.copy_(_round(lin.weight))
                lin.bias.copy_(_round(lin.bias))
            handles.append(lin.register_forward_pre_hook(lambda mod, args: (_round(args[0]),)))
            handles.append(lin.register_forward_hook(lambda mod, args, out: _round(out)))
    with torch.inference_mode():
        want = emu(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        exact = hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    m = mask.bool()
    lp, lp_emu, lp_exact = (torch.log_softmax(x, -1)[m] for x in (logits, want.logits, exact.logits))
    err_emu = (lp - lp_emu).abs().max().item()
    err_exact = (lp - lp_exact).abs().max().item()
    # the policy is the emulation up to float32 summation order (rare one-ulp flips of a bfloat16
    # output), and clearly not float32
    assert err_emu < 5e-3 and err_exact > 5 * err_emu, (err_emu, err_exact)
    h_err = (hidden[m] - want.hidden_states[-1][m]).abs().max().item()
    assert h_err < 2e-2


def test_fp32_attention_policy_feeds_float32_to_the_kernel(checkpoint, monkeypatch):
    import vareff_kernels

    d, _, _ = checkpoint
    model = load_model(d, device="cpu")
    real, seen = vareff_kernels.attention, []

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, **kw)

    monkeypatch.setattr(vareff_kernels, "attention", spy)
    ids, mask = _inputs(model, n=2)
    apply_policy(model.module, POLICIES["bf16-fp32-attention"])
    assert model.module.layers[0].qkv.weight.dtype == torch.bfloat16
    model.forward(ids, mask)
    assert seen == [(torch.float32,) * 3] * 3
    seen.clear()
    plain = load_model(d, device="cpu")
    apply_policy(plain.module, POLICIES["bf16"])
    plain.forward(ids, mask)
    assert seen == [(torch.bfloat16,) * 3] * 3


def test_profiler_ranges_cover_each_part(checkpoint):
    from torch.profiler import ProfilerActivity, profile

    d, _, _ = checkpoint
    model = load_model(d, device="cpu")
    ids, mask = _inputs(model, n=2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        hidden = model.module.encode(ids, mask)
        model.module.mlm_logits(hidden[:, :2])
    counts: dict[str, int] = {}
    for e in prof.events():
        if e.name.startswith("grover."):
            counts[e.name] = counts.get(e.name, 0) + 1
    L = model.config.num_hidden_layers
    assert counts == {"grover.embed": 1, "grover.gemm.qkv": L, "grover.attention": L, "grover.gemm.attn_out": L,
                      "grover.eltwise": 3 * L, "grover.gemm.fc1": L, "grover.gemm.fc2": L, "grover.gemm.head": 1}
    # outside a profiler the ranges are not entered
    assert not torch.autograd._profiler_enabled()


def test_exclusive_time_subtracts_nested_ranges():
    spans = [(0, 100, "outer"), (10, 30, "a"), (12, 20, "b"), (40, 60, "a"), (100, 110, "c")]
    ex = grover_profile._exclusive(spans)
    assert ex == {"outer": 100 - 20 - 20, "a": (20 - 8) + 20, "b": 8, "c": 10}
    assert sum(ex.values()) == 110  # the rows add up to the covered time
