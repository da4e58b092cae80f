"""Where SpliceAI's published weight files are and what they hash to, without importing torch.

The store key needs the weights' checksums before any allele is scored; a run served entirely
from the store never builds the models, so this module stays free of torch and h5py.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

from vareff.errors import CheckpointError, MissingDependencyError

WHEEL_HINT = "install the weights with: pip install --no-deps spliceai==1.3.1 (or pass --spliceai-weights DIR)"


def wheel_weights_dir() -> Path:
    """The ``models/`` folder of the installed ``spliceai`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("spliceai")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("SpliceAI's published weights are not installed", WHEEL_HINT)
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def weight_paths(d: Path) -> list[Path]:
    """``spliceai1.h5`` … ``spliceai5.h5`` in folder ``d``."""
    return [d / f"spliceai{i}.h5" for i in range(1, 6)]


def weights_folder(weights_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``spliceai1.h5`` … ``spliceai5.h5`` (checked), resolved."""
    d = (Path(weights_dir) if weights_dir else wheel_weights_dir()).resolve()
    missing = [p.name for p in weight_paths(d) if not p.exists()]
    if missing:
        raise CheckpointError(f"SpliceAI weights folder {str(d)!r} lacks {', '.join(missing)}", WHEEL_HINT)
    return d


@functools.lru_cache(maxsize=4)
def weight_checksums(folder: str) -> tuple[str, ...]:
    """First 16 hex digits of each weight file's SHA-256 (the provenance, without building the models)."""
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in weight_paths(Path(folder)))
