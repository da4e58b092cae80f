"""Command line: ``vareff score``, ``vareff models`` (bcftools-like flags; see ``--help``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from vareff import __version__
from vareff.errors import VareffError

log = logging.getLogger("vareff")


class _Parser(argparse.ArgumentParser):
    """argparse with vareff's error shape: ``vareff: error: ...`` + ``Hint: ...``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"vareff: error: {message}\nHint: see `{self.prog} --help` for the options\n")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not allowed: give at least 1 (leave the option out for the default)")
    return n


def _global_options(p, suppress: bool) -> None:
    """``--log-level``, ``-q``, ``-v``: accepted before and after the subcommand (after it they
    default to SUPPRESS, so that they do not undo what was given before it)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--log-level", default=d("INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log verbosity on stderr (default: INFO)")
    p.add_argument("-q", "--quiet", action="store_true", default=d(False),
                   help="warnings and errors only, no progress")
    p.add_argument("-v", "--verbose", action="store_true", default=d(False), help="debug messages (--log-level DEBUG)")


def _subcommand(sub, name: str, **kw) -> argparse.ArgumentParser:
    """A subcommand parser that also takes the global options (after the subcommand name)."""
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    return sub.add_parser(name, parents=[common], **kw)


def _score_parser(sub) -> None:
    p = _subcommand(sub, "score", help="score the alleles of a VCF/BCF with one or more models",
                      description="Score every allele of INPUT (VCF, VCF.gz, BCF, or - for stdin).")
    _score_parser_options(p, calibrate=False)
    p.set_defaults(func=_cmd_score)


def _score_parser_options(p, calibrate: bool) -> None:
    p.add_argument("input", help="VCF/VCF.gz/BCF, or - for stdin" if not calibrate else "VCF with ClinVar CLNSIG")
    p.add_argument("-f", "--fasta", help="reference FASTA (with .fai); needed when a model runs")
    p.add_argument("-m", "--model", action="append", dest="models", metavar="MODEL",
                   help="bundled model name (spliceai) or local checkpoint directory; repeatable "
                        "(default: spliceai, or none for a lookup-only run with --alphamissense/--annotation)")
    if calibrate:
        p.add_argument("-o", "--output", required=True, metavar="JSON", help="where to write the priority maps")
    else:
        p.add_argument("-o", "--output", action="append", required=True, metavar="OUT",
                       help="output path; repeatable (.parquet, .vcf, .vcf.gz, .tsv). Files are written "
                            "atomically and can be resumed. '-' streams VCF (or -O tsv) to stdout as the run goes, "
                            "as does a FIFO or device path; a streamed output cannot be resumed")
        p.add_argument("-O", "--output-format", choices=["parquet", "vcf", "tsv"],
                       help="output format (default: from the extension)")
    p.add_argument("-r", "--region", action="append", default=[], metavar="CHR:START-END",
                   help="only records in this region (1-based, inclusive); repeatable; needs an index")
    p.add_argument("--contig-map", action="append", default=[], metavar="CHROM=CONTIG[+OFFSET]",
                   help="VCF contig CHROM is FASTA contig CONTIG whose first base is genomic OFFSET+1; repeatable")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--dtype", default=None,
                   help="float32, bfloat16 or float16; GROVER also mixed (docs/grover.md); default float32 on CPUs, bfloat16 on CUDA")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch and decompression, at least 1 (default: torch's default, all cores)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="records per chunk, the unit of writes and of --resume (default: 2000 with a model or "
                        "sample columns, else 20000)")
    if not calibrate:
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last finished chunk (file outputs only, "
                            "not -o - or a FIFO)")
        p.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: this process (default); ray: genomic shards scored by Ray workers, same "
                            "output (needs pip install 'vareff[ray]')")
        p.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="Ray cluster to join (default: RAY_ADDRESS, or a new local instance)")
        p.add_argument("--shards", type=int, default=None, metavar="N",
                       help="Ray: number of genomic shards (default: 4 per worker)")
        p.add_argument("--report", metavar="HTML", default=None,
                       help="also write the HTML run report (and its .json) of the Parquet output (see vareff report)")
    p.add_argument("--skip-malformed", action="store_true",
                   help="keep going past unparseable records (status malformed_record) instead of stopping")
    p.add_argument("--allow-truncated", action="store_true",
                   help="score a .vcf.gz/.bcf that lacks its BGZF end-of-file marker (cut short) instead of "
                        "refusing it; records past the cut are missing")
    p.add_argument("--max-allele-length", type=int, default=1000,
                   help="alleles longer than this get status allele_too_long (default: 1000)")
    p.add_argument("--spliceai-distance", type=int, default=50, metavar="D",
                   help="SpliceAI: max distance between the variant and gained/lost splice site (default: 50)")
    p.add_argument("--spliceai-mask", action="store_true",
                   help="SpliceAI: mask scores of annotated acceptor/donor gains and unannotated losses")
    p.add_argument("--spliceai-annotation", default="grch38", metavar="grch37|grch38|PATH",
                   help="SpliceAI gene table (default: grch38, from the spliceai wheel)")
    p.add_argument("--spliceai-weights", default=None, metavar="DIR",
                   help="folder with spliceai1.h5..spliceai5.h5 (default: the installed spliceai wheel)")
    _model_options(p)
    _lookup_options(p, with_priority=not calibrate)
    p.add_argument("--store", default=None, metavar="DIR",
                   help="score store: serve alleles scored before from DIR, add the new ones "
                        "(default: $VAREFF_STORE; --store '' for none; docs/store.md)")
    p.add_argument("--store-use", action="append", default=[], metavar="ID",
                   help="also serve alleles from this imported store configuration (vareff store import); "
                        "repeatable")
    _family_options(p)
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) when under 1%% of the alleles can be placed on the FASTA (default: a warning)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar / lines (default: a bar on a terminal, else a line every 30 s)")


#: dedicated flags -> model_options keys (backends read them; see docs/grover.md, docs/nt_segmentnt.md)
MODEL_FLAGS = {
    "segmentnt_k": ("--segmentnt-k", int, "SegmentNT: deltas are taken within ±N nt of the allele (default 100)",
                    "segmentnt.k"),
    "segmentnt_window": ("--segmentnt-window", int, "SegmentNT: window length in nt (default 30000)",
                         "segmentnt.window"),
    "profiles": ("--profiles", str, "SegmentNT: write per-position ref/alt probabilities to this Parquet",
                 "segmentnt.profiles"),
    "profile_alleles": ("--profile-alleles", str, "SegmentNT: only these alleles' profiles (CHROM:POS[:REF:ALT],...)",
                        "segmentnt.profile_alleles"),
    "profile_flank": ("--profile-flank", int, "SegmentNT: profile ±N nt around each allele", "segmentnt.profile_flank"),
    "nt_window": ("--nt-window", int, "Nucleotide Transformer: window length in nt", "nt.window"),
    "grover_llr": ("--grover-llr", str, "GROVER: LLR definition, masked (default) or wt-marginal (docs/grover.md)",
                   "grover.llr"),
}


def _model_options(p) -> None:
    for dest, (flag, typ, help_, _) in MODEL_FLAGS.items():
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any backend option (e.g. grover.window=1000, segmentnt.stride=6000); repeatable")


def model_options(args) -> dict:
    """``--model-option`` and the dedicated flags as one dict (dedicated flags win)."""
    from vareff.errors import ConfigError

    out: dict = {}
    for item in args.model_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-option {item!r} is not KEY=VALUE", "e.g. --model-option segmentnt.k=200")
        for conv in (int, float):
            try:
                value = conv(value)
                break
            except ValueError:
                continue
        out[key] = value
    for dest, (*_, key) in MODEL_FLAGS.items():
        if getattr(args, dest) is not None:
            out[key] = getattr(args, dest)
    return out


def _lookup_options(p, with_priority: bool) -> None:
    p.add_argument("--alphamissense", metavar="TABLE", help="AlphaMissense table built by `vareff am-build`")
    p.add_argument("--am-transcript", metavar="ID[,ID...]",
                   help="only AlphaMissense rows of these transcripts (version ignored), as VEP's transcript_match")
    p.add_argument("--annotation", metavar="GTF|GFF3|TABLE",
                   help="gene model for the gene and region_class columns (GENCODE/Ensembl GTF or GFF3, "
                        "or a SpliceAI gene table)")
    p.add_argument("--annotation-transcripts", choices=["all", "canonical"], default="all",
                   help="transcripts used for region classes (default: all)")
    if with_priority:
        p.add_argument("--priority", metavar="JSON",
                       help="priority maps from `vareff calibrate` (default: uncalibrated)")


def _family_options(p) -> None:
    g = p.add_argument_group("genotypes, families and frequency (docs/family.md)")
    g.add_argument("--samples", default="all", metavar="all|none|NAME[,NAME...]",
                   help="samples whose genotypes go into OUT.samples.parquet (default: all, when the VCF has "
                        "samples and an output is Parquet or --ped is given)")
    g.add_argument("--samples-output", metavar="PATH", help="where to write the samples table (Parquet)")
    g.add_argument("--all-genotypes", action="store_true",
                   help="keep every (allele, sample) row in the samples table, not only carriers")
    g.add_argument("--ped", metavar="PED", help="6-column PED file: trio inheritance flags for affected probands")
    g.add_argument("--min-gq", type=int, default=20, help="de novo: minimum GQ of proband and parents (default 20)")
    g.add_argument("--min-dp", type=int, default=10, help="de novo: minimum DP of proband and parents (default 10)")
    g.add_argument("--max-af", action="append", default=[], metavar="FIELD<=X",
                   help="flag alleles whose INFO FIELD exceeds X as common (column, priority x0.1); repeatable")
    g.add_argument("--build", default="GRCh38", choices=["GRCh38", "GRCh37"],
                   help="genome build of the pseudo-autosomal regions (male chrX/chrY zygosity; default GRCh38)")


def _score_kwargs(args) -> dict:
    return dict(
        fasta=args.fasta, models=args.models, regions=args.region, contig_map=args.contig_map, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, threads=args.threads, chunk_size=args.chunk_size,
        skip_malformed=args.skip_malformed, max_allele_length=args.max_allele_length,
        allow_truncated=args.allow_truncated,
        spliceai_distance=args.spliceai_distance, spliceai_mask=args.spliceai_mask,
        spliceai_annotation=args.spliceai_annotation, spliceai_weights=args.spliceai_weights,
        alphamissense=args.alphamissense, am_transcript=args.am_transcript, annotation=args.annotation,
        annotation_transcripts=args.annotation_transcripts, priority=getattr(args, "priority", None),
        progress=not (args.no_progress or args.quiet), model_options=model_options(args), strict=args.strict,
        store=args.store, store_use=args.store_use,
        samples=args.samples, samples_output=args.samples_output, all_genotypes=args.all_genotypes, ped=args.ped,
        min_gq=args.min_gq, min_dp=args.min_dp, max_af=args.max_af, build=args.build,
    )


def _cmd_score(args, argv) -> int:
    from vareff.api import score_vcf
    from vareff.write.vcf import format_command

    if args.report:
        from vareff.report.cli import report_parquet

        report_parquet(args.output, args.report)  # fail before scoring when no output can feed it
    summary = score_vcf(args.input, args.output, output_format=args.output_format, resume=args.resume,
                        engine=args.engine, ray_address=args.ray_address, shards=args.shards,
                        command=format_command(["vareff", *argv]), **_score_kwargs(args))
    log.info("done: %s", summary)
    if args.report:
        from vareff.report.cli import report_after_score

        report_after_score(args.output, args.report)
    return 0


def _cmd_am_build(args, argv) -> int:
    from vareff.lookup.am_build import build_table

    stats = build_table(args.source, args.output, progress=not (args.no_progress or args.quiet))
    log.info("done: %s", format_build_stats(stats))
    return 0


def format_build_stats(stats) -> str:
    """``am-build``'s end-of-run summary, for people (the full record is ``BuildStats``)."""
    contigs = ", ".join(f"{c} {n:,}" for c, n in stats.contigs.items())
    dup = f"; {stats.duplicate_rows:,} duplicate (allele, transcript) rows kept" if stats.duplicate_rows else ""
    return (f"{stats.rows:,} rows ({stats.genome}, {stats.layout} layout, {stats.transcripts:,} transcripts) from "
            f"{stats.source} ({stats.source_bytes / 1e6:.1f} MB, sha256 {stats.source_sha256[:12]}...) -> "
            f"{stats.table} ({stats.table_bytes / 1e6:.1f} MB) in {stats.seconds:.1f} s, peak memory "
            f"{stats.peak_rss_bytes / 2**20:.0f} MiB; rows per contig: {contigs}{dup}")


def _cmd_calibrate(args, argv) -> int:
    from vareff.api import calibrate_vcf

    kw = _score_kwargs(args)
    del kw["priority"]
    model = calibrate_vcf(args.input, args.output, **kw)
    log.info("wrote %s: %s", args.output, model.info)
    return 0


def _cmd_models(args, argv) -> int:
    from vareff.score.registry import BUILTIN, CHECKPOINT_FAMILIES

    print("Bundled models (-m NAME):")
    for name, desc in BUILTIN.items():
        print(f"  {name:10s} {desc}")
    print("Checkpoint directories (-m PATH; the family is read from config.json model_type):")
    for name, desc in CHECKPOINT_FAMILIES.items():
        print(f"  {name:10s} {desc}")
    return 0


def _cmd_shortlist(args, argv) -> int:
    from vareff.api import shortlist
    from vareff.family.output import write_table

    df = shortlist(args.result, samples=args.samples, probands=args.proband, top=args.top,
                   include_common=args.include_common)
    write_table(df, args.output)
    per = df.group_by("proband").len().sort("proband").iter_rows() if df.height else []
    log.info("wrote %s: %s", args.output, ", ".join(f"{p} {n} alleles" for p, n in per) or "no carried allele")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vareff", description="Variant-effect scoring with DNA foundation models.")
    p.add_argument("-V", "--version", action="version", version=f"vareff {__version__}")
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _score_parser(sub)
    m = _subcommand(sub, "models", help="list the model backends")
    m.set_defaults(func=_cmd_models)
    b = _subcommand(sub, "am-build", help="convert a published AlphaMissense TSV into vareff's lookup table (once)",
                      description="Convert AlphaMissense_hg38/hg19/isoforms (.tsv.gz, gzip or bgzip) into a "
                                  "table that `vareff score --alphamissense` reads.")
    b.add_argument("source", help="the published AlphaMissense variant file")
    b.add_argument("-o", "--output", required=True, help="output table (e.g. am_hg38.arrow)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar / lines")
    b.set_defaults(func=_cmd_am_build)
    c = _subcommand(sub, "calibrate", help="fit the priority maps from a ClinVar-labelled VCF (CLNSIG)",
                      description="Score a labelled VCF with the given models/lookups and fit one monotone map "
                                  "per evidence kind; write them as JSON for `vareff score --priority`.")
    _score_parser_options(c, calibrate=True)
    c.set_defaults(func=_cmd_calibrate)
    sl = _subcommand(sub, "shortlist", help="rank each proband's alleles of a scored trio/cohort result",
                     description="Join OUT.samples.parquet to OUT.parquet (both written by `vareff score --ped`) and "
                                 "rank each proband's carried alleles: inheritance flags first, then priority.")
    sl.add_argument("result", help="per-allele Parquet written by vareff score")
    sl.add_argument("-o", "--output", required=True, metavar="OUT", help="shortlist (.tsv or .parquet)")
    sl.add_argument("--samples", metavar="PARQUET", help="samples table (default: RESULT's .samples.parquet)")
    sl.add_argument("--proband", action="append", metavar="SAMPLE", help="only these probands (repeatable)")
    sl.add_argument("--top", type=int, metavar="N", help="the first N alleles per proband")
    sl.add_argument("--include-common", action="store_true", help="keep alleles flagged common (--max-af)")
    sl.set_defaults(func=_cmd_shortlist)
    from vareff.report.cli import add_report_parsers

    add_report_parsers(sub, _score_parser_options)
    from vareff.store.commands import add_precompute_parser, add_store_parser

    add_store_parser(sub)
    add_precompute_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    level = "DEBUG" if args.verbose else "WARNING" if args.quiet and args.log_level == "INFO" else args.log_level
    logging.basicConfig(level=getattr(logging, level), format="vareff: %(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    try:
        return args.func(args, argv)
    except VareffError as e:
        print(f"vareff: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `vareff models | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        name = {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")
        print(f"vareff: interrupted ({name}); finished chunks are kept: rerun the same command with --resume "
              "to continue from the last finished chunk", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
