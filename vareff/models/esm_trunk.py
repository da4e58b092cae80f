"""The Nucleotide Transformer v1 / v2 trunk (ESM-style masked LM) in plain PyTorch, shared by NT and SegmentNT.

Pre-LayerNorm ESM encoder as in Hugging Face ``EsmForMaskedLM`` (NT v1) and InstaDeep's NT-v2
variant of it::

    x = word[ids]
        (token_dropout, v1)  zero <mask> rows, scale by 0.88 / (1 - n_mask / n_real)
        (absolute, v1)       + pos[cumsum(ids != pad) * (ids != pad) + pad]
    x = x * attention_mask
    per layer:  x = x + Wo . attn(LN_a(x))            Q, K, V, Wo biased; q scaled by hs^-0.5
                                                       (rotary, v2) NeoX rotate-half on q and k
                x = x + W2 . f(W1 . LN_f(x))           v1: f = GELU(erf), W1/W2 biased
                                                       v2: W1 (C -> 2I) then silu(first half) * second
                                                           half, no biases (add_bias_fnn: false)
    h = LN_after(x)                                    -> last_hidden_state
    MLM head:   logits = W_dec . LN(GELU(W_d . h + b_d)) + bias

Rotary (v2): ``inv_freq[i] = base^(-2i/hs)``, positions 0..T-1 including ``<cls>``, with
``base = rope_theta`` (10000) and, when the config has a ``rescaling_factor`` s (SegmentNT),
``base = rope_theta * s^(hs / (hs - 2))``.

Which variant a ``config.json`` describes: an ``add_bias_fnn`` key (InstaDeep's NT-v2 code) means
the gated (SwiGLU) feed-forward with biases as that key says; without it the feed-forward is the
built-in ``transformers`` ESM one (GELU, biased).  ``position_embedding_type`` picks learned
absolute positions or rotary.

Attention, LayerNorm and the activations go through :mod:`vareff_kernels` (PyTorch SDPA on CPU,
Triton on CUDA).  Shapes: B batch, T tokens, C hidden, nh heads, hs head size, I FFN width,
V vocabulary.  Precision: the residual stream, LayerNorms, embeddings and the vocabulary projection
run in float32; with a bfloat16/float16 compute dtype only the large matmuls do.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vareff.errors import CheckpointError
from vareff.models.shared import (
    EncoderSizes,
    add_mlm_head,
    attention_shapes,
    cast_matmuls,
    fused_qkv,
    linear_shapes,
    norm_shapes,
    take,
)

__all__ = ["EsmConfig", "EsmMaskedLM", "hf_expected_shapes", "hf_optional_shapes", "remap_backbone", "materialize",
           "drop_rotary_buffers", "flops_per_token", "HF_IGNORED_PREFIXES"]

#: token-dropout constant of every ESM/NT training run (masking ratio 0.15 x mask probability 0.8)
MASK_RATIO_TRAIN = 0.15 * 0.8


@dataclass(frozen=True)
class EsmConfig(EncoderSizes):
    """Architecture of an NT v1/v2 (ESM-style) encoder, read from a Hugging Face ``config.json``.

    Parameters
    ----------
    vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size : int
        V, C, layers, nh, I.  For the gated FFN, ``intermediate_size`` is the width after gating
        (W1 has 2I outputs).
    max_position_embeddings : int
        Learned positions: at most ``max_position_embeddings - pad_token_id - 1`` tokens.  Rotary:
        the backbone's training length is ``max_position_embeddings - 2`` tokens (2048 for v2).
    layer_norm_eps : float
        Every LayerNorm (as ``transformers`` does; the original JAX code uses 1e-5 in the LM head).
    pad_token_id, mask_token_id : int
    position_embedding_type : {"absolute", "rotary"}
    token_dropout : bool
        ESM mask-dropout rescaling of the embeddings (NT v1: true; applies at inference).
    emb_layer_norm_before : bool
    gated_ffn : bool
        SwiGLU feed-forward (NT v2; the config has ``add_bias_fnn``).
    ffn_bias : bool
        Biases in W1/W2 (``add_bias_fnn``; true for v1).
    tie_word_embeddings : bool
        MLM decoder shares the word embeddings (NT configs say false).
    rope_theta : float
        Rotary base before rescaling (10000).
    rescaling_factor : float, optional
        SegmentNT's rotary base rescaling factor s (None: no rescaling).
    """

    max_position_embeddings: int = 1026
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    mask_token_id: int = 2
    position_embedding_type: str = "absolute"
    token_dropout: bool = False
    emb_layer_norm_before: bool = False
    gated_ffn: bool = False
    ffn_bias: bool = True
    tie_word_embeddings: bool = True
    rope_theta: float = 10000.0
    rescaling_factor: float | None = None

    @property
    def rotary(self) -> bool:
        return self.position_embedding_type == "rotary"

    @property
    def variant(self) -> str:
        """Human-readable name: ``NT-v1`` (learned positions, GELU), ``NT-v2`` (rotary, SwiGLU), or ``ESM``."""
        if self.gated_ffn and self.rotary:
            return "NT-v2"
        if not self.gated_ffn and not self.rotary:
            return "NT-v1"
        return "ESM (rotary)" if self.rotary else "ESM"

    def rotary_base(self, rescaling_factor: float | None = ...) -> float:  # type: ignore[assignment]
        """Rotary base: ``rope_theta * s^(hs/(hs-2))`` with s = ``rescaling_factor`` (default: the config's)."""
        s = self.rescaling_factor if rescaling_factor is ... else rescaling_factor
        d = self.head_dim
        return float(self.rope_theta) if s is None else float(self.rope_theta) * float(s) ** (d / (d - 2))

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], *, source: str = "config.json") -> "EsmConfig":
        """Build from a parsed ``config.json``; missing keys take ``transformers`` ``EsmConfig`` defaults.

        Raises :class:`~vareff.errors.CheckpointError` for settings this implementation does not
        reproduce (decoders, folding models, unknown position embeddings).
        """
        if "vocab_size" not in cfg or cfg.get("vocab_size") is None:
            raise CheckpointError(f"{source} has no vocab_size", "is this an ESM / Nucleotide Transformer config.json?")
        pet = cfg.get("position_embedding_type") or "absolute"
        if pet not in ("absolute", "rotary"):
            raise CheckpointError(f"{source}: position_embedding_type={pet!r} is not supported",
                                  "Nucleotide Transformer uses 'absolute' (v1) or 'rotary' (v2)")
        if cfg.get("is_decoder") or cfg.get("add_cross_attention") or cfg.get("is_folding_model"):
            raise CheckpointError(f"{source}: decoder / cross-attention / folding ESM configs are not supported",
                                  "only bidirectional Nucleotide Transformer encoders are implemented")
        names = {f.name for f in fields(cls)}
        kw = {k: cfg[k] for k in names if k in cfg and cfg[k] is not None}
        kw["position_embedding_type"] = pet
        kw["emb_layer_norm_before"] = bool(cfg.get("emb_layer_norm_before") or False)
        kw["token_dropout"] = bool(cfg.get("token_dropout") or False)
        if "add_bias_fnn" in cfg:  # InstaDeep's NT-v2 code: gated FFN, biases as the key says
            kw["gated_ffn"] = True
            kw["ffn_bias"] = bool(cfg["add_bias_fnn"])
        if kw.get("mask_token_id") is None:
            kw["mask_token_id"] = 2
        c = cls(**kw)
        if c.hidden_size % c.num_attention_heads:
            raise CheckpointError(f"{source}: hidden_size={c.hidden_size} is not divisible by "
                                  f"num_attention_heads={c.num_attention_heads}")
        if c.rotary and (c.head_dim % 2 or c.head_dim < 4):
            raise CheckpointError(f"{source}: rotary embeddings need an even head size >= 4, got {c.head_dim}")
        return c


# --------------------------------------------------------------------------- modules


class EsmLayer(nn.Module):
    """One pre-LN encoder layer: ``x += attn(LN_a(x))``, then ``x += ffn(LN_f(x))``."""

    def __init__(self, cfg: EsmConfig):
        super().__init__()
        C, I = cfg.hidden_size, cfg.intermediate_size
        self.nh, self.hs, self.eps, self.gated = cfg.num_attention_heads, cfg.head_dim, cfg.layer_norm_eps, cfg.gated_ffn
        self.ln_attn = nn.LayerNorm(C, eps=self.eps)
        self.qkv = nn.Linear(C, 3 * C)  # query, key, value stacked on the output dim
        self.attn_out = nn.Linear(C, C)
        self.ln_ffn = nn.LayerNorm(C, eps=self.eps)
        self.fc1 = nn.Linear(C, 2 * I if cfg.gated_ffn else I, bias=cfg.ffn_bias)
        self.fc2 = nn.Linear(I, C, bias=cfg.ffn_bias)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, rotary) -> torch.Tensor:
        import vareff_kernels as vk

        if _torch_kernels(x):
            return self._forward_torch(x, key_padding_mask, rotary)
        B, T, C = x.shape  # x: float32 residual stream
        cd = self.qkv.weight.dtype  # compute dtype of the matmuls
        h = vk.layer_norm(x, self.ln_attn.weight, self.ln_attn.bias, self.eps)  # (B, T, C)
        qkv = self.qkv(h.to(cd))  # (B, T, 3C)
        q, k, v = qkv.view(B, T, 3, self.nh, self.hs).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hs)
        y = vk.attention(q, k, v, key_padding_mask=key_padding_mask, rotary=rotary)  # (B, nh, T, hs), scale hs^-0.5
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        a = self.attn_out(y).float()  # (B, T, C)
        h, x = vk.layer_norm_residual(a, self.ln_ffn.weight, self.ln_ffn.bias, self.eps, residual=x)  # x += a; h = LN_f(x)
        if self.gated:
            u = vk.swiglu(self.fc1(h.to(cd)))  # (B, T, 2I) -> (B, T, I): silu(first half) * second half
        elif self.fc1.bias is not None:
            u = vk.bias_gelu(F.linear(h.to(cd), self.fc1.weight), self.fc1.bias)  # (B, T, I)
        else:
            u = F.gelu(self.fc1(h.to(cd)))
        return x + self.fc2(u).float()  # (B, T, C) float32

    def _forward_torch(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, rotary) -> torch.Tensor:
        """:meth:`forward` where the kernels take their PyTorch path (CPU): the same numbers, less memory traffic.

        The residual adds read the bfloat16 matmul outputs directly (no float32 copy of them), the
        second one in place on the first one's result; SwiGLU gates in place; rotary runs once on q
        and k together in the projection's (B, T, 2, nh, hs) layout
        (:func:`vareff_kernels.reference.rotary_torch`).  Only the rotary rounding can differ from
        :meth:`forward` (bfloat16: a few ulps of q and k; float32: last-bit).
        """
        import vareff_kernels as vk

        B, T, C = x.shape  # x: float32 residual stream (not modified)
        cd = self.qkv.weight.dtype
        h = F.layer_norm(x, (C,), self.ln_attn.weight, self.ln_attn.bias, self.eps).to(cd)  # (B, T, C)
        qkv = self.qkv(h).view(B, T, 3, self.nh, self.hs)  # (B, T, 3, nh, hs)
        if rotary is not None:  # q and k together, tokens first (long inner loops), one new tensor
            qk = vk.rotary_torch(qkv[:, :, :2], *rotary)  # (B, T, 2, nh, hs)
            q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, nh, T, hs)
        else:
            q, k = qkv[:, :, :2].permute(2, 0, 3, 1, 4).unbind(0)
        v = qkv[:, :, 2].transpose(1, 2)  # (B, nh, T, hs)
        y = vk.attention(q, k, v, key_padding_mask=key_padding_mask)  # (B, nh, T, hs), scale hs^-0.5
        x = torch.add(x, self.attn_out(y.transpose(1, 2).reshape(B, T, C)))  # new float32 residual
        h = F.layer_norm(x, (C,), self.ln_ffn.weight, self.ln_ffn.bias, self.eps).to(cd)
        if self.gated:
            g = self.fc1(h)  # (B, T, 2I)
            u = F.silu(g[..., : g.shape[-1] // 2])  # (B, T, I)
            u.mul_(g[..., g.shape[-1] // 2:])
        elif self.fc1.bias is not None:
            u = vk.bias_gelu(F.linear(h, self.fc1.weight), self.fc1.bias)
        else:
            u = F.gelu(self.fc1(h))
        return x.add_(self.fc2(u))  # (B, T, C) float32


def _torch_kernels(x: torch.Tensor) -> bool:
    """True when the element-wise kernels take their PyTorch path for ``x`` (always on CPU under 'auto')."""
    import vareff_kernels as vk
    from vareff_kernels.dispatch import resolve_backend

    return resolve_backend("layer_norm", x.device, unsupported=vk._eltwise_unsupported(x)) == "torch"


class EsmMaskedLM(nn.Module):
    """ESM/NT encoder with an (optional) RoBERTa-style MLM head.

    ``forward(ids, mask)`` -> (hidden (B, T, C) float32 after the final LayerNorm, logits (B, T, V)
    float32, or None without an MLM head).
    """

    def __init__(self, cfg: EsmConfig, *, lm_head: bool = True):
        super().__init__()
        self.cfg = cfg
        C, V = cfg.hidden_size, cfg.vocab_size
        self.word = nn.Embedding(V, C)
        self.pos = nn.Embedding(cfg.max_position_embeddings, C) if not cfg.rotary else None
        self.emb_ln = nn.LayerNorm(C, eps=cfg.layer_norm_eps) if cfg.emb_layer_norm_before else None
        self.layers = nn.ModuleList(EsmLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.ln_after = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.has_lm_head = lm_head
        if lm_head:
            add_mlm_head(self, C, V, cfg.layer_norm_eps, cfg.tie_word_embeddings)

    # -- precision ------------------------------------------------------------------------------
    def set_compute_dtype(self, dtype: torch.dtype) -> "EsmMaskedLM":
        """Cast the big matmul weights to ``dtype``; embeddings, LayerNorms and the decoder stay float32."""
        self.float()
        cast_matmuls(self.layers, dtype, *([self.head_dense] if self.has_lm_head else []))
        return self

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.layers[0].qkv.weight.dtype if len(self.layers) else torch.float32

    # -- forward --------------------------------------------------------------------------------
    def max_tokens(self) -> int | None:
        """Longest input (tokens incl. ``<cls>``) the position embeddings allow; None for rotary."""
        if self.cfg.rotary:
            return None
        return self.cfg.max_position_embeddings - self.cfg.pad_token_id - 1

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Input embeddings (B, T, C) float32, as ``transformers`` ``EsmEmbeddings``."""
        cfg = self.cfg
        x = self.word(input_ids)  # (B, T, C)
        if cfg.token_dropout:
            is_mask = input_ids == cfg.mask_token_id  # (B, T)
            x = x.masked_fill(is_mask[..., None], 0.0)
            n_real = attention_mask.sum(-1) if attention_mask is not None else torch.full_like(input_ids[:, 0], input_ids.shape[1])
            ratio = is_mask.sum(-1).float() / n_real  # (B,)
            x = x * ((1 - MASK_RATIO_TRAIN) / (1 - ratio))[:, None, None]
        if self.pos is not None:
            real = (input_ids != cfg.pad_token_id).long()  # (B, T)
            positions = torch.cumsum(real, dim=1) * real + cfg.pad_token_id  # first real token -> pad_id + 1
            x = x + self.pos(positions)
        if self.emb_ln is not None:
            x = self.emb_ln(x)
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x.dtype)
        return x

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
               rescaling_factor: float | None = ...) -> torch.Tensor:  # type: ignore[assignment]
        """Final hidden states (B, T, C) float32 for token ids (B, T); mask (B, T) 1/True = real token.

        ``rescaling_factor`` overrides the config's rotary rescaling for this call (None: none).
        """
        import vareff_kernels as vk

        B, T = input_ids.shape
        limit = self.max_tokens()
        if limit is not None and T > limit:
            raise ValueError(f"{T} tokens > the {limit} learned positions of this model")
        if attention_mask is not None:
            attention_mask = attention_mask.to(torch.long)
        x = self.embed(input_ids, attention_mask)  # (B, T, C) float32
        kpm = None
        if attention_mask is not None:
            kpm = attention_mask.to(torch.bool)  # (B, T)
            if bool(kpm.all()):
                kpm = None  # no padding: let SDPA take its unmasked path
        rotary = None
        if self.cfg.rotary:
            base = self.cfg.rotary_base(rescaling_factor)
            cos, sin = vk.rotary_cos_sin(T, self.cfg.head_dim, base=base, device=x.device)  # (T, hs) each, float32
            cd = self.compute_dtype
            rotary = (cos.to(cd), sin.to(cd))
        for layer in self.layers:
            x = layer(x, kpm, rotary)
        return self.ln_after(x)  # (B, T, C) float32

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """MLM logits (..., V) float32 for hidden states (..., C) (any leading shape, e.g. selected rows)."""
        if not self.has_lm_head:
            raise RuntimeError("this checkpoint has no MLM head (lm_head.*)")
        import vareff_kernels as vk

        cd = self.head_dense.weight.dtype
        h = vk.bias_gelu(F.linear(hidden.to(cd), self.head_dense.weight), self.head_dense.bias).float()  # (..., C)
        h = self.head_ln(h)
        w = self.word.weight if self.decoder is None else self.decoder.weight  # (V, C)
        return F.linear(h, w, self.head_bias)  # (..., V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        hidden = self.encode(input_ids, attention_mask)
        return hidden, (self.mlm_logits(hidden) if self.has_lm_head else None)


# --------------------------------------------------------------------------- checkpoint remap


def hf_expected_shapes(cfg: EsmConfig, *, lm_head: bool = True, prefix: str = "esm.") -> dict[str, tuple[int, ...]]:
    """Every key of a Hugging Face NT state dict that this model needs, with its shape."""
    C, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    p0 = prefix
    e: dict[str, tuple[int, ...]] = {
        p0 + "embeddings.word_embeddings.weight": (V, C),
        p0 + "encoder.emb_layer_norm_after.weight": (C,),
        p0 + "encoder.emb_layer_norm_after.bias": (C,),
    }
    if not cfg.rotary:
        e[p0 + "embeddings.position_embeddings.weight"] = (cfg.max_position_embeddings, C)
    if cfg.emb_layer_norm_before:
        e[p0 + "embeddings.layer_norm.weight"] = (C,)
        e[p0 + "embeddings.layer_norm.bias"] = (C,)
    for i in range(cfg.num_hidden_layers):
        p = f"{p0}encoder.layer.{i}."
        e.update(attention_shapes(p, C))
        e.update(norm_shapes(p + "attention.LayerNorm", C))
        e.update(linear_shapes(p + "intermediate.dense", 2 * I if cfg.gated_ffn else I, C, cfg.ffn_bias))
        e.update(linear_shapes(p + "output.dense", C, I, cfg.ffn_bias))
        e.update(norm_shapes(p + "LayerNorm", C))
    if lm_head:
        e.update(linear_shapes("lm_head.dense", C, C))
        e.update(norm_shapes("lm_head.layer_norm", C))
        e["lm_head.bias"] = (V,)
        if not cfg.tie_word_embeddings:
            e["lm_head.decoder.weight"] = (V, C)
    return e


def hf_optional_shapes(cfg: EsmConfig, *, lm_head: bool = True, prefix: str = "esm.") -> dict[str, tuple[int, ...] | None]:
    """Keys a Hugging Face NT checkpoint may hold that this model accepts and does not use."""
    o: dict[str, tuple[int, ...] | None] = {prefix + "embeddings.position_ids": None}
    if cfg.rotary:  # InstaDeep's v2 code always creates (and saves) learned positions it never uses
        o[prefix + "embeddings.position_embeddings.weight"] = (cfg.max_position_embeddings, cfg.hidden_size)
    if lm_head and cfg.tie_word_embeddings:
        o["lm_head.decoder.weight"] = (cfg.vocab_size, cfg.hidden_size)
    return o


#: prefixes of keys that belong to parts of ``EsmForMaskedLM`` vareff does not use
HF_IGNORED_PREFIXES = ("esm.contact_head.", "esm.pooler.")


def drop_rotary_buffers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop every ``*inv_freq`` buffer: the rotary frequencies are recomputed from the config."""
    return {k: v for k, v in sd.items() if not k.endswith("inv_freq")}


def remap_backbone(sd: dict[str, torch.Tensor], cfg: EsmConfig, *, lm_head: bool, prefix: str = "esm.") -> dict[str, torch.Tensor]:
    """Map (already checked) Hugging Face NT keys onto :class:`EsmMaskedLM` parameter names (pure)."""
    g = sd.__getitem__
    out = {
        "word.weight": g(prefix + "embeddings.word_embeddings.weight"),
        "ln_after.weight": g(prefix + "encoder.emb_layer_norm_after.weight"),
        "ln_after.bias": g(prefix + "encoder.emb_layer_norm_after.bias"),
    }
    if not cfg.rotary:
        out["pos.weight"] = g(prefix + "embeddings.position_embeddings.weight")
    if cfg.emb_layer_norm_before:
        out["emb_ln.weight"] = g(prefix + "embeddings.layer_norm.weight")
        out["emb_ln.bias"] = g(prefix + "embeddings.layer_norm.bias")
    for i in range(cfg.num_hidden_layers):
        p, q = f"{prefix}encoder.layer.{i}.", f"layers.{i}."
        out[q + "qkv.weight"], out[q + "qkv.bias"] = fused_qkv(g, p + "attention.self.")
        out.update(take(g, p, q, {"attn_out": "attention.output.dense", "ln_attn": "attention.LayerNorm",
                                  "ln_ffn": "LayerNorm"}))
        out.update(take(g, p, q, {"fc1": "intermediate.dense", "fc2": "output.dense"},
                        ("weight", "bias") if cfg.ffn_bias else ("weight",)))
    if lm_head:
        out.update(take(g, "lm_head.", "", {"head_dense": "dense", "head_ln": "layer_norm"}))
        out["head_bias"] = g("lm_head.bias")
        if not cfg.tie_word_embeddings:
            out["decoder.weight"] = g("lm_head.decoder.weight")
    return out


def materialize(module: nn.Module, sd: dict[str, torch.Tensor]) -> nn.Module:
    """Load float32 copies of ``sd`` into a meta-built ``module`` (strict); eval mode, no gradients."""
    module = module.to_empty(device="cpu")
    module.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def flops_per_token(cfg: EsmConfig, T: int) -> float:
    """Approximate forward FLOPs per token of the encoder at sequence length T (matmuls only)."""
    C, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    ffn = 3 * C * I if cfg.gated_ffn else 2 * C * I
    return L * (2 * (4 * C * C + ffn) + 4 * T * C)  # projections + QK^T and PV
