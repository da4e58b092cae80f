"""Python API: :func:`score_vcf` (file to file), :func:`score_variants` (DataFrame in, DataFrame
out) and :func:`calibrate_vcf` (fit the priority maps)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import polars as pl

from vareff.config import OutputSpec, RunConfig, infer_format
from vareff.engine.run import Pipeline, RunSummary, build_lookups, build_scorers, open_genome, run
from vareff.errors import InputError
from vareff.normalize.alleles import Record


def score_vcf(
    input: str | os.PathLike,
    output: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    fasta: str | os.PathLike | None = None,
    models: Sequence[str] | None = None,
    output_format: str | None = None,
    regions: Sequence[str] = (),
    contig_map: Sequence[str] = (),
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    chunk_size: int | None = None,
    resume: bool = False,
    skip_malformed: bool = False,
    allow_truncated: bool = False,
    max_allele_length: int = 1000,
    spliceai_distance: int = 50,
    spliceai_mask: bool = False,
    spliceai_annotation: str = "grch38",
    spliceai_weights: str | None = None,
    alphamissense: str | None = None,
    am_transcript: str | None = None,
    annotation: str | None = None,
    annotation_transcripts: str = "all",
    priority: str | None = None,
    progress: bool = False,
    model_options: dict | None = None,
    command: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    shards: int | None = None,
    strict: bool = False,
    store: str | os.PathLike | None = None,
    store_use: Sequence[str] = (),
    samples: str = "all",
    samples_output: str | os.PathLike | None = None,
    all_genotypes: bool = False,
    ped: str | os.PathLike | None = None,
    min_gq: int = 20,
    min_dp: int = 10,
    max_af: Sequence[str] = (),
    build: str = "GRCh38",
) -> RunSummary:
    """Score every allele of a VCF/VCF.gz/BCF (``"-"``: stdin) and write Parquet/VCF/TSV.

    Parameters
    ----------
    input
        Variant file; ``-r``-style ``regions`` need a .tbi/.csi index.
    output
        One path or several; each format comes from ``output_format`` or the extension
        (``.parquet``, ``.vcf``, ``.vcf.gz`` (bgzipped + tabix), ``.tsv``).
    fasta
        Reference FASTA with a .fai index; required when ``models`` is not empty.
    models
        Bundled backend names (``"spliceai"``) or local checkpoint directories.  Default:
        ``["spliceai"]``, or none when a lookup (``alphamissense``/``annotation``) is asked
        for — a lookup-only run needs no FASTA.
    alphamissense, am_transcript
        A table built by ``vareff am-build``; optionally the transcript id(s) to match
        (comma-separated, version ignored), as VEP's ``transcript_match``.
    annotation, annotation_transcripts
        GTF/GFF3/SpliceAI gene table for ``gene`` and ``region_class``; ``"all"`` or
        ``"canonical"`` transcripts.
    priority
        JSON written by ``vareff calibrate`` (default: uncalibrated maps).
    contig_map
        ``CHROM=FASTA_CONTIG[+OFFSET]`` entries for FASTAs that hold a slice of a chromosome
        (``CHROM`` matches ``17``/``chr17``, ``MT``/``chrM`` alike).
    strict
        Raise :class:`~vareff.errors.InputError` (and write nothing) when under 1% of the
        alleles could be placed on the FASTA; by default that is a warning.
    samples, samples_output, all_genotypes, ped, min_gq, min_dp, build
        Genotype-aware output (docs/family.md): the per-(allele, sample) table
        ``OUT.samples.parquet`` (``"all"``, ``"none"`` or ``"A,B"``; carriers only unless
        ``all_genotypes``), trio inheritance flags from a PED file, de novo GQ/DP limits, and the
        build whose pseudo-autosomal regions decide male X/Y zygosity.
    max_af
        ``"FIELD<=X"`` limits on INFO fields: alleles above are flagged ``common`` (a column;
        their ``priority`` is multiplied by 0.1), never dropped.
    progress
        A live bar on a terminal, else a log line every 30 s (``VAREFF_PROGRESS_INTERVAL``).
    chunk_size
        Records per chunk: the unit of output writes and of ``resume`` (a chunk also closes
        after about a minute of estimated model time). Default: 2,000 with a model or sample
        columns, else 20,000.
    skip_malformed, allow_truncated
        Record unparseable lines as ``malformed_record`` rows instead of stopping; read a
        ``.vcf.gz``/``.bcf`` that lacks its BGZF end-of-file marker (cut short) instead of
        refusing it (see docs/input-checks.md).
    resume
        Continue an interrupted run with the same arguments from its last finished chunk
        (``engine="ray"``: rescore only the chunks no shard finished).
    engine, ray_address, shards
        ``"local"`` (default): this process.  ``"ray"``: cut the input into ``shards`` genomic
        shards (default: 4 per worker) scored by Ray actors on the cluster at ``ray_address``
        (default: a running one, or a new local instance); the outputs are identical.  Needs
        ``pip install 'vareff[ray]'``; see docs/scale-out.md.
    store
        Score store folder (default: ``$VAREFF_STORE``; ``""`` for none): alleles scored
        before with the same model configuration and reference are served from it, the others
        are scored and added.  The outputs are the same with or without it (docs/store.md).
        ``store_use``: ids of imported configurations (``vareff store import``) that serve
        alleles missing from the run's own configuration, on the provenance they declare.

    Returns
    -------
    RunSummary
        ``records`` and ``alleles`` read, ``seconds`` and ``alleles_per_second``,
        ``status_counts`` (status -> alleles), ``hits`` (evidence source -> alleles that got a
        value: each model's scored alleles, ``alphamissense``, ``annotation``),
        ``not_placed`` (alleles not found on the FASTA) and the ``outputs`` written;
        ``str(summary)`` is the one-line summary the CLI prints.  Every input allele is in
        every output with a ``status`` (see :class:`vareff.errors.Status`).

    Raises
    ------
    VareffError
        Bad input or options (a message with a hint).  ``KeyboardInterrupt``
        (:class:`~vareff.engine.signals.RunInterrupted` on SIGINT/SIGTERM) leaves the finished
        chunks on disk for ``resume=True``.

    Examples
    --------
    >>> s = score_vcf("in.vcf.gz", "out.parquet", alphamissense="am.arrow")  # doctest: +SKIP
    >>> s.status_counts, s.hits                                              # doctest: +SKIP
    ({'ok': 169}, {'alphamissense': 169})
    """
    models = default_models(models, alphamissense, annotation)
    outs = [output] if isinstance(output, (str, os.PathLike)) else list(output)
    specs = tuple(OutputSpec(os.fspath(o), infer_format(os.fspath(o), output_format)) for o in outs)
    cfg = RunConfig(
        input=os.fspath(input), outputs=specs, fasta=os.fspath(fasta) if fasta else None, models=tuple(models),
        regions=tuple(regions), contig_map=tuple(contig_map), device=device, dtype=dtype, batch_size=batch_size,
        threads=threads, chunk_size=chunk_size, resume=resume, skip_malformed=skip_malformed,
        allow_truncated=allow_truncated,
        max_allele_length=max_allele_length, progress=progress, spliceai_distance=spliceai_distance,
        spliceai_mask=spliceai_mask, spliceai_annotation=spliceai_annotation, spliceai_weights=spliceai_weights,
        alphamissense=alphamissense, am_transcript=am_transcript, annotation=annotation,
        annotation_transcripts=annotation_transcripts, priority=priority,
        command=command if command is not None else "vareff.score_vcf(...)",
        model_options=dict(model_options or {}), engine=engine, ray_address=ray_address, shards=shards,
        strict=strict, store=resolve_store(store), store_use=tuple(store_use),
        samples=samples, samples_output=os.fspath(samples_output) if samples_output else None,
        all_genotypes=all_genotypes, ped=os.fspath(ped) if ped else None, min_gq=min_gq, min_dp=min_dp,
        max_af=tuple(max_af), build=build,
    )
    if cfg.engine == "ray":
        from vareff.engine.distributed import run_distributed

        return run_distributed(cfg)
    return run(cfg)


def resolve_store(store: str | os.PathLike | None) -> str | None:
    """The score store folder: ``store`` as given, else ``$VAREFF_STORE``; empty means none."""
    if store is None:
        store = os.environ.get("VAREFF_STORE")
    return os.fspath(store) if store else None


def default_models(models: Sequence[str] | None, alphamissense, annotation) -> tuple[str, ...]:
    """``models`` as given; if None, SpliceAI unless the run is a lookup-only one."""
    if models is not None:
        return tuple(models)
    return () if (alphamissense or annotation) else ("spliceai",)


def score_variants(
    variants: pl.DataFrame,
    *,
    fasta: str | os.PathLike | None = None,
    models: Sequence[str] | None = None,
    **options,
) -> pl.DataFrame:
    """Score a DataFrame of alleles and return one row per allele with the score columns.

    ``variants`` needs columns ``chrom``, ``pos`` (1-based), ``ref``, ``alt`` (one ALT
    per row, or several comma-separated); ``id`` is optional.  Options are those of
    :func:`score_vcf`.  Rows come back in input order (split ALTs in ALT order).
    """
    missing = {"chrom", "pos", "ref", "alt"} - set(variants.columns)
    if missing:
        raise InputError(f"score_variants: the DataFrame lacks columns {sorted(missing)}",
                         "it needs chrom, pos (1-based), ref and alt")
    models = default_models(models, options.get("alphamissense"), options.get("annotation"))
    options["store"] = resolve_store(options.get("store"))
    options["store_use"] = tuple(options.get("store_use", ()))
    cfg = RunConfig(input="-", outputs=(OutputSpec("<memory>", "parquet"),),
                    fasta=os.fspath(fasta) if fasta else None, models=models, **options)
    pipe = Pipeline(cfg, build_scorers(cfg), open_genome(cfg), build_lookups(cfg))
    ids = variants["id"].to_list() if "id" in variants.columns else [None] * variants.height
    records = [
        Record(chrom=str(c), pos1=int(p), id=i, ref=str(r), alts=tuple(str(a).split(",")))
        for c, p, r, a, i in zip(variants["chrom"].to_list(), variants["pos"].to_list(),
                                 variants["ref"].to_list(), variants["alt"].to_list(), ids)
    ]
    tables = []
    size = cfg.chunk_records(0)
    for s in range(0, len(records), size):
        _, table, _ = pipe.process(records[s: s + size])
        tables.append(pl.from_arrow(table))
    if not tables:
        return pl.from_arrow(pipe.schema.empty_table())
    return pl.concat(tables)


def calibrate_vcf(labelled_vcf: str | os.PathLike, output: str | os.PathLike, **score_options):
    """Fit the priority maps on a ClinVar-labelled VCF and save them as JSON.

    The VCF is scored with ``score_options`` (as :func:`score_vcf`), its ``CLNSIG`` turned into
    labels (pathogenic / likely pathogenic = 1, benign / likely benign = 0, others ignored) and
    one monotone map per evidence kind fitted (:func:`vareff.combine.priority.calibrate`).
    Returns the :class:`~vareff.combine.priority.PriorityModel`.
    """
    import tempfile

    from vareff.combine.priority import calibrate, clinvar_labels

    with tempfile.TemporaryDirectory(prefix="vareff-calibrate-") as tmp:
        scored_path = os.path.join(tmp, "scored.parquet")
        score_vcf(labelled_vcf, scored_path, **score_options)
        scored = pl.read_parquet(scored_path)
    labels = clinvar_labels(labelled_vcf).select("chrom", "pos", "ref", "alt", "label").unique(
        ["chrom", "pos", "ref", "alt"], keep="first")
    joined = scored.join(labels, on=["chrom", "pos", "ref", "alt"], how="left")
    model = calibrate(joined, info={"labelled_vcf": os.path.basename(os.fspath(labelled_vcf))})
    model.save(output)
    return model


def shortlist(result: str | os.PathLike, *, samples: str | os.PathLike | None = None,
              probands: Sequence[str] | None = None, top: int | None = None,
              include_common: bool = False) -> pl.DataFrame:
    """Each proband's carried alleles of a scored result, ranked (docs/family.md).

    ``result`` is the per-allele Parquet of ``score_vcf``; ``samples`` its samples table (default:
    ``<result>.samples.parquet`` beside it, written when the run had ``ped``). Alleles with any
    inheritance flag come first, then by ``priority``. Returns a polars DataFrame.
    """
    from vareff.errors import InputError
    from vareff.family.shortlist import shortlist as rank

    result = os.fspath(result)
    if samples is None:
        base = result[: -len(".parquet")] if result.endswith(".parquet") else result
        samples = base + ".samples.parquet"
    for path, what in ((result, "scored result"), (os.fspath(samples), "samples table")):
        if not os.path.isfile(path):
            raise InputError(f"the {what} {path!r} does not exist",
                             "score the trio VCF to Parquet with --ped first: vareff score IN.vcf.gz ... "
                             "--ped FAMILY.ped -o OUT.parquet (writes OUT.samples.parquet)")
    try:
        alleles, table = pl.read_parquet(result), pl.read_parquet(samples)
    except Exception as e:  # polars raises several kinds for a file that is not Parquet
        raise InputError(f"cannot read {result!r} / {os.fspath(samples)!r} as Parquet: {e}",
                         "pass the Parquet files vareff score wrote") from None
    if "is_proband" not in table.columns or not table.get_column("is_proband").fill_null(False).any():
        if probands is None:
            raise InputError(f"{os.fspath(samples)!r} marks no proband",
                             "score with --ped FAMILY.ped (affected samples are probands), or name them here")
    return rank(alleles, table, list(probands) if probands is not None else None, top=top,
                include_common=include_common)
