"""Load a local Hugging Face checkpoint into a native vareff model.

``load_model(path_or_name)`` reads ``config.json``, picks a model *family* from its ``model_type`` /
``architectures`` and lets the family build its module and tokenizer.  Families register
themselves: a module ``vareff.models.<model_type>`` exposing ``FAMILY`` (a :class:`Family`) is
found automatically, and :func:`register_family` adds one explicitly.  ``bert`` (GROVER) lives in
:mod:`vareff.models.bert`.

Weights come from ``model.safetensors`` (or a sharded ``model.safetensors.index.json``) or
``pytorch_model.bin`` read with ``torch.load(weights_only=True)``; no checkpoint code is ever
executed and nothing is downloaded.  A hub id (``Org/Name``) is resolved from the local Hugging
Face cache only.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vareff.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "Family",
    "LoadedModel",
    "ModelOutput",
    "register_family",
    "load_model",
    "resolve_checkpoint",
    "read_config",
    "read_state_dict",
    "check_state_dict",
    "resolve_device",
    "resolve_dtype",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """A model family: which ``config.json`` it claims and how to build it.

    ``load(directory, config, device=..., dtype=...)`` returns a :class:`LoadedModel`.
    """

    name: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    load: Callable[..., "LoadedModel"]


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Add (or replace) a family; later registrations win for the same name."""
    _FAMILIES[family.name] = family


def _find_family(cfg: dict[str, Any], source: str) -> Family:
    mt = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if isinstance(mt, str) and re.fullmatch(r"[a-z0-9_]+", mt):
        try:  # convention: vareff.models.<model_type> exposes FAMILY
            mod = importlib.import_module(f"vareff.models.{mt}")
        except ModuleNotFoundError as e:
            if e.name != f"vareff.models.{mt}":
                raise
        else:
            fam = getattr(mod, "FAMILY", None)
            if isinstance(fam, Family):
                register_family(fam)
    for fam in _FAMILIES.values():
        if mt in fam.model_types or any(a in fam.architectures for a in archs):
            return fam
    known = sorted({t for f in _FAMILIES.values() for t in f.model_types} | {"bert"})
    raise CheckpointError(
        f"{source}: model_type={mt!r}, architectures={archs} is not a model family vareff implements",
        f"supported model_type values: {', '.join(known)}",
    )


# --------------------------------------------------------------------------- outputs


@dataclass
class ModelOutput:
    """What :meth:`LoadedModel.forward` returns: ``logits`` (B, T, V) and ``last_hidden_state`` (B, T, H), float32."""

    logits: torch.Tensor
    last_hidden_state: torch.Tensor


@dataclass
class LoadedModel:
    """A loaded checkpoint: native module + the checkpoint's own tokenizer.

    Use :meth:`tokenize` then :meth:`forward`; both run on ``device``.  ``module`` is the plain
    ``torch.nn.Module`` (eval mode) for callers that want more control.
    """

    name: str
    family: str
    path: Path
    config: Any
    module: torch.nn.Module
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    weight_files: list[Path] = field(default_factory=list)
    _checksum: str | None = None

    def tokenize(self, sequences: list[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, int64 (B, T), right-padded, on ``device``.

        Sequences are upper-cased first; ids equal ``transformers``' tokenizer for the same
        upper-case sequence.
        """
        return self.tokenizer(sequences, device=self.device)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ModelOutput:
        """Run the encoder and head: ``.logits`` (B, T, V) and ``.last_hidden_state`` (B, T, H), float32."""
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        hidden, logits = self.module(input_ids, attention_mask)
        return ModelOutput(logits=logits, last_hidden_state=hidden)

    __call__ = forward

    def checksum(self) -> str:
        """``sha256:<hex>`` over the weight file(s), computed once."""
        if self._checksum is None:
            h = hashlib.sha256()
            for f in self.weight_files:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
            self._checksum = "sha256:" + h.hexdigest()
        return self._checksum


# --------------------------------------------------------------------------- resolution


def _hub_cache_dirs() -> list[Path]:
    out = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        out.append(Path(os.environ["HUGGINGFACE_HUB_CACHE"]))
    home = os.environ.get("HF_HOME")
    if home:
        out.append(Path(home) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    out.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def _from_hub_cache(name: str) -> Path:
    repo, _, rev = name.partition("@")
    folder = "models--" + repo.replace("/", "--")
    searched = []
    for cache in _hub_cache_dirs():
        base = cache / folder
        searched.append(str(base))
        snaps = base / "snapshots"
        if not snaps.is_dir():
            continue
        commit = None
        ref = base / "refs" / (rev or "main")
        if ref.is_file():
            commit = ref.read_text().strip()
        elif rev and (snaps / rev).is_dir():
            commit = rev
        if commit and (snaps / commit / "config.json").is_file():
            return snaps / commit
        if rev:
            continue
        cands = sorted((d for d in snaps.iterdir() if (d / "config.json").is_file()), key=lambda d: d.stat().st_mtime)
        if cands:
            if len(cands) > 1:
                log.info("%s: %d cached snapshots and no refs/main; using the newest, %s", name, len(cands), cands[-1].name)
            return cands[-1]
    raise CheckpointError(
        f"model {name!r} is not a local directory and is not in the local Hugging Face cache "
        f"(looked in {', '.join(searched)}); vareff never downloads weights",
        f"download it where the network is available (e.g. `huggingface-cli download {repo}`) and "
        "point -m at that directory, or set HF_HUB_CACHE / HF_HOME to the cache holding it",
    )


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A local checkpoint directory for a path, or a hub id found in the local cache (never the network)."""
    p = Path(os.path.expanduser(os.fspath(path_or_name)))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise CheckpointError(
                f"{str(p)!r} has no config.json",
                "point at the Hugging Face checkpoint directory (config.json, weights, tokenizer files)",
            )
        return p
    if p.exists():
        raise CheckpointError(f"{str(p)!r} is a file, not a checkpoint directory", "pass the directory holding config.json")
    name = os.fspath(path_or_name)
    if _HUB_ID.match(name):
        return _from_hub_cache(name)
    raise CheckpointError(f"checkpoint {name!r} does not exist", "pass a local directory or a cached hub id such as Org/Name")


def read_config(directory: Path) -> dict[str, Any]:
    """Parse ``config.json`` (a :class:`CheckpointError` if it is not a JSON object)."""
    f = Path(directory) / "config.json"
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {str(f)!r}: {e}") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(f)!r} is not valid JSON ({e})",
                              "re-copy config.json from the model repository") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{str(f)!r} is not a JSON object (it holds a {type(cfg).__name__})",
                              "re-copy config.json from the model repository")
    if cfg.get("auto_map"):
        log.info("%s declares auto_map (custom code); vareff ignores it and never runs checkpoint code", f)
    return cfg


def weight_files(directory: Path) -> list[Path]:
    """The weight file(s) of a checkpoint: safetensors (single or sharded) preferred, else pytorch_model.bin."""
    d = Path(directory)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        idx = d / index_name
        if idx.is_file():
            try:
                wm = json.loads(idx.read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"cannot read shard index {str(idx)!r}: {e}") from None
            files = [d / n for n in sorted(set(wm.values()))]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"shard(s) named in {index_name} are missing: {', '.join(missing)}")
            return files
    for n in ("model.safetensors", "pytorch_model.bin"):
        if (d / n).is_file():
            return [d / n]
    raise CheckpointError(
        f"no weights in {str(d)!r} (looked for model.safetensors, pytorch_model.bin and shard indexes)",
        "copy the weight file of the Hugging Face repository into the directory",
    )


def read_state_dict(directory: Path) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """All tensors of the checkpoint on CPU, and the files they came from.

    ``.bin`` files are read with ``torch.load(weights_only=True)``: only tensors and plain
    containers are accepted, so a file carrying pickled code is refused, never run.
    """
    files = weight_files(directory)
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                part = load_file(str(f), device="cpu")
            except Exception as e:
                raise CheckpointError(f"cannot read {str(f)!r} as safetensors: {e}") from None
        else:
            part = _torch_load(f)
            if isinstance(part, dict) and "state_dict" in part and isinstance(part["state_dict"], dict):
                part = part["state_dict"]
            if not isinstance(part, dict):
                raise CheckpointError(f"{str(f)!r} does not hold a state dict (got {type(part).__name__})")
        for k, v in part.items():
            if isinstance(v, torch.Tensor):
                sd[k] = v
    return sd, files


_PICKLE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _torch_load(f: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors a user can act on.

    A file whose pickle asks for anything but tensors and plain containers is refused in one line
    that says so (torch's own text, which suggests ``weights_only=False``, is never relayed);
    other failures say the file is damaged.  torch's warnings are silenced.
    """
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:  # pre-zip (legacy) serialization cannot be memory-mapped
                if "mmap" not in str(e):
                    raise
                return torch.load(str(f), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"cannot read {str(f)!r}: it is not a valid PyTorch checkpoint (damaged pickle)",
                                  "re-download the file from the model repository") from None
        g = _PICKLE_GLOBAL.search(str(e))
        what = f" (it asks for {g.group(1)})" if g else ""
        raise CheckpointError(
            f"{str(f)!r} contains pickled code or objects other than tensors{what}; vareff loads checkpoints "
            "with torch.load(weights_only=True) and will not run it",
            "convert the checkpoint to model.safetensors with a tool you trust, on a machine where running the "
            "file is acceptable, or use the safetensors file of the model repository",
        ) from None
    except Exception as e:
        text = str(e).strip()
        first = "" if "weights_only" in text or not text else ": " + text.splitlines()[0]
        raise CheckpointError(f"cannot read {str(f)!r} as a PyTorch checkpoint ({type(e).__name__}{first})",
                              "the file is damaged or not a checkpoint; re-download it from the model repository") from None


def check_state_dict(
    expected: dict[str, tuple[int, ...]],
    got: dict[str, torch.Tensor],
    *,
    optional: dict[str, tuple[int, ...] | None] | None = None,
    ignore_prefixes: tuple[str, ...] = (),
    source: str = "checkpoint",
) -> None:
    """Strict key + shape check; raises :class:`CheckpointError` naming every missing, extra or mis-shaped key.

    ``optional`` keys may be absent (their shape is checked when given and present);
    keys under ``ignore_prefixes`` are accepted and dropped.
    """
    optional = optional or {}
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected and k not in optional and not k.startswith(ignore_prefixes)]
    bad = []
    for k, shape in list(expected.items()) + [(k, s) for k, s in optional.items() if s is not None]:
        if k in got and tuple(got[k].shape) != tuple(shape):
            bad.append(f"{k}: checkpoint {tuple(got[k].shape)} vs expected {tuple(shape)}")
    if not (missing or extra or bad):
        return

    def _fmt(items: list[str], n: int = 8) -> str:
        more = f" ... and {len(items) - n} more" if len(items) > n else ""
        return ", ".join(items[:n]) + more

    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_fmt(missing)}")
    if extra:
        parts.append(f"unexpected {len(extra)} key(s): {_fmt(extra)}")
    if bad:
        parts.append(f"{len(bad)} shape mismatch(es): {_fmt(bad, 4)}")
    raise CheckpointError(
        f"{source} does not match its config.json: " + "; ".join(parts),
        "the weights must come from the same checkpoint as config.json (a BertForMaskedLM for GROVER); "
        "re-copy the directory from the model repository",
    )


# --------------------------------------------------------------------------- device / dtype


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"`` -> float32 on CPU, bfloat16 on CUDA; names like ``"bf16"`` accepted."""
    from vareff.errors import ConfigError

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float16):
            return dtype
    elif isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ConfigError(f"dtype {dtype!r} is not supported", "use float32, bfloat16 or float16")


# --------------------------------------------------------------------------- entry point


def load_model(
    path_or_name: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a local Hugging Face checkpoint as a native vareff model.

    Parameters
    ----------
    path_or_name : str or os.PathLike
        A checkpoint directory (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
        tokenizer files), or a hub id such as ``"PoetschLab/GROVER"`` (optionally ``@revision``)
        that is already in the local Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``).
    device : str or torch.device, optional
        ``None``/``"auto"``: CUDA when available, else CPU.
    dtype : str or torch.dtype, optional
        Compute dtype of the large matmuls.  ``None``: float32 on CPU, bfloat16 on CUDA.
        Embeddings, LayerNorms, the residual stream and the logits stay float32.

    Returns
    -------
    LoadedModel
        ``.tokenize(seqs) -> (input_ids, attention_mask)``; ``.forward(ids, mask)`` -> object with
        ``.logits`` (B, T, V) and ``.last_hidden_state`` (B, T, H).

    Raises
    ------
    CheckpointError
        Missing directory/cache entry, unreadable or mismatching weights (every missing, extra and
        mis-shaped key is named), unsupported architecture.
    """
    directory = resolve_checkpoint(path_or_name)
    cfg = read_config(directory)
    fam = _find_family(cfg, str(directory / "config.json"))
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    return fam.load(directory, cfg, device=dev, dtype=dt, name=os.fspath(path_or_name))

