"""BERT masked-language model (GROVER, ``PoetschLab/GROVER``) in plain PyTorch.

Post-LayerNorm BERT as in Hugging Face ``BertForMaskedLM``::

    x = LN(word[ids] + pos[0..T-1] + token_type[0])
    per layer:  x = LN(x + Wo . attn(x));  x = LN(x + W2 . act(W1 . x))
    MLM head:   logits = LN(act(Wd . x)) @ word^T + bias          (decoder tied unless config says not)

Attention goes through :func:`vareff_kernels.attention` (SDPA on CPU, Triton on CUDA).  Shapes: B
batch, T tokens, C hidden, nh heads, hs head size, V vocabulary.

Precision: the residual stream, LayerNorms, embeddings and the vocabulary projection always run in
float32; with ``compute_dtype`` bfloat16/float16 only the large matmuls (QKV, attention, output and
FFN projections, head transform) run in that dtype; :meth:`BertMaskedLM.set_mixed` (the ``mixed``
policy) runs the encoder matmuls in bfloat16 with split hi+lo weights and keeps the head float32.  Loading is a pure function
(:func:`remap_state_dict`) that checks every key and shape first.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.profiler import record_function

from vareff.errors import CheckpointError
from vareff.models.shared import (
    EncoderSizes,
    add_mlm_head,
    attention_shapes,
    cast_matmuls,
    fused_qkv,
    legacy_layernorm_names,
    linear_shapes,
    norm_shapes,
    take,
)

log = logging.getLogger(__name__)

#: activations Hugging Face BERT configs name, mapped to ours ("gelu" is the exact erf form)
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


@dataclass(frozen=True)
class BertConfig(EncoderSizes):
    """Architecture of a BERT masked LM, read from a Hugging Face ``config.json``.

    Parameters
    ----------
    vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size : int
        Sizes (V, C, layers, nh, FFN width).  ``hidden_size`` must be divisible by the head count.
    max_position_embeddings : int
        Learned absolute positions; an input may have at most this many tokens (specials included).
    type_vocab_size : int
        Rows of the token-type table; only row 0 is used (single-segment inputs).
    layer_norm_eps : float
    hidden_act : str
        Hugging Face name (``gelu`` = exact erf GELU, ``gelu_new`` = tanh form, ``relu``, ``silu``).
    pad_token_id : int
    tie_word_embeddings : bool
        True (the default): the MLM decoder reuses the word-embedding matrix.
    """

    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    tie_word_embeddings: bool = True

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], *, source: str = "config.json") -> "BertConfig":
        """Build from a parsed ``config.json``; missing keys take Hugging Face ``BertConfig`` defaults.

        Raises :class:`~vareff.errors.CheckpointError` for settings this implementation does not
        reproduce exactly (relative position embeddings, decoder/cross-attention configs, unknown
        activations) instead of silently computing something else.
        """
        if "vocab_size" not in cfg:
            raise CheckpointError(f"{source} has no vocab_size", "is this a BERT config.json?")
        pet = cfg.get("position_embedding_type", "absolute")
        if pet not in (None, "absolute"):
            raise CheckpointError(
                f"{source}: position_embedding_type={pet!r} is not supported (only 'absolute')",
                "GROVER uses absolute positions; other BERT variants are not implemented",
            )
        if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
            raise CheckpointError(
                f"{source}: is_decoder/add_cross_attention is set; only bidirectional encoders are supported"
            )
        act = cfg.get("hidden_act", "gelu")
        if not isinstance(act, str) or act not in _ACTIVATIONS:
            raise CheckpointError(
                f"{source}: hidden_act={act!r} is not supported", f"supported: {', '.join(_ACTIVATIONS)}"
            )
        names = {f.name for f in fields(cls)}
        kw = {k: cfg[k] for k in names if k in cfg and cfg[k] is not None}
        c = cls(**kw)
        if c.hidden_size % c.num_attention_heads:
            raise CheckpointError(
                f"{source}: hidden_size={c.hidden_size} is not divisible by num_attention_heads={c.num_attention_heads}"
            )
        return c


# --------------------------------------------------------------------------- modules


def _range(name: str):
    """A named ``torch.profiler`` range while the profiler records (benchmarks/bench_grover.py
    ``--profile``, docs/grover.md 6.7); a no-op context otherwise."""
    return record_function(name) if torch.autograd._profiler_enabled() else nullcontext()


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    kind = _ACTIVATIONS[name]
    if kind == "gelu":
        return F.gelu(x)
    if kind == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if kind == "relu":
        return F.relu(x)
    return F.silu(x)


class BertLayer(nn.Module):
    """One post-LN encoder layer: self-attention, then the feed-forward block."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        C, I = cfg.hidden_size, cfg.intermediate_size
        self.nh, self.hs, self.eps, self.act = cfg.num_attention_heads, cfg.head_dim, cfg.layer_norm_eps, cfg.hidden_act
        self.qkv = nn.Linear(C, 3 * C)  # query, key, value stacked on the output dim
        self.attn_out = nn.Linear(C, C)
        self.ln1 = nn.LayerNorm(C, eps=self.eps)
        self.fc1 = nn.Linear(C, I)
        self.fc2 = nn.Linear(I, C)
        self.ln2 = nn.LayerNorm(C, eps=self.eps)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, capture: list | None = None) -> torch.Tensor:
        from vareff_kernels import attention

        B, T, C = x.shape  # x: float32 residual stream
        with _range("grover.gemm.qkv"):
            qkv = _linear(self.qkv, x)  # (B, T, 3C) in the compute dtype
        with _range("grover.attention"):
            q, k, v = qkv.view(B, T, 3, self.nh, self.hs).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hs)
            if self.__dict__.get("attention_fp32"):  # precision policy: scores/softmax/context in float32
                q, k, v = q.float(), k.float(), v.float()
            y = attention(q, k, v, key_padding_mask=key_padding_mask)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        with _range("grover.gemm.attn_out"):
            ao = _linear(self.attn_out, y)  # (B, T, C)
        with _range("grover.eltwise"):
            ao = ao.float()
            x1 = self.ln1(x + ao)  # (B, T, C) float32
        with _range("grover.gemm.fc1"):
            f1 = _linear(self.fc1, x1)  # (B, T, I)
        with _range("grover.eltwise"):
            h = _act(self.act, f1)  # (B, T, I)
        with _range("grover.gemm.fc2"):
            f2 = _linear(self.fc2, h)  # (B, T, C)
        with _range("grover.eltwise"):
            f2 = f2.float()
            if capture is not None:  # activations a delta pass anchors on (float32 passes only)
                capture.append({"x0": x, "qkv": qkv, "y": y, "ao": ao, "x1": x1, "f1": f1, "h": h, "f2": f2})
            return self.ln2(x1 + f2)  # (B, T, C) float32

    def forward_delta(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None, ref: dict,
                      exact_rows: torch.Tensor) -> torch.Tensor:
        """The layer on inputs ``x`` (B, T, C) that differ little from a captured float32 reference pass.

        Every projection is computed as ``W x = W x_ref + W (x - x_ref)``: the stored float32
        reference product plus a low-precision product of the (small) difference, so the rounding
        error scales with the difference, not with the activations.  ``exact_rows`` (flat indices
        into B*T: the tokens that differ from the reference) are recomputed in float32.  Attention,
        LayerNorm and the activation run in float32 on the full values.  ``ref`` tensors are
        (1, T, .) and broadcast over the batch.
        """
        from vareff_kernels import attention

        B, T, C = x.shape
        qkv = _delta_linear(self.qkv, x, ref["x0"], ref["qkv"], exact_rows)  # (B, T, 3C) float32
        q, k, v = qkv.view(B, T, 3, self.nh, self.hs).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hs)
        y = attention(q, k, v, key_padding_mask=key_padding_mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        x1 = self.ln1(x + _delta_linear(self.attn_out, y, ref["y"], ref["ao"], exact_rows))  # (B, T, C)
        h = _act(self.act, _delta_linear(self.fc1, x1, ref["x1"], ref["f1"], exact_rows))  # (B, T, I)
        return self.ln2(x1 + _delta_linear(self.fc2, h, ref["h"], ref["f2"], exact_rows))  # (B, T, C)


def _linear(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` in the layer's compute dtype.  With split weights (:meth:`BertMaskedLM.set_mixed`)
    one bfloat16 matmul with float32 accumulation: ``[x, x] . [W_hi, W_lo]`` (K doubled: weights
    with ~16 significant bits), or for a split input ``[x_hi, x_lo, x_hi] . [W_hi, W_hi, W_lo]``
    (K tripled: the float32 input keeps ~16 bits too); the output is bfloat16."""
    w2 = lin.__dict__.get("weight_split")  # plain attribute set by set_mixed (not a parameter)
    if w2 is None:
        return lin(x.to(lin.weight.dtype))
    hi = x.to(w2.dtype)
    if lin.__dict__.get("split_input"):
        parts = (hi, (x.float() - hi.float()).to(w2.dtype), hi)
    else:
        parts = (hi, hi)
    return F.linear(torch.cat(parts, -1), w2, lin.__dict__["bias_lp"])


def _delta_linear(lin: nn.Linear, x: torch.Tensor, x_ref: torch.Tensor, y_ref: torch.Tensor,
                  exact_rows: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` (float32) as ``y_ref + W_lp (x - x_ref)``; rows in ``exact_rows`` computed in float32."""
    w_lp = lin.weight_lp  # low-precision copy of the float32 weight (set by enable_delta)
    d = (x - x_ref).to(w_lp.dtype)  # (B, T, K)
    y = torch.add(y_ref, F.linear(d, w_lp))  # (B, T, N) float32 (type promotion)
    if exact_rows.numel():
        yf = y.view(-1, y.shape[-1])  # (B*T, N)
        xf = x.reshape(-1, x.shape[-1]).index_select(0, exact_rows)  # (n, K)
        yf.index_copy_(0, exact_rows, F.linear(xf, lin.weight, lin.bias))
    return y


class BertMaskedLM(nn.Module):
    """BERT encoder + MLM head.  ``forward(ids, mask)`` -> (hidden (B, T, C) float32, logits (B, T, V))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        C, V = cfg.hidden_size, cfg.vocab_size
        self.word = nn.Embedding(V, C)
        self.pos = nn.Embedding(cfg.max_position_embeddings, C)
        self.tok_type = nn.Embedding(cfg.type_vocab_size, C)
        self.emb_ln = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        add_mlm_head(self, C, V, cfg.layer_norm_eps, cfg.tie_word_embeddings)

    # -- precision ------------------------------------------------------------------------------
    def set_compute_dtype(self, dtype: torch.dtype) -> "BertMaskedLM":
        """Cast the big matmul weights to ``dtype``; embeddings, LayerNorms and the decoder stay float32."""
        self.float()
        cast_matmuls(self.layers, dtype, self.head_dense)
        return self

    def set_mixed(self, dtype: torch.dtype = torch.bfloat16) -> "BertMaskedLM":
        """The ``mixed`` precision policy: encoder matmuls in ``dtype`` with split weights.

        Each projection weight ``W`` (float32) is stored once as ``[W_hi, W_lo]`` (``W_hi`` = W rounded
        to ``dtype``, ``W_lo`` = the rounding remainder), so a single low-precision matmul of ``[x, x]``
        computes ``W x`` with the weight error of ~16 significant bits.  The projections that read the
        float32 LayerNorm outputs (QKV, FFN-in) also split their input: ``[x_hi, x_lo, x_hi]`` against
        ``[W_hi, W_hi, W_lo]``.  The attention and GELU outputs (inputs of the output and FFN-out
        projections) are ``dtype``; embeddings, the residual stream, LayerNorms and the MLM head stay
        float32.  Why these splits: docs/grover.md, section 6.5.
        """
        self.float()
        for layer in self.layers:
            for lin in (layer.qkv, layer.attn_out, layer.fc1, layer.fc2):
                w = lin.weight.detach()
                hi = w.to(dtype)
                lo = (w - hi.float()).to(dtype)
                split_input = lin is layer.qkv or lin is layer.fc1
                parts = (hi, hi, lo) if split_input else (hi, lo)
                lin.__dict__["weight_split"] = torch.cat(parts, 1).contiguous()  # (N, 3K) or (N, 2K)
                lin.__dict__["split_input"] = split_input
                lin.__dict__["bias_lp"] = lin.bias.detach().to(dtype)
        return self

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.head_dense.weight.dtype

    # -- forward --------------------------------------------------------------------------------
    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        B, T = input_ids.shape
        if T > self.cfg.max_position_embeddings:
            raise ValueError(f"{T} tokens > max_position_embeddings={self.cfg.max_position_embeddings}")
        kpm = None
        if attention_mask is not None:
            kpm = attention_mask.to(torch.bool)  # (B, T)
            if bool(kpm.all()):
                kpm = None  # no padding: let SDPA take its unmasked path
        pos = self.pos.weight[:T] + self.tok_type.weight[0]  # (T, C)
        return self.emb_ln(self.word(input_ids) + pos), kpm  # (B, T, C) float32

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
               capture: list | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) float32 for token ids (B, T); mask (B, T) 1/True = real token.

        ``capture``: a list that receives one dict of activations per layer, the anchor of
        :meth:`encode_delta` (only meaningful for a float32 model).
        """
        with _range("grover.embed"):
            x, kpm = self._embed(input_ids, attention_mask)
        for layer in self.layers:
            x = layer(x, kpm, capture)
        return x

    def enable_delta(self, dtype: torch.dtype = torch.bfloat16) -> "BertMaskedLM":
        """Keep ``dtype`` copies of the encoder weights for :meth:`encode_delta` (float32 weights stay)."""
        for layer in self.layers:
            for lin in (layer.qkv, layer.attn_out, layer.fc1, layer.fc2):
                lin.weight_lp = lin.weight.detach().to(dtype)
        return self

    def encode_delta(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, anchors: list[dict],
                     anchor_row: int, anchor_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) of inputs that differ from one captured float32 pass in few tokens.

        ``anchors``: the ``capture`` list of an :meth:`encode` call over (B_ref, T) inputs with the same
        token count T as ``input_ids``; ``anchor_row`` picks the reference row and ``anchor_ids`` (T,)
        are its token ids.  Tokens that differ from it are computed exactly in float32, all other rows
        as float32 reference + low-precision difference (dtype of :meth:`enable_delta`); see
        :meth:`BertLayer.forward_delta`.  Close to a float32 pass, at close to low-precision matmul cost.
        """
        x, kpm = self._embed(input_ids, attention_mask)
        exact = (input_ids != anchor_ids[None, :]).flatten().nonzero().squeeze(1)  # flat (b, t) indices
        for layer, ref in zip(self.layers, anchors):
            r = {k: v[anchor_row:anchor_row + 1] for k, v in ref.items()}  # (1, T, .) broadcast views
            x = layer.forward_delta(x, kpm, r, exact)
        return x

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """MLM logits (..., V) float32 for hidden states (..., C) (any leading shape, e.g. selected rows)."""
        with _range("grover.gemm.head"):
            cd = self.head_dense.weight.dtype
            h = _act(self.cfg.hidden_act, self.head_dense(hidden.to(cd)).float())  # (..., C)
            h = self.head_ln(h)
            w = self.word.weight if self.decoder is None else self.decoder.weight  # (V, C)
            return F.linear(h, w, self.head_bias)  # (..., V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        hidden = self.encode(input_ids, attention_mask)
        return hidden, self.mlm_logits(hidden)


# --------------------------------------------------------------------------- checkpoint remap


def hf_expected_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """Every key of a Hugging Face ``BertForMaskedLM`` state dict that this model needs, with its shape."""
    C, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    e = {
        "bert.embeddings.word_embeddings.weight": (V, C),
        "bert.embeddings.position_embeddings.weight": (cfg.max_position_embeddings, C),
        "bert.embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, C),
        "bert.embeddings.LayerNorm.weight": (C,),
        "bert.embeddings.LayerNorm.bias": (C,),
        "cls.predictions.bias": (V,),
        "cls.predictions.transform.dense.weight": (C, C),
        "cls.predictions.transform.dense.bias": (C,),
        "cls.predictions.transform.LayerNorm.weight": (C,),
        "cls.predictions.transform.LayerNorm.bias": (C,),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        e.update(attention_shapes(p, C))
        e.update(norm_shapes(p + "attention.output.LayerNorm", C))
        e.update(linear_shapes(p + "intermediate.dense", I, C))
        e.update(linear_shapes(p + "output.dense", C, I))
        e.update(norm_shapes(p + "output.LayerNorm", C))
    if not cfg.tie_word_embeddings:
        e["cls.predictions.decoder.weight"] = (V, C)
    return e


#: keys a Hugging Face checkpoint may hold that this model does not use (checked, then dropped)
HF_OPTIONAL = (
    "bert.embeddings.position_ids",  # persisted buffer in older transformers versions
    "cls.predictions.decoder.weight",  # tied copy of the word embeddings
    "cls.predictions.decoder.bias",  # tied copy of cls.predictions.bias
)
HF_IGNORED_PREFIXES = (
    "bert.pooler.",  # BertModel pooler: not part of the MLM
    "cls.seq_relationship.",  # next-sentence head of BertForPreTraining checkpoints
)


def remap_state_dict(sd: dict[str, torch.Tensor], cfg: BertConfig, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a Hugging Face ``BertForMaskedLM`` state dict onto :class:`BertMaskedLM` (pure function).

    Every required key must be present with the shape ``cfg`` implies, and every other key must be
    a known optional one; otherwise :class:`~vareff.errors.CheckpointError` lists what is missing,
    extra or mis-shaped.  Q/K/V weights are concatenated into one ``qkv`` projection.
    """
    from vareff.models.load import check_state_dict

    sd = legacy_layernorm_names(sd)
    expected = hf_expected_shapes(cfg)
    optional = {
        "bert.embeddings.position_ids": None,
        "cls.predictions.decoder.weight": (cfg.vocab_size, cfg.hidden_size),
        "cls.predictions.decoder.bias": (cfg.vocab_size,),
    }
    check_state_dict(expected, sd, optional=optional, ignore_prefixes=HF_IGNORED_PREFIXES, source=source)

    g = sd.__getitem__
    out = take(g, "bert.embeddings.", "", {"word": "word_embeddings", "pos": "position_embeddings",
                                           "tok_type": "token_type_embeddings"}, ("weight",))
    out.update(take(g, "bert.embeddings.", "", {"emb_ln": "LayerNorm"}))
    out.update(take(g, "cls.predictions.transform.", "", {"head_dense": "dense", "head_ln": "LayerNorm"}))
    out["head_bias"] = g("cls.predictions.bias")
    for i in range(cfg.num_hidden_layers):
        p, q = f"bert.encoder.layer.{i}.", f"layers.{i}."
        out[q + "qkv.weight"], out[q + "qkv.bias"] = fused_qkv(g, p + "attention.self.")
        out.update(take(g, p, q, {"attn_out": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                                  "fc1": "intermediate.dense", "fc2": "output.dense", "ln2": "output.LayerNorm"}))
    if cfg.tie_word_embeddings:
        dec = sd.get("cls.predictions.decoder.weight")
        if dec is not None and not torch.equal(dec.float(), out["word.weight"].float()):
            # transformers re-ties after loading, so the word embeddings win; say so.
            log.warning("%s: cls.predictions.decoder.weight differs from the tied word embeddings; "
                        "using the word embeddings (tie_word_embeddings=true), as transformers does", source)
    else:
        out["decoder.weight"] = g("cls.predictions.decoder.weight")
    # Output bias: transformers 4.x always shares cls.predictions.bias with the decoder; 5.x ties the
    # decoder's own bias to it only when tie_word_embeddings is true, and otherwise applies the
    # decoder's bias.  Pick what the library applies; both are equal in 4.x-era checkpoints.
    dbias = sd.get("cls.predictions.decoder.bias")
    if dbias is not None and not cfg.tie_word_embeddings:
        out["head_bias"] = dbias
    elif dbias is not None and not torch.equal(dbias.float(), out["head_bias"].float()):
        log.warning("%s: cls.predictions.decoder.bias differs from cls.predictions.bias; using the latter "
                    "(tie_word_embeddings=true)", source)
    return out


def build(cfg: BertConfig, sd_hf: dict[str, torch.Tensor], *, source: str = "checkpoint") -> BertMaskedLM:
    """Construct :class:`BertMaskedLM` from a Hugging Face state dict (float32 parameters, eval mode)."""
    sd = remap_state_dict(sd_hf, cfg, source=source)
    with torch.device("meta"):
        model = BertMaskedLM(cfg)
    model = model.to_empty(device="cpu")
    sd = {k: v.to(torch.float32) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def flops_per_token(cfg: BertConfig, T: int) -> float:
    """Approximate forward FLOPs per token of the encoder at sequence length T (matmuls only)."""
    C, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return L * (2 * (4 * C * C + 2 * C * I) + 4 * T * C)  # projections + QK^T and PV


# --------------------------------------------------------------------------- family loader


def load_checkpoint(directory, hf_config: dict[str, Any], *, device, dtype, name: str | None = None):
    """Family loader for :func:`vareff.models.load.load_model`: module + the checkpoint's tokenizer."""
    from pathlib import Path

    from vareff.encode.bpe import BpeTokenizer
    from vareff.encode.kmer_overlap import OverlappingKmerTokenizer, is_overlapping_kmer_checkpoint
    from vareff.models.load import LoadedModel, read_state_dict

    directory = Path(directory)
    cfg = BertConfig.from_hf(hf_config, source=str(directory / "config.json"))
    # GROVER: tokenizer.json (BPE; extra tokenizer ids are accepted only if never emitted, GROVER's empty
    # piece at id 609); DNABERT v1: a vocab.txt of overlapping k-mers and no tokenizer.json
    dnabert = is_overlapping_kmer_checkpoint(directory)
    if dnabert:
        tok = OverlappingKmerTokenizer.from_directory(directory)
        if tok.vocab_size > cfg.vocab_size:
            raise CheckpointError(f"{tok.source} has {tok.vocab_size} tokens but config.json vocab_size={cfg.vocab_size}",
                                  "tokenizer and weights must come from the same checkpoint")
    else:
        tok = BpeTokenizer(directory).restrict_to(cfg.vocab_size, config_source=str(directory / "config.json"))
    sd, files = read_state_dict(directory)
    model = build(cfg, sd, source=str(files[0] if len(files) == 1 else directory))
    model.set_compute_dtype(dtype).to(device)
    return LoadedModel(
        name=name or str(directory), family="dnabert" if dnabert else "bert", path=directory, config=cfg, module=model,
        tokenizer=tok, device=torch.device(device), dtype=dtype, weight_files=files,
    )


def _family():
    from vareff.models.load import Family

    return Family(name="bert", model_types=("bert",), architectures=("BertForMaskedLM",), load=load_checkpoint)


FAMILY = _family()
