"""Run configuration: one frozen dataclass shared by the CLI and the Python API."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from vareff.errors import ConfigError

Format = Literal["parquet", "vcf", "tsv"]
_EXT = ((".parquet", "parquet"), (".pq", "parquet"), (".vcf.gz", "vcf"), (".vcf.bgz", "vcf"), (".vcf", "vcf"),
        (".tsv", "tsv"), (".tsv.gz", "tsv"), (".txt", "tsv"))


def infer_format(path: str, explicit: str | None = None) -> Format:
    """Output format from ``-O`` or else the file extension (``-``, stdout: VCF unless ``-O``)."""
    if explicit:
        if explicit not in ("parquet", "vcf", "tsv"):
            raise ConfigError(f"-O {explicit!r} is not a known format", "use parquet, vcf or tsv")
        return explicit  # type: ignore[return-value]
    if path == "-":
        return "vcf"
    low = path.lower()
    for ext, fmt in _EXT:
        if low.endswith(ext):
            return fmt  # type: ignore[return-value]
    raise ConfigError(f"cannot tell the output format of {path!r} from its extension",
                      "name it .parquet, .vcf, .vcf.gz or .tsv, or pass -O parquet|vcf|tsv")


@dataclass(frozen=True)
class OutputSpec:
    path: str
    format: Format

    @property
    def bgzip(self) -> bool:
        return self.format == "vcf" and self.path.lower().endswith((".gz", ".bgz"))


#: default records per chunk with a model (a chunk also closes after ~60 s of estimated model time)
MODEL_CHUNK = 2000
#: default records per chunk for runs with no model and no sample columns (lookups, normalization)
HOST_CHUNK = 20_000


@dataclass(frozen=True)
class RunConfig:
    """Everything a scoring run needs.  Defaults are the CLI's defaults.

    ``models``: backend names (``spliceai``) or local checkpoint directories.
    ``chunk_size``: records per chunk; a chunk is the unit of output and of ``resume``
    (``None``: :meth:`chunk_records` picks it).
    """

    input: str
    outputs: tuple[OutputSpec, ...]
    fasta: str | None = None
    models: tuple[str, ...] = ("spliceai",)
    regions: tuple[str, ...] = ()
    contig_map: tuple[str, ...] = ()
    device: str = "auto"
    dtype: str | None = None
    batch_size: int = 32
    threads: int | None = None
    chunk_size: int | None = None
    resume: bool = False
    skip_malformed: bool = False
    #: read a BGZF input that lacks its end-of-file marker (cut short) instead of refusing it
    allow_truncated: bool = False
    max_allele_length: int = 1000
    progress: bool = True
    spliceai_distance: int = 50
    spliceai_mask: bool = False
    spliceai_annotation: str = "grch38"
    spliceai_weights: str | None = None
    alphamissense: str | None = None
    am_transcript: str | None = None
    annotation: str | None = None
    annotation_transcripts: str = "all"
    priority: str | None = None
    command: str = ""
    model_options: dict = field(default_factory=dict, hash=False, compare=False)
    #: ``local`` (one process) or ``ray`` (shards scored by Ray actors, see docs/scale-out.md)
    engine: str = "local"
    ray_address: str | None = None
    shards: int | None = None
    #: a run in which (almost) no allele can be placed on the FASTA is an error, not a warning
    strict: bool = False
    #: score store folder (``--store``, docs/store.md): alleles scored before are not scored again
    store: str | None = None
    #: imported store configurations (``vareff store import``) to serve alleles missing from the run's own
    store_use: tuple[str, ...] = ()
    #: genotype-aware output (docs/family.md): ``all``, ``none`` or comma-separated sample names
    samples: str = "all"
    samples_output: str | None = None
    #: keep every (allele, sample) row, not only carriers
    all_genotypes: bool = False
    ped: str | None = None
    min_gq: int = 20
    min_dp: int = 10
    #: ``FIELD<=X`` population-frequency limits over INFO fields (flag ``common``, never drop)
    max_af: tuple[str, ...] = ()
    #: genome build for the pseudo-autosomal regions (male X/Y zygosity)
    build: str = "GRCh38"

    def chunk_records(self, n_samples: int) -> int:
        """Records per chunk: ``chunk_size`` when given; else :data:`MODEL_CHUNK` for runs with a model
        or with sample columns (windows and genotypes are held per chunk), :data:`HOST_CHUNK` for the
        rest, whose per-chunk costs (part files, manifest, fsync) would otherwise dominate."""
        if self.chunk_size is not None:
            return self.chunk_size
        return MODEL_CHUNK if self.models or n_samples else HOST_CHUNK

    def __post_init__(self):
        if not self.outputs:
            raise ConfigError("no output given", "pass -o OUT.parquet (or .vcf.gz / .tsv)")
        if (self.chunk_size is not None and self.chunk_size < 1) or self.batch_size < 1:
            raise ConfigError("--chunk-size and --batch-size must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: must be at least 1",
                              "leave it out to use torch's default (all cores)")
        if self.models and self.fasta is None:
            raise ConfigError("scoring with a model needs the reference FASTA",
                              "pass -f REF.fa (lookup-only runs with no -m need none)")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine {self.engine!r} is not known", "use local (default) or ray")
        if self.shards is not None and self.shards < 1:
            raise ConfigError("--shards must be at least 1")
        if self.engine == "ray" and self.strict:
            raise ConfigError("--strict is checked by the local engine only", "drop --strict or use --engine local")
        if self.engine == "local" and (self.ray_address or self.shards):
            raise ConfigError("--ray-address and --shards apply to the Ray engine", "add --engine ray")
        if self.build not in ("GRCh38", "GRCh37"):
            raise ConfigError(f"--build {self.build!r} is not known", "use GRCh38 or GRCh37")
        if self.min_gq < 0 or self.min_dp < 0:
            raise ConfigError("--min-gq and --min-dp must be at least 0")
        paths = [o.path for o in self.outputs]
        if len(set(paths)) != len(paths):
            raise ConfigError("the same output path is given twice")
        if self.input != "-" and any(os.path.abspath(p) == os.path.abspath(self.input) for p in paths):
            raise ConfigError("the output would overwrite the input", "choose another -o path")
