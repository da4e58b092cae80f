"""The ``esm`` model family: Nucleotide Transformer v1 / v2 masked LMs, and SegmentNT by its architecture.

The trunk (config, modules, key remap) is :mod:`vareff.models.esm_trunk`, shared with
:mod:`vareff.models.segment_nt`; this module maps a masked-LM checkpoint onto it and is the
family loader :func:`vareff.models.load.load_model` finds for ``model_type: esm``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from vareff.models.esm_trunk import (
    HF_IGNORED_PREFIXES,
    EsmConfig,
    EsmMaskedLM,
    drop_rotary_buffers,
    flops_per_token,
    hf_expected_shapes,
    hf_optional_shapes,
    materialize,
    remap_backbone,
)
from vareff.models.shared import legacy_layernorm_names

log = logging.getLogger(__name__)

__all__ = ["EsmConfig", "EsmMaskedLM", "remap_state_dict", "hf_expected_shapes", "build", "load_checkpoint", "FAMILY",
           "flops_per_token"]


def remap_state_dict(sd: dict[str, torch.Tensor], cfg: EsmConfig, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a Hugging Face NT masked-LM state dict onto :class:`EsmMaskedLM` (pure function).

    Every required key must be present with the shape ``cfg`` implies and every other key must
    be a known optional or ignored one; otherwise :class:`~vareff.errors.CheckpointError` lists
    what is missing, extra or mis-shaped.  ``LayerNorm.gamma/beta`` names are accepted, every
    ``inv_freq`` buffer is dropped (recomputed), Q/K/V are concatenated into one projection.
    """
    from vareff.models.load import check_state_dict

    sd = drop_rotary_buffers(legacy_layernorm_names(sd))
    check_state_dict(hf_expected_shapes(cfg), sd, optional=hf_optional_shapes(cfg),
                     ignore_prefixes=HF_IGNORED_PREFIXES, source=source)
    return remap_backbone(sd, cfg, lm_head=True)


def build(cfg: EsmConfig, sd_hf: dict[str, torch.Tensor], *, source: str = "checkpoint") -> EsmMaskedLM:
    """Construct :class:`EsmMaskedLM` from a Hugging Face state dict (float32 parameters, eval mode)."""
    sd = remap_state_dict(sd_hf, cfg, source=source)
    with torch.device("meta"):
        model = EsmMaskedLM(cfg)
    return materialize(model, sd)


# --------------------------------------------------------------------------- family loader


def load_checkpoint(directory, hf_config: dict[str, Any], *, device, dtype, name: str | None = None):
    """Family loader for :func:`vareff.models.load.load_model`: NT v1/v2 masked LM, or SegmentNT."""
    archs = hf_config.get("architectures") or []
    if "SegmentNT" in archs:
        from vareff.models.segment_nt import load_checkpoint as load_segment_nt

        return load_segment_nt(directory, hf_config, device=device, dtype=dtype, name=name)

    from vareff.encode.kmer import KmerTokenizer
    from vareff.models.load import LoadedModel, read_state_dict

    directory = Path(directory)
    cfg = EsmConfig.from_hf(hf_config, source=str(directory / "config.json"))
    tok = KmerTokenizer.from_directory(directory, vocab_size=cfg.vocab_size)
    sd, files = read_state_dict(directory)
    model = build(cfg, sd, source=str(files[0] if len(files) == 1 else directory))
    model.set_compute_dtype(dtype).to(device)
    log.info("%s: %s masked LM, %d layers, hidden %d", directory, cfg.variant, cfg.num_hidden_layers, cfg.hidden_size)
    return LoadedModel(
        name=name or str(directory), family="esm", path=directory, config=cfg, module=model,
        tokenizer=tok, device=torch.device(device), dtype=dtype, weight_files=files,
    )


def _family():
    from vareff.models.load import Family

    return Family(name="esm", model_types=("esm",), architectures=("EsmForMaskedLM", "SegmentNT"), load=load_checkpoint)


FAMILY = _family()
