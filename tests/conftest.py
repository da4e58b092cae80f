"""Shared fixtures: paths to the real test data kit, seeding, Triton interpreter on CPU."""
from __future__ import annotations

import os
from pathlib import Path

# Triton picks interpreter vs compiler when a kernel runs, from this variable; set it before
# any kernel module is imported.  On a CUDA machine the real compiler is used.
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VAREFF_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public test data kit (../shared/data); tests needing it skip if it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass
    yield


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not _HAS_CUDA:
            item.add_marker(skip_gpu)
