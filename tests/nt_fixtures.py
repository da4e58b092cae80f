"""Tiny random Nucleotide Transformer / SegmentNT checkpoints and independent references.

* NT v1: ``transformers.EsmForMaskedLM`` (learned positions, token dropout, GELU FFN) saved with
  ``save_pretrained`` -- the reference library's own layout.
* NT v2: ``transformers.EsmForMaskedLM`` with rotary positions whose feed-forward is swapped for
  the gated, bias-free one written here from the published description (``GatedFFN``); the state
  dict is written in the published layout (``LayerNorm.weight``, per-layer ``inv_freq`` buffers,
  unused learned positions) as safetensors or a ``torch.save`` pickle, with a config.json carrying
  the published keys (``add_bias_fnn: false``, ``auto_map``).
* SegmentNT: that v2 trunk + U-Net head weights in the published key layout (``unet.*``, ``fc``),
  and :func:`reference_segment_head`, a line-by-line functional forward of the head written from
  the published description (JAX ``UNetHead``): no vareff code and no torch conv modules.

Every parameter is random and non-zero (LayerNorm weights around 1).
"""
from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

BASES = "ATCG"
FEATURES = ["protein_coding_gene", "lncRNA", "exon", "intron", "splice_donor", "splice_acceptor", "5UTR", "3UTR",
            "CTCF-bound", "polyA_signal", "enhancer_Tissue_specific", "enhancer_Tissue_invariant",
            "promoter_Tissue_specific", "promoter_Tissue_invariant"]


# --------------------------------------------------------------------------- vocabulary


def vocab_lines(version: str = "v2") -> list[str]:
    """The published vocabulary written out by hand from the documented layout (product order A,T,C,G)."""
    kmers = ["".join(p) for p in itertools.product(BASES, repeat=6)]
    if version == "v2":
        return ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"] + kmers + ["A", "T", "C", "G", "N"]
    return ["<unk>", "<pad>", "<mask>", "<cls>"] + kmers + ["A", "T", "C", "G", "N", "<eos>", "<bos>"]


def write_tokenizer(directory: Path, version: str = "v2"):
    """vocab.txt + tokenizer files as the published repos hold them; returns the ``EsmTokenizer``."""
    from transformers import EsmTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab_lines(version)) + "\n")
    tok = EsmTokenizer(str(directory / "vocab.txt"), eos_token=None, model_max_length=2048)
    tok.save_pretrained(str(directory))
    return tok


def random_dna(n: int, rng: random.Random, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------- weights


def randomize(module: nn.Module, seed: int, std: float = 0.1) -> None:
    """Every parameter random and non-zero; LayerNorm weights near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name or name.endswith("norm_after.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


class GatedIntermediate(nn.Module):
    """NT-v2 FFN first half, from the description: Linear(C -> 2I), silu(first half) * second half."""

    def __init__(self, C: int, I: int, bias: bool):
        super().__init__()
        self.dense = nn.Linear(C, 2 * I, bias=bias)

    def forward(self, x):
        a, b = self.dense(x).chunk(2, dim=-1)
        return F.silu(a) * b


class GatedOutput(nn.Module):
    """NT-v2 FFN second half: Linear(I -> C) + residual."""

    def __init__(self, C: int, I: int, bias: bool):
        super().__init__()
        self.dense = nn.Linear(I, C, bias=bias)

    def forward(self, x, residual):
        return self.dense(x) + residual


def hf_esm(*, vocab_size=4107, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
           rotary=True, gated=True, ffn_bias=False, token_dropout=False, rope_theta=10000.0,
           max_position_embeddings=2050, seed=0, std=0.1):
    """A random ``transformers.EsmForMaskedLM``; ``gated`` swaps in the NT-v2 feed-forward."""
    from transformers import EsmConfig, EsmForMaskedLM

    cfg = EsmConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                    num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                    max_position_embeddings=max_position_embeddings,
                    position_embedding_type="rotary" if rotary else "absolute", pad_token_id=1, mask_token_id=2,
                    token_dropout=token_dropout, emb_layer_norm_before=False, layer_norm_eps=1e-12,
                    tie_word_embeddings=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    rope_theta=rope_theta)
    torch.manual_seed(seed)
    model = EsmForMaskedLM(cfg).eval()
    if gated:
        for layer in model.esm.encoder.layer:
            layer.intermediate = GatedIntermediate(hidden_size, intermediate_size, ffn_bias)
            layer.output = GatedOutput(hidden_size, intermediate_size, ffn_bias)
    randomize(model, seed + 1, std)
    return model


def set_rotary_base(model, base: float) -> None:
    """Point the reference model's rotary at ``base`` (inv_freq = base^(-2i/d), recomputed here)."""
    rot = model.esm.rotary_embeddings
    d = rot.inv_freq.shape[0] * 2
    rot.inv_freq.copy_(1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)))


def rescaled_base(s: float, head_dim: int, theta: float = 10000.0) -> float:
    """SegmentNT's rotary base for rescaling factor s (published formula)."""
    return theta * s ** (head_dim / (head_dim - 2))


def published_backbone_state(model, *, prefix="esm.", with_lm_head=True) -> dict[str, torch.Tensor]:
    """The reference model's weights under the published v2 key names."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("inv_freq") or k.startswith("esm.contact_head"):
            continue
        if k.startswith("lm_head.") and not with_lm_head:
            continue
        sd[k if k.startswith("lm_head.") else prefix + k[len("esm."):]] = v.detach().clone()
    cfg = model.config
    hs = cfg.hidden_size // cfg.num_attention_heads
    inv = 1.0 / (10000 ** (torch.arange(0, hs, 2).float() / hs))
    for i in range(cfg.num_hidden_layers):  # per-layer buffers as the old published code saved them
        sd[f"{prefix}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = inv.clone()
    if cfg.position_embedding_type == "rotary":  # v2 code keeps an unused learned position table
        sd[f"{prefix}embeddings.position_embeddings.weight"] = 0.01 * torch.randn(cfg.max_position_embeddings, cfg.hidden_size)
    return sd


def v2_config_json(model, **extra) -> dict:
    c = model.config
    d = {
        "architectures": ["EsmForMaskedLM"], "model_type": "esm", "add_bias_fnn": False,
        "auto_map": {"AutoConfig": "esm_config.EsmConfig", "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"},
        "attention_probs_dropout_prob": 0.0, "emb_layer_norm_before": False, "esmfold_config": None,
        "hidden_dropout_prob": 0.0, "hidden_size": c.hidden_size, "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size, "is_folding_model": False, "layer_norm_eps": 1e-12,
        "mask_token_id": 2, "max_position_embeddings": c.max_position_embeddings, "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers, "pad_token_id": 1, "position_embedding_type": "rotary",
        "tie_word_embeddings": False, "token_dropout": False, "torch_dtype": "float32", "vocab_list": None,
        "vocab_size": c.vocab_size,
    }
    d.update(extra)
    return d


def save_state(directory: Path, sd: dict[str, torch.Tensor], fmt: str = "safetensors") -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / "model.safetensors"))
    else:
        torch.save(sd, directory / "pytorch_model.bin")


def make_nt_v1(directory: Path, *, seed=0, fmt="safetensors", **dims):
    """NT-v1-shaped random checkpoint saved by ``transformers`` itself; returns (model, tokenizer)."""
    directory = Path(directory)
    tok = write_tokenizer(directory, "v1")
    kw = dict(vocab_size=4105, rotary=False, gated=False, ffn_bias=True, token_dropout=True, max_position_embeddings=1002)
    kw.update(dims)
    model = hf_esm(seed=seed, **kw)
    model.save_pretrained(str(directory), safe_serialization=(fmt == "safetensors"))
    return model, tok


def make_nt_v2(directory: Path, *, seed=0, fmt="safetensors", **dims):
    """NT-v2-shaped random checkpoint in the published layout; returns (reference model, tokenizer)."""
    directory = Path(directory)
    tok = write_tokenizer(directory, "v2")
    model = hf_esm(seed=seed, **dims)
    save_state(directory, published_backbone_state(model), fmt)
    (directory / "config.json").write_text(json.dumps(v2_config_json(model)))
    return model, tok


# --------------------------------------------------------------------------- SegmentNT


def head_state(hidden: int, n_features: int, *, levels=2, seed=0, gain=1.3) -> dict[str, torch.Tensor]:
    """Random U-Net head weights in the published key layout (Conv1d (out,in,k), ConvTranspose1d (in,out,k)).

    Weights ~ N(0, gain^2 / fan_in), biases ~ N(0, 0.1^2): activations stay O(1), probabilities spread over (0, 1).
    """
    g = torch.Generator().manual_seed(seed)

    def w(*shape, fan_in):
        return gain / math.sqrt(fan_in) * torch.randn(*shape, generator=g)

    def b(n):
        return 0.1 * torch.randn(n, generator=g)

    ch = [hidden * 2 ** i for i in range(levels)]
    sd = {}
    c_in = hidden
    for i, c in enumerate(ch):
        sd[f"unet._downsample_blocks.{i}.conv_layers.0.weight"] = w(c, c_in, 3, fan_in=3 * c_in)
        sd[f"unet._downsample_blocks.{i}.conv_layers.0.bias"] = b(c)
        sd[f"unet._downsample_blocks.{i}.conv_layers.1.weight"] = w(c, c, 3, fan_in=3 * c)
        sd[f"unet._downsample_blocks.{i}.conv_layers.1.bias"] = b(c)
        c_in = c
    up_in = [ch[-1]] + ch[::-1][:-1]
    for i, (ci, co) in enumerate(zip(up_in, ch[::-1])):
        sd[f"unet._upsample_blocks.{i}.conv_layers.0.weight"] = w(ci, co, 3, fan_in=3 * ci)
        sd[f"unet._upsample_blocks.{i}.conv_layers.0.bias"] = b(co)
        sd[f"unet._upsample_blocks.{i}.conv_layers.1.weight"] = w(co, co, 3, fan_in=3 * co)
        sd[f"unet._upsample_blocks.{i}.conv_layers.1.bias"] = b(co)
    out = 2 * (hidden // 2)
    sd["unet.final_block.conv_layers.0.weight"] = w(out, ch[0], 3, fan_in=3 * ch[0])
    sd["unet.final_block.conv_layers.0.bias"] = b(out)
    sd["unet.final_block.conv_layers.1.weight"] = w(out, out, 3, fan_in=3 * out)
    sd["unet.final_block.conv_layers.1.bias"] = b(out)
    sd["fc.weight"] = w(6 * n_features * 2, out, fan_in=out)
    sd["fc.bias"] = b(6 * n_features * 2)
    return sd


def make_segment_nt(directory: Path, *, seed=0, fmt="safetensors", features=FEATURES, rescaling_factor=2.44140625,
                    with_lm_head=False, levels=2, **dims):
    """SegmentNT-shaped random checkpoint (published layout); returns (trunk reference model, head state, tokenizer)."""
    directory = Path(directory)
    tok = write_tokenizer(directory, "v2")
    model = hf_esm(seed=seed, **dims)
    sd = published_backbone_state(model, with_lm_head=with_lm_head)
    head = head_state(model.config.hidden_size, len(features), levels=levels, seed=seed + 7)
    sd.update(head)
    save_state(directory, sd, fmt)
    cfg = v2_config_json(model, architectures=["SegmentNT"], features=list(features), num_layers_head=levels,
                         rescaling_factor=rescaling_factor,
                         auto_map={"AutoConfig": "segment_nt_config.SegmentNTConfig", "AutoModel": "modeling_segment_nt.SegmentNT"})
    (directory / "config.json").write_text(json.dumps(cfg))
    return model, head, tok


# --------------------------------------------------------------------------- independent head reference


def _conv_same(x, w, b):
    """Conv1d, kernel 3, 'same' zero padding, by explicit taps: y[o,t] = b[o] + sum_{i,j} w[o,i,j] x[i,t+j-1]."""
    xp = F.pad(x, (1, 1))  # (B, Cin, T+2)
    T = x.shape[-1]
    y = sum(torch.einsum("oi,bit->bot", w[:, :, j], xp[:, :, j:j + T]) for j in range(3))
    return y + b[None, :, None]


def _conv_transpose_same(x, w, b):
    """ConvTranspose1d, kernel 3, stride 1, padding 1, by its definition: every input position t scatters
    w[i, o, j] x[i, t] to output position t + j - 1 (w: (in, out, k))."""
    B, Cin, T = x.shape
    out = torch.zeros(B, w.shape[1], T + 2, dtype=x.dtype)
    for j in range(3):
        out[:, :, j:j + T] += torch.einsum("io,bit->bot", w[:, :, j], x)
    return out[:, :, 1:T + 1] + b[None, :, None]


def _avg_pool2(x):
    B, C, T = x.shape
    return x.reshape(B, C, T // 2, 2).mean(-1)


def _nearest_x2(x):
    """jax.image.resize(..., 2T, 'nearest'): output i samples input floor((i + 0.5) / 2)."""
    T = x.shape[-1]
    src = torch.floor((torch.arange(2 * T, dtype=torch.float64) + 0.5) / 2).long()
    return x[:, :, src]


def reference_segment_head(hidden: torch.Tensor, sd: dict[str, torch.Tensor], n_features: int, levels: int = 2) -> torch.Tensor:
    """Segmentation logits (B, 6T, F, 2) from trunk output (B, 1+T, C), computed in float64."""
    w = {k: v.double() for k, v in sd.items()}
    x = hidden.double()[:, 1:].transpose(1, 2)  # drop <cls>; (B, C, T)
    skips = []
    for i in range(levels):
        for j in range(2):
            x = F.silu(_conv_same(x, w[f"unet._downsample_blocks.{i}.conv_layers.{j}.weight"], w[f"unet._downsample_blocks.{i}.conv_layers.{j}.bias"]))
        skips.append(x)
        x = _avg_pool2(x)
    for i in range(levels):
        for j in range(2):
            x = F.silu(_conv_transpose_same(x, w[f"unet._upsample_blocks.{i}.conv_layers.{j}.weight"], w[f"unet._upsample_blocks.{i}.conv_layers.{j}.bias"]))
        x = _nearest_x2(x) + skips[levels - 1 - i]
    x = F.silu(_conv_same(x, w["unet.final_block.conv_layers.0.weight"], w["unet.final_block.conv_layers.0.bias"]))
    x = _conv_same(x, w["unet.final_block.conv_layers.1.weight"], w["unet.final_block.conv_layers.1.bias"])
    x = F.silu(x).transpose(1, 2)  # (B, T, C')
    logits = x @ w["fc.weight"].T + w["fc.bias"]  # (B, T, 6*F*2)
    B, T, _ = logits.shape
    return logits.reshape(B, T * 6, n_features, 2)


def reference_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the 2 classes, class 1 (the published recipe)."""
    e = torch.exp(logits - logits.max(-1, keepdim=True).values)
    return (e / e.sum(-1, keepdim=True))[..., 1]


def reference_segment_nt(model, head_sd, ids, features=FEATURES, *, base=None, levels=2):
    """Full SegmentNT reference: trunk via the reference ``transformers`` model (rotary base ``base``),
    head via :func:`reference_segment_head`.  Returns (hidden float64, logits float64, probabilities)."""
    if base is not None:
        set_rotary_base(model, base)
    with torch.no_grad():
        hidden = model.esm(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    logits = reference_segment_head(hidden, head_sd, len(features), levels)
    return hidden.double(), logits, reference_probabilities(logits)


def segment_nt_reference_window(model, head_sd, seq: str, tok, *, features=FEATURES, s_train=2.44140625, mpe=2050):
    """Probabilities (L, F) for one ACGT window, with the published rescaling rule (notebook)."""
    ids = torch.tensor([tok(seq)["input_ids"]])
    T = ids.shape[1] - 1
    hs = model.config.hidden_size // model.config.num_attention_heads
    trained = round(s_train * (mpe - 2))
    s = s_train if T <= trained else (T + 1) / (mpe - 2)
    _, _, p = reference_segment_nt(model, head_sd, ids, features, base=rescaled_base(s, hs))
    return p[0]


def log_softmax64(x):
    x = x.double()
    return x - torch.logsumexp(x, dim=-1, keepdim=True)

