"""SegmentNT = Nucleotide Transformer v2 trunk + 1D U-Net segmentation head (gReLU-style composition).

Shapes (B batch, T DNA tokens, C hidden, F features, k = 6 nucleotides per token)::

    ids (B, 1 + T)  --trunk-->  hidden (B, 1 + T, C)           after the final LayerNorm
    drop <cls>                  (B, T, C)             (the published code transposes to channels-first;
                                                       vareff's U-Net works channels-last)
    U-Net (2 levels: C, 2C)     (B, T, 2 (C // 2))    then SiLU
    Linear                      (B, T, k * F * 2)     per token: (nucleotide 0..k-1, feature, class)
    reshape                     (B, k T, F, 2)        row j = nucleotide j of the input
    softmax over the 2 classes, class 1  ->  probabilities (B, k T, F)

Inputs must be ACGT-only (every nucleotide inside a 6-mer, so that row j is nucleotide j) with T
divisible by 4 (the head pools twice): a window length divisible by 24.  Avoid padding: the
convolutions have no mask.

Rotary rescaling: the trunk's rotary base is ``10000 * s^(hs/(hs-2))``.  ``s`` is the config's
``rescaling_factor`` (2.44140625 = 5000 / 2048 for the published models: trained on 5000 DNA
tokens with a backbone trained on 2048) for every input up to the training length; beyond it
(``T > s_cfg * (max_position_embeddings - 2)`` tokens, i.e. > 30 kb) vareff uses
``s = (T + 1) / (max_position_embeddings - 2)`` as the official inference notebook does.  A fixed
factor can be forced per call.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vareff.errors import CheckpointError
from vareff.models.esm_trunk import (
    EsmConfig,
    EsmMaskedLM,
    HF_IGNORED_PREFIXES,
    drop_rotary_buffers,
    hf_expected_shapes,
    hf_optional_shapes,
    materialize,
    remap_backbone,
)
from vareff.models.shared import legacy_layernorm_names
from vareff.models.load import LoadedModel, ModelOutput
from vareff.models.unet1d import UNet1D, UNet1DConfig

log = logging.getLogger(__name__)

__all__ = ["SegmentNTConfig", "SegmentNT", "SegmentNTHead", "SegmentNTModel", "SegmentNTOutput",
           "column_safe", "remap_state_dict", "build", "load_checkpoint"]

#: the published feature list (InstaDeepAI/segment_nt and segment_nt_multi_species config.json)
PUBLISHED_FEATURES = (
    "protein_coding_gene", "lncRNA", "exon", "intron", "splice_donor", "splice_acceptor", "5UTR", "3UTR",
    "CTCF-bound", "polyA_signal", "enhancer_Tissue_specific", "enhancer_Tissue_invariant",
    "promoter_Tissue_specific", "promoter_Tissue_invariant",
)


def column_safe(name: str) -> str:
    """Column-safe feature name: lower case, runs of non-alphanumerics -> ``_`` (``CTCF-bound`` -> ``ctcf_bound``)."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class SegmentNTConfig:
    """A SegmentNT checkpoint: trunk config, features and head shape.

    Parameters
    ----------
    backbone : EsmConfig
        NT-v2 trunk (its ``rescaling_factor`` is the training factor).
    features : tuple of str
        Output features in order (the published 14).
    num_layers_head : int
        U-Net levels (2).
    kmer : int
        Nucleotides per token (6).
    """

    backbone: EsmConfig
    features: tuple[str, ...] = PUBLISHED_FEATURES
    num_layers_head: int = 2
    kmer: int = 6

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def token_multiple(self) -> int:
        """DNA tokens per window must be a multiple of this (``2**num_layers_head``)."""
        return 2 ** self.num_layers_head

    @property
    def nt_multiple(self) -> int:
        """Window lengths (nt) must be a multiple of this (24 for SegmentNT)."""
        return self.kmer * self.token_multiple

    @property
    def backbone_tokens(self) -> int:
        """Training length of the NT backbone in tokens (``max_position_embeddings - 2``: 2048)."""
        return self.backbone.max_position_embeddings - 2

    @property
    def trained_tokens(self) -> int | None:
        """DNA tokens SegmentNT was trained on (``s * backbone_tokens``: 5000), None without rescaling."""
        s = self.backbone.rescaling_factor
        return None if s is None else int(round(s * self.backbone_tokens))

    def unet(self) -> UNet1DConfig:
        C = self.backbone.hidden_size
        return UNet1DConfig(in_channels=C, channels=tuple(C * 2 ** i for i in range(self.num_layers_head)),
                            out_channels=2 * (C // 2))

    def rescaling_for(self, n_dna_tokens: int) -> float | None:
        """Rotary rescaling factor for an input of ``n_dna_tokens`` (excl. ``<cls>``); see the module doc."""
        s = self.backbone.rescaling_factor
        trained = self.trained_tokens
        if s is None or trained is None or n_dna_tokens <= trained:
            return s
        return (n_dna_tokens + 1) / self.backbone_tokens

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], *, source: str = "config.json") -> "SegmentNTConfig":
        backbone = EsmConfig.from_hf(cfg, source=source)
        if not backbone.rotary or not backbone.gated_ffn:
            raise CheckpointError(f"{source}: a SegmentNT config must describe an NT-v2 trunk "
                                  "(position_embedding_type rotary and add_bias_fnn)",
                                  "is this the config.json of InstaDeepAI/segment_nt?")
        feats = cfg.get("features")
        if feats is None:
            n = cfg.get("num_features")
            if n is None:
                raise CheckpointError(f"{source}: SegmentNT config has neither 'features' nor 'num_features'")
            feats = list(PUBLISHED_FEATURES) if int(n) == len(PUBLISHED_FEATURES) else [f"feature_{i}" for i in range(int(n))]
            log.info("%s has no feature names; using %s", source,
                     "the published 14" if int(n) == len(PUBLISHED_FEATURES) else "feature_<i>")
        feats = tuple(str(f) for f in feats)
        safe = [column_safe(f) for f in feats]
        if len(set(safe)) != len(safe) or not all(safe):
            raise CheckpointError(f"{source}: feature names {feats} do not map to distinct column names")
        return cls(backbone=backbone, features=feats, num_layers_head=int(cfg.get("num_layers_head", 2)))


# --------------------------------------------------------------------------- modules


class SegmentNTHead(nn.Module):
    """Drop ``<cls>``, U-Net, SiLU, per-token Linear to (k, F, 2): (B, 1+T, C) -> logits (B, kT, F, 2)."""

    def __init__(self, cfg: SegmentNTConfig):
        super().__init__()
        self.cfg = cfg
        ucfg = cfg.unet()
        self.unet = UNet1D(ucfg)
        self.fc = nn.Linear(ucfg.out_channels, cfg.kmer * cfg.num_features * 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        cd = self.fc.weight.dtype
        B, T1, C = hidden.shape
        T = T1 - 1
        x = hidden[:, 1:].to(cd)  # (B, T, C): <cls> dropped
        x = F.silu(self.unet(x))  # (B, T, C')
        x = self.fc(x)  # (B, T, k*F*2)
        return x.float().reshape(B, T * self.cfg.kmer, self.cfg.num_features, 2)  # (B, kT, F, 2)


class SegmentNT(nn.Module):
    """Trunk (:class:`~vareff.models.esm_trunk.EsmMaskedLM`) + head (:class:`SegmentNTHead`).

    ``forward(ids, mask)`` -> (hidden (B, 1+T, C) float32, segmentation logits (B, 6T, F, 2) float32).
    """

    def __init__(self, cfg: SegmentNTConfig, *, lm_head: bool = False):
        super().__init__()
        self.cfg = cfg
        self.trunk = EsmMaskedLM(cfg.backbone, lm_head=lm_head)
        self.head = SegmentNTHead(cfg)

    def set_compute_dtype(self, dtype: torch.dtype) -> "SegmentNT":
        self.trunk.set_compute_dtype(dtype)
        self.head.to(dtype)
        return self

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
               rescaling_factor: float | None = ...) -> torch.Tensor:  # type: ignore[assignment]
        """Trunk hidden states (B, 1+T, C); the rotary rescaling follows :meth:`SegmentNTConfig.rescaling_for`."""
        if rescaling_factor is ...:
            rescaling_factor = self.cfg.rescaling_for(input_ids.shape[1] - 1)
        return self.trunk.encode(input_ids, attention_mask, rescaling_factor=rescaling_factor)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                rescaling_factor: float | None = ...):  # type: ignore[assignment]
        hidden = self.encode(input_ids, attention_mask, rescaling_factor=rescaling_factor)
        return hidden, self.head(hidden)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Per-nucleotide feature probabilities (..., F) from logits (..., F, 2): softmax, class 1."""
        return torch.softmax(logits.float(), dim=-1)[..., 1]


# --------------------------------------------------------------------------- checkpoint remap


def head_expected_shapes(cfg: SegmentNTConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face keys of the SegmentNT head (``unet.*``, ``fc.*``) with their shapes."""
    u = cfg.unet()
    n, k = u.convs_per_block, u.kernel_size
    e: dict[str, tuple[int, ...]] = {}
    ins = (u.in_channels,) + tuple(u.channels[:-1])
    for i, (ci, co) in enumerate(zip(ins, u.channels)):
        for j in range(n):
            e[f"unet._downsample_blocks.{i}.conv_layers.{j}.weight"] = (co, ci if j == 0 else co, k)  # Conv1d (out, in, k)
            e[f"unet._downsample_blocks.{i}.conv_layers.{j}.bias"] = (co,)
    for i, (ci, co) in enumerate(u.up_channels()):
        for j in range(n):
            e[f"unet._upsample_blocks.{i}.conv_layers.{j}.weight"] = (ci if j == 0 else co, co, k)  # ConvTranspose1d (in, out, k)
            e[f"unet._upsample_blocks.{i}.conv_layers.{j}.bias"] = (co,)
    for j in range(n):
        e[f"unet.final_block.conv_layers.{j}.weight"] = (u.out_channels, u.channels[0] if j == 0 else u.out_channels, k)
        e[f"unet.final_block.conv_layers.{j}.bias"] = (u.out_channels,)
    e["fc.weight"] = (cfg.kmer * cfg.num_features * 2, u.out_channels)
    e["fc.bias"] = (cfg.kmer * cfg.num_features * 2,)
    return e


def _head_name(key: str) -> str:
    """``unet._downsample_blocks.0.conv_layers.1.weight`` -> ``head.unet.down.0.convs.1.weight``."""
    k = key.replace("unet._downsample_blocks.", "unet.down.").replace("unet._upsample_blocks.", "unet.up.")
    k = k.replace("unet.final_block.", "unet.final.").replace(".conv_layers.", ".convs.")
    return "head." + k


def remap_state_dict(sd: dict[str, torch.Tensor], cfg: SegmentNTConfig, *,
                     source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], bool]:
    """Map a Hugging Face SegmentNT state dict onto :class:`SegmentNT` (pure function).

    Returns ``(state_dict, has_lm_head)``.  The trunk keys are those of NT v2 under ``esm.``;
    the head keys are ``unet.*`` and ``fc.*`` (:func:`head_expected_shapes`).  An MLM head
    (``lm_head.*``) is optional but, when present, must be complete.  Every missing, extra or
    mis-shaped key raises :class:`~vareff.errors.CheckpointError`.
    """
    from vareff.models.load import check_state_dict

    sd = drop_rotary_buffers(legacy_layernorm_names(sd))
    has_lm = any(k.startswith("lm_head.") for k in sd)
    bb = cfg.backbone
    expected = hf_expected_shapes(bb, lm_head=has_lm)
    expected.update(head_expected_shapes(cfg))
    check_state_dict(expected, sd, optional=hf_optional_shapes(bb, lm_head=has_lm),
                     ignore_prefixes=HF_IGNORED_PREFIXES, source=source)
    out = {"trunk." + k: v for k, v in remap_backbone(sd, bb, lm_head=has_lm).items()}
    for k in head_expected_shapes(cfg):
        out[_head_name(k)] = sd[k]
    return out, has_lm


def build(cfg: SegmentNTConfig, sd_hf: dict[str, torch.Tensor], *, source: str = "checkpoint") -> SegmentNT:
    """Construct :class:`SegmentNT` from a Hugging Face state dict (float32 parameters, eval mode)."""
    sd, has_lm = remap_state_dict(sd_hf, cfg, source=source)
    with torch.device("meta"):
        model = SegmentNT(cfg, lm_head=has_lm)
    return materialize(model, sd)


# --------------------------------------------------------------------------- loaded model


@dataclass
class SegmentNTOutput(ModelOutput):
    """SegmentNT outputs, float32.

    ``logits`` (B, 6T, F, 2): the segmentation logits (what the Hugging Face SegmentNT returns as
    ``logits``); ``probabilities`` (B, 6T, F): per-nucleotide feature probabilities;
    ``last_hidden_state`` (B, 1+T, C): trunk output; ``features``: the F names in order.
    """

    probabilities: torch.Tensor | None = None
    features: tuple[str, ...] = ()


@dataclass
class SegmentNTModel(LoadedModel):
    """A loaded SegmentNT checkpoint: :meth:`tokenize` then :meth:`forward` -> :class:`SegmentNTOutput`."""

    features: tuple[str, ...] = field(default_factory=tuple)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                rescaling_factor: float | None = ...) -> SegmentNTOutput:  # type: ignore[assignment]
        """Run trunk and head; ``rescaling_factor`` overrides the automatic rotary rescaling."""
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        hidden, logits = self.module(input_ids, attention_mask, rescaling_factor=rescaling_factor)
        return SegmentNTOutput(logits=logits, last_hidden_state=hidden,
                               probabilities=SegmentNT.probabilities(logits), features=self.features)

    __call__ = forward


def load_checkpoint(directory, hf_config: dict[str, Any], *, device, dtype, name: str | None = None) -> SegmentNTModel:
    """Family loader part for ``architectures: ["SegmentNT"]`` (called from :mod:`vareff.models.esm`)."""
    from vareff.encode.kmer import KmerTokenizer
    from vareff.models.load import read_state_dict

    directory = Path(directory)
    cfg = SegmentNTConfig.from_hf(hf_config, source=str(directory / "config.json"))
    tok = KmerTokenizer.from_directory(directory, vocab_size=cfg.backbone.vocab_size, k=cfg.kmer)
    sd, files = read_state_dict(directory)
    model = build(cfg, sd, source=str(files[0] if len(files) == 1 else directory))
    model.set_compute_dtype(dtype).to(device)
    log.info("%s: SegmentNT, %d features, NT-v2 trunk %d layers / hidden %d, rescaling factor %s",
             directory, cfg.num_features, cfg.backbone.num_hidden_layers, cfg.backbone.hidden_size,
             cfg.backbone.rescaling_factor)
    return SegmentNTModel(
        name=name or str(directory), family="segment_nt", path=directory, config=cfg, module=model,
        tokenizer=tok, device=torch.device(device), dtype=dtype, weight_files=files, features=cfg.features,
    )
