"""Model names and checkpoint directories -> backends (:class:`~vareff.score.base.Scorer`)."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vareff.config import RunConfig
from vareff.errors import ConfigError
from vareff.score.base import Scorer

if TYPE_CHECKING:
    import torch

#: bundled backends: name -> one-line description (shown by `vareff models`)
BUILTIN = {
    "spliceai": "SpliceAI-10k splice-site model (Jaganathan et al. 2019): DS/DP acceptor/donor gain/loss "
                "per gene; weights from the `spliceai` wheel (CC BY-NC 4.0); options --spliceai-*",
}

#: checkpoint families recognised from a local directory's config.json
CHECKPOINT_FAMILIES = {
    "bert": "GROVER-style BERT masked LM (PoetschLab/GROVER layout): grover_llr, grover_embedding_distance, "
            "...; options grover.* (docs/grover.md)",
    "dnabert": "DNABERT v1 masked LM over overlapping k-mers (zhihan1996/DNA_bert_3..6: model_type bert with a "
               "k-mer vocab.txt): dnabert_llr, dnabert_embedding_distance, ...; options dnabert.* (docs/dnabert.md)",
    "esm": "Nucleotide Transformer v1/v2 masked LM (nt_llr, nt_embedding_distance, ...; options nt.*), or "
           "SegmentNT (architectures: SegmentNT): segmentnt_<element>_delta for 14 elements, --segmentnt-k, "
           "--profiles (docs/nt_segmentnt.md)",
}


#: checkpoint family (``model_type``) -> the score module whose ``make_scorer(path, device=, dtype=,
#: batch_size=, options=)`` builds its backend (docs/adding-a-model.md)
SCORER_MODULES = {
    "bert": "vareff.score.grover",
    "dnabert": "vareff.score.dnabert",  # model_type bert, told apart by its k-mer vocab.txt
    "esm": "vareff.score.nt",
}


#: device nodes of the NVIDIA and ROCm drivers: without any of them torch cannot see a GPU
_GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd")


def quick_device(device: str) -> str | None:
    """``device`` resolved without importing torch where that is certain ("cpu"; "auto" on a Linux
    machine with no GPU driver), else None (ask :func:`resolve_device`)."""
    if device == "cpu":
        return device
    if device == "auto" and sys.platform.startswith("linux") and not any(map(os.path.exists, _GPU_DRIVER_PATHS)):
        return "cpu"
    return None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here", "use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device {device!r} is not known", "use auto, cpu or cuda[:N]")
    return device


#: ``--dtype`` spellings -> torch dtype names
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}


def dtype_name(dtype: str | None, default: str = "float32") -> str:
    """The torch dtype name for ``--dtype`` (checked without importing torch)."""
    if dtype is None:
        return default
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"--dtype {dtype!r} is not known", "use float32, bfloat16 or float16")
    return DTYPE_NAMES[dtype]


def resolve_dtype(dtype: str | None, default: torch.dtype | None = None) -> torch.dtype:
    import torch

    if dtype is None and default is not None:
        return default
    return getattr(torch, dtype_name(dtype))


def make_scorer(spec: str, cfg: RunConfig) -> Scorer:
    """Build the backend for ``-m spec``: a bundled name or a local checkpoint directory."""
    if spec == "spliceai":
        from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer

        opts = SpliceAIOptions(distance=cfg.spliceai_distance, mask=cfg.spliceai_mask,
                               annotation=cfg.spliceai_annotation, weights=cfg.spliceai_weights,
                               batch_size=cfg.batch_size)
        # a run served entirely from the store imports no torch (where the device is known without it)
        device = quick_device(cfg.device) or resolve_device(cfg.device)
        return SpliceAIScorer(opts, device=device, dtype=dtype_name(cfg.dtype), threads=cfg.threads)
    device = resolve_device(cfg.device)
    path = Path(spec)
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise ConfigError(f"-m {spec}: the directory has no config.json",
                              "point -m at a Hugging Face checkpoint directory (config.json + weights)")
        from vareff.models.load import read_config

        meta = read_config(path)  # CheckpointError (not a traceback) for invalid JSON / a non-object
        family = meta.get("model_type")
        if family == "bert":
            from vareff.encode.kmer_overlap import is_overlapping_kmer_checkpoint

            family = "dnabert" if is_overlapping_kmer_checkpoint(path) else family
        if family in SCORER_MODULES:
            make = importlib.import_module(SCORER_MODULES[family]).make_scorer
            # GROVER (bert) also takes the "mixed" policy and "auto" (its default policy, docs/grover.md)
            keep = cfg.dtype is None or (family == "bert" and cfg.dtype in ("auto", "mixed"))
            dtype = cfg.dtype if keep else resolve_dtype(cfg.dtype)
            return make(str(path), device=device, dtype=dtype,
                        batch_size=cfg.batch_size, options=cfg.model_options)
        raise ConfigError(f"-m {spec}: model_type {family!r} in config.json is not a supported family",
                          f"supported: {', '.join(CHECKPOINT_FAMILIES)}")
    if os.sep in spec or spec.startswith("."):
        raise ConfigError(f"-m {spec}: no such directory", "give a bundled model name or a checkpoint directory")
    if "/" in spec:
        raise ConfigError(f"-m {spec}: hub ids are resolved only from a local copy",
                          "download the checkpoint on a connected machine and pass its directory")
    raise ConfigError(f"-m {spec}: unknown model", f"bundled models: {', '.join(BUILTIN)}; or a checkpoint directory")
