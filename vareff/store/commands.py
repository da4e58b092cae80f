"""The ``vareff store ...`` and ``vareff precompute`` subcommands (registered by vareff.cli)."""
from __future__ import annotations

import json
import logging

log = logging.getLogger("vareff")


def add_store_parser(sub) -> None:
    p = sub.add_parser("store", help="inspect and maintain a score store (info, compact, prune, import, export)",
                       description="A score store (vareff score --store DIR) keeps every allele's scores per model "
                                   "configuration and reference contig; see docs/store.md.")
    ss = p.add_subparsers(dest="store_command", required=True)
    i = ss.add_parser("info", help="entries per configuration and contig, size on disk, hit rate of the last runs")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument("--runs", type=int, default=10, help="how many recent runs to show (default 10)")
    i.set_defaults(func=_cmd_info)
    c = ss.add_parser("compact", help="merge each partition's segments into one; remove corrupt files")
    c.add_argument("dir")
    c.add_argument("--config", default=None, help="only this configuration id")
    c.set_defaults(func=_cmd_compact)
    r = ss.add_parser("prune", help="drop configurations")
    r.add_argument("dir")
    r.add_argument("--config", action="append", default=[], metavar="ID", help="configuration id (see info); repeatable")
    r.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="every configuration of this backend (spliceai, grover, nt, segmentnt); repeatable")
    r.add_argument("--stale", action="store_true", help="configurations written under other score definitions")
    r.set_defaults(func=_cmd_prune)
    m = ss.add_parser("import", help="add a published score table (SpliceAI VCF, Parquet, or a store export)")
    m.add_argument("dir")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--spliceai-vcf", metavar="VCF", help="SpliceAI-annotated VCF (SpliceAI= INFO field)")
    src.add_argument("--parquet", metavar="FILE",
                     help="Parquet with chrom, pos, ref, alt and score columns, or a `vareff store export` file")
    m.add_argument("-f", "--fasta", help="the reference the table was made on (its contig checksums key the entries)")
    m.add_argument("--contig-map", action="append", default=[], metavar="CHROM=CONTIG[+OFFSET]")
    m.add_argument("--name", default=None, help="declared provenance: a name for the table (e.g. its release)")
    m.add_argument("--distance", type=int, default=None, help="SpliceAI VCF: the distance D it was made with")
    m.add_argument("--mask", action="store_true", help="SpliceAI VCF: it was made with masking")
    m.add_argument("--backend", default="imported", help="Parquet: the backend whose columns it holds")
    m.set_defaults(func=_cmd_import)
    e = ss.add_parser("export", help="write one configuration's entries to Parquet")
    e.add_argument("dir")
    e.add_argument("--config", required=True, metavar="ID", help="configuration id (see info)")
    e.add_argument("-o", "--output", required=True, help="output .parquet")
    e.set_defaults(func=_cmd_export)


def _cmd_info(args, argv) -> int:
    from vareff.store.admin import format_info, info

    d = info(args.dir, last_runs=args.runs)
    print(json.dumps(d, indent=1) if args.json else format_info(d))
    return 0


def _cmd_compact(args, argv) -> int:
    from vareff.store.admin import compact

    log.info("compacted %s: %s", args.dir, compact(args.dir, args.config))
    return 0


def _cmd_prune(args, argv) -> int:
    from vareff.errors import ConfigError
    from vareff.store.admin import prune

    if not (args.config or args.backend or args.stale):
        raise ConfigError("vareff store prune: say what to drop", "pass --config ID, --backend NAME or --stale")
    dropped = prune(args.dir, args.config, args.backend, args.stale)
    log.info("dropped %d configuration(s): %s", len(dropped), ", ".join(dropped) or "none matched")
    return 0


def add_precompute_parser(sub) -> None:
    from vareff.cli import _model_options

    p = sub.add_parser("precompute", help="score every SNV (and 1-nt deletion) of regions into a score store",
                       description="Saturation mutagenesis of regions straight into the score store: 3 SNVs per "
                                   "position (--deletions: also its 1-nt deletion), sharing each backend's "
                                   "reference passes; alleles already stored are skipped.")
    p.add_argument("-f", "--fasta", required=True, help="reference FASTA (with .fai)")
    p.add_argument("-m", "--model", action="append", dest="models", metavar="MODEL",
                   help="bundled model name or checkpoint directory; repeatable (default: spliceai)")
    p.add_argument("--store", default=None, metavar="DIR", help="the score store (default: $VAREFF_STORE)")
    p.add_argument("-r", "--region", action="append", default=[], metavar="CHR:START-END",
                   help="region (1-based, inclusive); repeatable")
    p.add_argument("--bed", default=None, help="BED file of regions")
    p.add_argument("--genes", default=None, metavar="NAME[,NAME...]", help="exons of these genes (needs --annotation)")
    p.add_argument("--annotation", default=None, metavar="GTF|GFF3|TABLE", help="gene model for --genes")
    p.add_argument("--flank", type=int, default=50, help="--genes: nt added on each side of every exon (default 50)")
    p.add_argument("--deletions", action="store_true", help="also every 1-nt deletion")
    p.add_argument("--contig-map", action="append", default=[], metavar="CHROM=CONTIG[+OFFSET]")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=2000, help="positions per chunk (default 2000)")
    p.add_argument("--spliceai-distance", type=int, default=50, metavar="D")
    p.add_argument("--spliceai-mask", action="store_true")
    p.add_argument("--spliceai-annotation", default="grch38", metavar="grch37|grch38|PATH")
    p.add_argument("--spliceai-weights", default=None, metavar="DIR")
    _model_options(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_precompute)


def _cmd_precompute(args, argv) -> int:
    from vareff.api import resolve_store
    from vareff.cli import model_options
    from vareff.config import OutputSpec, RunConfig
    from vareff.store.precompute import precompute
    from vareff.write.vcf import format_command

    cfg = RunConfig(input="-", outputs=(OutputSpec("<store>", "parquet"),), fasta=args.fasta,
                    models=tuple(args.models or ["spliceai"]), contig_map=tuple(args.contig_map), device=args.device,
                    dtype=args.dtype, batch_size=args.batch_size, threads=args.threads, chunk_size=args.chunk_size,
                    spliceai_distance=args.spliceai_distance, spliceai_mask=args.spliceai_mask,
                    spliceai_annotation=args.spliceai_annotation, spliceai_weights=args.spliceai_weights,
                    model_options=model_options(args), store=resolve_store(args.store),
                    command=format_command(["vareff", *argv]))
    genes = [g for g in (args.genes or "").split(",") if g]
    stats = precompute(cfg, dict(regions=args.region, bed=args.bed, genes=genes, annotation=args.annotation,
                                 flank=args.flank), deletions=args.deletions, progress=not args.no_progress)
    log.info("done: %s", stats)
    return 0


def _cmd_import(args, argv) -> int:
    import pyarrow.parquet as pq

    from vareff.errors import ConfigError
    from vareff.store import transfer
    from vareff.window.genome import ContigSlice, Genome

    exported = args.parquet and transfer.EXPORT_META in (pq.read_schema(args.parquet).metadata or {})
    if exported:
        config, n = transfer.import_export_file(args.dir, args.parquet)
    else:
        if not args.fasta or not args.name:
            raise ConfigError("vareff store import: a published table needs -f REF.fa and --name",
                              "-f: the reference it was made on; --name: its declared provenance")
        genome = Genome(args.fasta, contig_map=[ContigSlice.parse(x) for x in args.contig_map])
        if args.spliceai_vcf:
            if args.distance is None:
                raise ConfigError("--spliceai-vcf needs --distance D (the -D the file was made with)",
                                  "SpliceAI's published files say it in their README, e.g. 50 or 500")
            config, n = transfer.import_spliceai_vcf(args.dir, args.spliceai_vcf, genome, args.name, args.distance,
                                                     args.mask)
        else:
            config, n = transfer.import_parquet(args.dir, args.parquet, genome, args.name, args.backend)
    log.info("imported %d entries as configuration %s%s", n, config,
             "" if exported else f" (serve them with vareff score --store {args.dir} --store-use {config})")
    return 0


def _cmd_export(args, argv) -> int:
    from vareff.store.transfer import export

    n = export(args.dir, args.config, args.output)
    log.info("exported %d entries of %s to %s", n, args.config, args.output)
    return 0
