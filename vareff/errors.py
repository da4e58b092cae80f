"""Typed errors (one base class) and the per-allele status vocabulary.

Every error a user can trigger is a :class:`VareffError`; its message names the
argument or record at fault and ends with a ``Hint:`` saying what to do.  The CLI
maps them to exit code 2.  Per-allele problems are not errors: they become a
``status`` value in the output (see :class:`Status`).
"""
from __future__ import annotations

from enum import Enum


class VareffError(Exception):
    """Base class of every error vareff raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(f"{message}\nHint: {hint}" if hint else message)


class InputError(VareffError):
    """A VCF, FASTA or table the user gave cannot be read as asked."""


class MalformedRecordError(InputError):
    """A VCF record that htslib could not parse (reported with its line)."""


class ConfigError(VareffError):
    """Options that are invalid or contradict each other."""


class CheckpointError(VareffError):
    """Model weights that are missing, unreadable or do not match the architecture."""


class ResumeError(VareffError):
    """An interrupted run cannot be resumed with the options given."""


class OutputError(VareffError):
    """An output cannot be written (a directory, a read-only folder, a full disk, a locked output)."""


class OutputLockedError(OutputError):
    """Another vareff run is writing the same output."""


class BrokenPipeOutputError(OutputError):
    """The reader of a streamed output (stdout, FIFO) went away; exit status as if killed by SIGPIPE."""

    exit_code = 141


class MissingDependencyError(VareffError):
    """An optional dependency needed for the requested feature is not installed."""


class BackendUnavailableError(VareffError):
    """An explicitly requested compute backend (e.g. Triton) cannot run here."""


class Status(str, Enum):
    """Why an allele was (not) scored.  Values are written verbatim to the output.

    Input-level reasons are decided before any model runs; model-level reasons
    (``outside_gene``, ``n_in_window``, ``model_error``) come from a backend.  ``n_in_window`` is
    also an input-level reason: a REF that matches the FASTA but holds N sits in an N block
    (unknown sequence), so no model can score it.
    ``near_contig_edge`` alleles *are* scored, on N-padded windows.
    """

    OK = "ok"
    MALFORMED_RECORD = "malformed_record"
    NO_ALT = "no_alt"
    SYMBOLIC_ALLELE = "symbolic_allele"
    INVALID_ALLELE = "invalid_allele"
    CONTIG_NOT_IN_FASTA = "contig_not_in_fasta"
    OUTSIDE_FASTA = "outside_fasta"
    REF_MISMATCH = "ref_mismatch"
    ALLELE_TOO_LONG = "allele_too_long"
    NEAR_CONTIG_EDGE = "near_contig_edge"
    OUTSIDE_GENE = "outside_gene"
    N_IN_WINDOW = "n_in_window"
    MODEL_ERROR = "model_error"

    def __str__(self) -> str:  # so f-strings and writers print the bare value
        return self.value


#: statuses for which models still run (the allele is scored)
SCORABLE = frozenset({Status.OK.value, Status.NEAR_CONTIG_EDGE.value})
