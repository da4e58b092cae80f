"""One-hot encoding of DNA for convolutional models (SpliceAI): A, C, G, T channels; N and
any other letter encode as all zeros."""
from __future__ import annotations

import numpy as np

_LUT = np.full(256, 4, dtype=np.int64)
for _i, _c in enumerate("ACGT"):
    _LUT[ord(_c)] = _i
    _LUT[ord(_c.lower())] = _i
_EYE = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])
_COMP = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def one_hot(seqs: list[str]) -> np.ndarray:
    """Equal-length sequences -> float32 array (B, 4, L)."""
    if not seqs:
        return np.zeros((0, 4, 0), np.float32)
    buf = np.frombuffer("".join(seqs).encode("ascii", "replace"), dtype=np.uint8)
    codes = _LUT[buf].reshape(len(seqs), -1)
    return np.ascontiguousarray(_EYE[codes].transpose(0, 2, 1))


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMP)[::-1]
