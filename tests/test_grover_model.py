"""Native BERT (GROVER) vs transformers' BertForMaskedLM on tiny random checkpoints.

Tolerance: fp32 on CPU, |vareff - transformers| <= 1e-4 on logits and last hidden states at every
real (non-padding) position.  The configurations below differ in width, depth, heads, activation,
LayerNorm eps and decoder tying; none was tuned to pass.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from grover_fixtures import make_checkpoint, random_dna
from vareff.models.bert import BertConfig, BertMaskedLM, remap_state_dict
from vareff.models.load import load_model

CONFIGS = {
    "base": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48),
    "odd": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=70,
                hidden_act="gelu_new", layer_norm_eps=1e-5, tie_word_embeddings=False, vocab_size=77, seed=3),
    "relu2h": dict(hidden_size=40, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                   hidden_act="relu", max_position_embeddings=300, vocab_size=130, seed=5, weight_std=0.15),
}


def _assert_close(name, got, want, mask, atol):
    diff = (got - want).abs()[mask]
    bad = (diff > atol).nonzero()
    assert bad.numel() == 0, f"{name}: {bad.shape[0]} of {diff.numel()} values off by > {atol}; max {diff.max():.3g}"


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def checkpoint(request, tmp_path_factory):
    kw = dict(CONFIGS[request.param])
    d = tmp_path_factory.mktemp(f"grover_{request.param}")
    hf_model, hf_tok = make_checkpoint(d, **kw)
    return d, hf_model, hf_tok


def test_logits_and_hidden_match_transformers(checkpoint):
    d, hf_model, hf_tok = checkpoint
    model = load_model(d, device="cpu")
    rng = random.Random(11)
    seqs = [random_dna(rng.randint(5, 400), rng) for _ in range(7)]  # ragged: real padding in the batch
    ids, mask = model.tokenize(seqs)
    assert (mask == 0).any(), "the batch should contain padding"
    out = model.forward(ids, mask)
    with torch.no_grad():
        ref = hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    m = mask.bool()
    assert out.logits.shape == ref.logits.shape
    assert ref.logits[m].std() > 0.1  # non-trivial outputs
    _assert_close("logits", out.logits, ref.logits, m, 1e-4)
    _assert_close("last_hidden_state", out.last_hidden_state, ref.hidden_states[-1], m, 1e-4)


def test_unpadded_batch_and_single_sequence(checkpoint):
    d, hf_model, _ = checkpoint
    model = load_model(d, device="cpu")
    rng = random.Random(5)
    seqs = [random_dna(120, rng)] * 3
    ids, mask = model.tokenize(seqs)
    assert bool(mask.all())
    out = model.forward(ids, mask)
    with torch.no_grad():
        ref = hf_model(input_ids=ids, attention_mask=mask)
    _assert_close("logits", out.logits, ref.logits, mask.bool(), 1e-4)
    one = model.forward(ids[:1])  # no mask given
    _assert_close("single", one.logits, ref.logits[:1], mask[:1].bool(), 1e-4)


def test_state_dict_remap_keys_and_shapes(checkpoint):
    _, hf_model, _ = checkpoint
    cfg = BertConfig.from_hf(hf_model.config.to_dict())
    sd = remap_state_dict(hf_model.state_dict(), cfg)
    ours = BertMaskedLM(cfg).state_dict()
    assert set(sd) == set(ours)
    for k, v in ours.items():
        assert tuple(sd[k].shape) == tuple(v.shape), k
    # q, k, v are stacked in that order
    w = sd["layers.0.qkv.weight"]
    C = cfg.hidden_size
    hf = hf_model.state_dict()
    assert torch.equal(w[C:2 * C], hf["bert.encoder.layer.0.attention.self.key.weight"])


def test_attention_goes_through_kernel_dispatch(checkpoint, monkeypatch):
    import vareff_kernels

    d, _, _ = checkpoint
    model = load_model(d, device="cpu")
    calls = []
    real = vareff_kernels.attention

    def spy(q, k, v, **kw):
        calls.append((tuple(q.shape), kw.get("key_padding_mask") is not None))
        return real(q, k, v, **kw)

    monkeypatch.setattr(vareff_kernels, "attention", spy)
    ids, mask = model.tokenize(["ACGTAC" * 10, "ACG"])
    model.forward(ids, mask)
    assert len(calls) == model.config.num_hidden_layers
    B, H, T, D = calls[0][0]
    assert (B, H, D) == (2, model.config.num_attention_heads, model.config.head_dim) and calls[0][1]


def test_bfloat16_compute_stays_close(checkpoint):
    d, hf_model, _ = checkpoint
    fp = load_model(d, device="cpu")
    bf = load_model(d, device="cpu", dtype="bf16")
    assert bf.module.layers[0].qkv.weight.dtype == torch.bfloat16
    assert bf.module.word.weight.dtype == torch.float32  # embeddings / decoder stay fp32
    rng = random.Random(2)
    ids, mask = fp.tokenize([random_dna(300, rng) for _ in range(3)])
    a, b = fp.forward(ids, mask), bf.forward(ids, mask)
    m = mask.bool()
    lp_a, lp_b = torch.log_softmax(a.logits, -1)[m], torch.log_softmax(b.logits, -1)[m]
    # bf16 matmuls (8-bit mantissa): log-probs within 0.1 nat, hidden states within 5% (relative)
    assert (lp_a - lp_b).abs().max() < 0.1
    rel = (a.last_hidden_state - b.last_hidden_state)[m].norm() / a.last_hidden_state[m].norm()
    assert rel < 0.05


def test_too_many_tokens_is_rejected(checkpoint):
    d, _, _ = checkpoint
    model = load_model(d, device="cpu")
    T = model.config.max_position_embeddings + 1
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.forward(torch.zeros((1, T), dtype=torch.long))


def test_config_rejects_what_it_cannot_reproduce():
    from vareff.errors import CheckpointError

    base = dict(vocab_size=10, hidden_size=8, num_attention_heads=2)
    with pytest.raises(CheckpointError, match="position_embedding_type"):
        BertConfig.from_hf({**base, "position_embedding_type": "relative_key"})
    with pytest.raises(CheckpointError, match="hidden_act"):
        BertConfig.from_hf({**base, "hidden_act": "mish"})
    with pytest.raises(CheckpointError, match="divisible"):
        BertConfig.from_hf({**base, "num_attention_heads": 3})
    c = BertConfig.from_hf({**base, "some_future_key": 1})
    assert c.intermediate_size == 3072 and c.layer_norm_eps == 1e-12  # transformers' defaults
    assert np.isclose(c.head_dim, 4)


def test_delta_pass_matches_float32(checkpoint):
    """encode_delta (float32 anchor + bfloat16 differences) vs a plain float32 pass on the same inputs."""
    d, hf_model, _ = checkpoint
    model = load_model(d, device="cpu")
    module = model.module.enable_delta(torch.bfloat16)
    rng = random.Random(8)
    ids, mask = model.tokenize([random_dna(250, rng), random_dna(180, rng)])
    T = ids.shape[1]
    dep = ids[1:2].repeat(4, 1)  # the padded second row, with 1-2 tokens changed or masked
    for r in range(4):
        for _ in range(1 + r % 2):
            dep[r, rng.randrange(1, int(mask[1].sum()) - 1)] = model.tokenizer.mask_id if r < 2 else rng.randrange(5, 60)
    dmask = mask[1:2].repeat(4, 1)
    with torch.inference_mode():
        cap = []
        module.encode(ids, mask, capture=cap)
        got = module.encode_delta(dep, dmask, cap, 1, ids[1])
        with torch.no_grad():
            want = hf_model(input_ids=dep, attention_mask=dmask, output_hidden_states=True).hidden_states[-1]
    m = dmask.bool()
    rel = (got - want)[m].norm() / want[m].norm()
    assert rel < 3e-4, rel  # plain bfloat16 matmuls give ~1e-3 on these models, float32 ~1e-7
    lp_got = torch.log_softmax(module.mlm_logits(got[m]), -1)
    lp_want = torch.log_softmax(hf_model.cls(want[m]), -1)
    assert (lp_got - lp_want).abs().max() < 0.02
    assert T == got.shape[1]
