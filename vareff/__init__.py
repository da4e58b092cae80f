"""vareff: variant-effect scoring with DNA foundation models.

Public API: :func:`score_vcf`, :func:`score_variants`, :func:`load_model`, :class:`RunConfig`,
the error base class :class:`VareffError` and the :class:`Status` vocabulary.
"""
from vareff._version import __version__
from vareff.errors import Status, VareffError

__all__ = ["__version__", "score_vcf", "score_variants", "load_model", "RunConfig", "VareffError", "Status"]


def __getattr__(name):  # lazy: keep `import vareff` light (no torch import until needed)
    if name in ("score_vcf", "score_variants"):
        from vareff import api

        return getattr(api, name)
    if name == "RunConfig":
        from vareff.config import RunConfig

        return RunConfig
    if name == "load_model":
        from vareff.models.load import load_model

        return load_model
    raise AttributeError(f"module 'vareff' has no attribute {name!r}")
