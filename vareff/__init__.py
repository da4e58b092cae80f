"""vareff: variant-effect scoring with DNA foundation models.

Stream a VCF, build reference/alternative windows from a FASTA, run DNA models (SpliceAI, GROVER,
Nucleotide Transformer, SegmentNT) and lookups (AlphaMissense, region classes, a combined
priority), and write every allele's scores to Parquet, VCF or TSV.

Python API
----------
score_vcf(input, output, *, fasta=None, models=None, ...) -> RunSummary
    Score a VCF/VCF.gz/BCF file into Parquet/VCF/TSV outputs (what ``vareff score`` does);
    the summary has counts per status, hits per evidence source and alleles/s.
score_variants(variants, *, fasta=None, models=None, ...) -> polars.DataFrame
    Score a DataFrame of alleles (chrom, pos, ref, alt) in memory.
shortlist(result, *, samples=None, probands=None, top=None) -> polars.DataFrame
    Each proband's carried alleles of a scored trio/cohort result, ranked (``vareff shortlist``).
calibrate_vcf(labelled_vcf, output, **score_options) -> PriorityModel
    Fit the priority maps on a ClinVar-labelled VCF (what ``vareff calibrate`` does).
load_model(path, *, device=..., dtype=...) -> LoadedModel
    Load a local Hugging Face checkpoint directory (tokenize, forward).
RunConfig, VareffError, Status
    The run configuration, the base class of every error vareff raises, the per-allele statuses.

Example::

    import vareff
    summary = vareff.score_vcf("in.vcf.gz", "out.parquet", fasta="ref.fa", models=["spliceai"])
    print(summary)
"""
from vareff._version import __version__
from vareff.errors import Status, VareffError

__all__ = ["__version__", "score_vcf", "score_variants", "calibrate_vcf", "shortlist", "load_model", "RunConfig",
           "VareffError", "Status"]

_API = ("score_vcf", "score_variants", "calibrate_vcf", "shortlist")


def __getattr__(name):  # lazy: keep `import vareff` light (no torch import until needed)
    if name in _API:
        from vareff import api

        return getattr(api, name)
    if name == "RunConfig":
        from vareff.config import RunConfig

        return RunConfig
    if name == "load_model":
        from vareff.models.load import load_model

        return load_model
    raise AttributeError(f"module 'vareff' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
