"""The seam every model backend plugs into.

A backend (SpliceAI, GROVER, SegmentNT, ...) is a :class:`Scorer`.  The engine
hands it one :class:`AlleleBatch` at a time (a chunk of normalized alleles,
columnar) plus the :class:`~vareff.window.genome.Genome`; it returns a
:class:`ScoreResult` whose columns are aligned with the batch.  Backends decide
their own windows, batching and reuse of reference passes inside ``score``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from vareff.window.genome import Genome


@dataclass
class AlleleBatch:
    """One chunk of alleles, one entry per (record, ALT).  Coordinates: ``pos1`` 1-based.

    ``ref``/``alt`` are the VCF alleles upper-cased (untrimmed); ``norm_*`` the
    shared-prefix/suffix-trimmed form (``norm_ref`` may be empty for an insertion,
    ``norm_alt`` empty for a deletion; ``norm_pos1`` is the first base after the
    trimmed prefix).  Backends score alleles whose ``status`` is in
    :data:`vareff.errors.SCORABLE` and leave the others null.
    """

    chrom: list[str]
    pos1: np.ndarray  # int64
    ref: list[str]
    alt: list[str]
    norm_pos1: np.ndarray  # int64
    norm_ref: list[str]
    norm_alt: list[str]
    variant_type: list[str]
    status: list[str]

    def __len__(self) -> int:
        return len(self.chrom)


@dataclass(frozen=True)
class InfoField:
    """A VCF INFO field a backend writes (``Number=A`` unless said otherwise)."""

    id: str
    description: str
    type: str = "String"
    number: str = "A"


@dataclass
class ScoreResult:
    """What a backend returns for one batch.

    ``columns``: name -> array of len(batch) (None/null where not scored), in schema order.
    ``status``: per allele, None when the backend scored it, else a Status value.
    ``info``: INFO field id -> per-allele string (None: '.' in the record's Number=A list), as a
    list or an Arrow string array (the store serves stored text without converting it).
    """

    columns: dict[str, pa.Array | list]
    status: list[str | None]
    info: dict[str, list[str | None] | pa.Array] = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    """A model backend.  ``name`` prefixes its columns (``<name>_<score>``)."""

    name: str

    def schema(self) -> pa.Schema:
        """The score columns this backend adds, in output order (all nullable)."""
        ...

    def info_fields(self) -> list[InfoField]:
        """INFO fields it adds to VCF output."""
        ...

    def provenance(self) -> dict[str, str]:
        """Model name, weights checksum and settings, for file metadata."""
        ...

    def score(self, batch: AlleleBatch, genome: Genome) -> ScoreResult:
        """Score every scorable allele of ``batch``."""
        ...


#: seconds of model time one allele costs, when a backend does not say (lookups cost nothing)
DEFAULT_COST_PER_ALLELE = 0.0


def cost_per_allele(scorer) -> float:
    """A backend's cheap estimate of its model time per allele, in seconds (class attribute
    ``cost_per_allele``; default 0).  The engine closes a chunk when the summed estimate reaches about
    a minute, so an interrupted run loses little work.  It must not depend on the device or the
    machine: chunk boundaries are a pure function of the input and the options (resume, sharding)."""
    return float(getattr(scorer, "cost_per_allele", DEFAULT_COST_PER_ALLELE))
