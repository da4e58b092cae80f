"""Population-frequency filters: ``--max-af FIELD<=X`` over INFO fields annotated upstream (e.g. gnomAD AF).

An allele is flagged ``common`` when any filtered field's value for it exceeds its limit.
``Number=A`` fields give one value per ALT; ``Number=1`` (or unknown) fields apply to every ALT
of the record; a missing value never flags.  Nothing is dropped: the flag is a column, and
``priority`` of a common allele is multiplied by :data:`COMMON_PRIORITY_FACTOR`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vareff.errors import ConfigError

#: priority of an allele flagged ``common`` is multiplied by this (ranks it below rare alleles of
#: similar evidence while keeping the order among common ones)
COMMON_PRIORITY_FACTOR = 0.1

_SPEC = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|<)\s*(?P<x>[0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class MaxAf:
    """One ``FIELD<=X`` limit; ``column`` is the output column holding the field's per-allele value."""

    field: str
    limit: float

    @property
    def column(self) -> str:
        return "info_" + re.sub(r"[^A-Za-z0-9_]", "_", self.field)

    @classmethod
    def parse(cls, text: str) -> "MaxAf":
        m = _SPEC.match(text)
        if not m:
            raise ConfigError(f"--max-af {text!r} is not FIELD<=X", "e.g. --max-af gnomad_AF<=0.001")
        try:
            x = float(m["x"])
        except ValueError:
            raise ConfigError(f"--max-af {text!r}: {m['x']!r} is not a number", "e.g. --max-af AF<=0.01") from None
        if not 0 <= x <= 1:
            raise ConfigError(f"--max-af {text!r}: the limit must be a frequency in [0, 1]", "e.g. --max-af AF<=0.01")
        return cls(m["field"], x)


def per_allele(values: list, record: np.ndarray, allele_index: np.ndarray) -> np.ndarray:
    """INFO values per record (None, a number, or a tuple per ALT) -> float per allele (NaN = missing)."""
    out = np.full(len(record), np.nan)
    for i, (r, a) in enumerate(zip(record, allele_index)):
        v = values[r]
        if isinstance(v, (tuple, list)):
            v = v[a - 1] if 0 < a <= len(v) else None
        if v is not None and not isinstance(v, str):
            out[i] = float(v)
    return out


def common_flag(columns: dict[str, np.ndarray], limits: list[MaxAf]) -> np.ndarray:
    """True where any field's value exceeds its limit (missing values never flag)."""
    n = len(next(iter(columns.values()))) if columns else 0
    flag = np.zeros(n, dtype=bool)
    for lim in limits:
        v = columns[lim.column]
        flag |= np.nan_to_num(v, nan=-np.inf) > lim.limit
    return flag
