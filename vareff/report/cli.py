"""The ``vareff report``, ``vareff evaluate`` and ``vareff plot`` subcommands (parsers and thin
handlers over :mod:`vareff.report.html`, :mod:`vareff.report.evaluate`, :mod:`vareff.report.variants`)."""
from __future__ import annotations

import logging

from vareff.errors import ConfigError

log = logging.getLogger("vareff")


def report_parquet(outputs: list[str], report: str) -> str:
    """The Parquet output a ``--report`` is made from (the report needs the Parquet's metadata)."""
    for o in outputs:
        if o.lower().endswith((".parquet", ".pq")):
            return o
    raise ConfigError("--report needs a Parquet output", "add -o OUT.parquet beside the other outputs")


def report_after_score(outputs: list[str], report: str) -> None:
    from vareff.report.data import read_result
    from vareff.report.html import write_report

    write_report(read_result(report_parquet(outputs, report)), report)
    log.info("wrote %s and its .json", report)


def _label_options(p) -> None:
    p.add_argument("--labels-vcf", metavar="VCF", default=None,
                   help="ClinVar-style VCF whose CLNSIG labels the alleles (joined on chrom, pos, ref, alt)")
    p.add_argument("--labels", metavar="COLUMN", default=None,
                   help="column of the result holding labels (1/0, true/false or ClinVar terms)")


def _report_options(p) -> None:
    p.add_argument("--top", type=int, default=50, metavar="N", help="alleles in the top table (default 50, max 1000)")
    p.add_argument("--max-genes", type=int, default=200, metavar="N", help="rows of the per-gene table (default 200)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--title", default=None, help="report title")


def _opts(args):
    from vareff.report.html import ReportOptions

    return ReportOptions(top=args.top, max_genes=args.max_genes, n_boot=args.bootstrap, title=args.title)


def _cmd_report(args, argv) -> int:
    from vareff.report.data import attach_labels, read_result
    from vareff.report.html import json_path, write_report

    res = attach_labels(read_result(args.result), labels_vcf=args.labels_vcf, labels_column=args.labels)
    opts = _opts(args)
    if args.plot_top:
        from vareff.report.variants import report_plots

        opts.variant_plots = report_plots(res, args)
    write_report(res, args.output, opts)
    log.info("wrote %s and %s", args.output, json_path(args.output))
    return 0


def _cmd_evaluate(args, argv) -> int:
    from vareff.report.evaluate import evaluate_cli

    return evaluate_cli(args, argv, _opts(args))


def _cmd_plot(args, argv) -> int:
    from vareff.report.variants import plot_cli

    return plot_cli(args)


def _plot_model_options(p) -> None:
    """What re-scoring a variant for its plot needs (subset of the score options)."""
    p.add_argument("-f", "--fasta", help="reference FASTA (with .fai)")
    p.add_argument("--contig-map", action="append", default=[], metavar="CHROM=CONTIG[+OFFSET]",
                   help="as for vareff score")
    p.add_argument("--spliceai-distance", type=int, default=None, metavar="D",
                   help="SpliceAI: plot POS ± D (default: the result's distance, else 50)")
    p.add_argument("--spliceai-annotation", default=None, metavar="grch37|grch38|PATH",
                   help="SpliceAI gene table (default: the one of the result's run, else grch38)")
    p.add_argument("--spliceai-weights", default=None, metavar="DIR")
    p.add_argument("--annotation", metavar="GTF|GFF3|TABLE", default=None,
                   help="gene model drawn under the tracks (exons, strand)")
    p.add_argument("--device", default="cpu")


def add_report_parsers(sub, score_options) -> None:
    """Register ``report``, ``evaluate`` and ``plot`` on the main parser's subparsers."""
    r = sub.add_parser("report", help="write the self-contained HTML report (+ .json) of a result",
                       description="Run details, counts per status, score histograms, top alleles by priority, "
                                   "a per-gene summary and, with labels, ROC/PR curves and AUROC/AUPRC with "
                                   "bootstrap 95%% intervals. See docs/report.md.")
    r.add_argument("result", help="result .parquet (or .tsv) written by vareff score")
    r.add_argument("-o", "--output", required=True, metavar="HTML", help="report path; its numbers go to .json beside it")
    _label_options(r)
    _report_options(r)
    r.add_argument("--plot-top", type=int, default=0, metavar="K",
                   help="embed SpliceAI plots of the K top alleles (needs -f and the run's gene table)")
    _plot_model_options(r)
    r.set_defaults(func=_cmd_report)

    e = sub.add_parser("evaluate", help="score (or read scored) labelled variants and write the evaluation report",
                       description="LABELLED is a ClinVar-style VCF (CLNSIG), scored here with the score options, "
                                   "or a result .parquet/.tsv already scored (labels from --labels-vcf or --labels). "
                                   "Writes REPORT.html and REPORT.json.")
    score_options(e, calibrate=True)
    for a in e._actions:
        if a.dest == "output":
            a.metavar, a.help = "HTML", "report path; the metrics go to REPORT.json beside it"
        elif a.dest == "input":
            a.help = "labelled VCF (CLNSIG), or a scored .parquet/.tsv"
    e.add_argument("--priority", metavar="JSON", help="priority maps from `vareff calibrate` (default: uncalibrated)")
    e.add_argument("--scored", metavar="PARQUET", default=None,
                   help="also keep the scored alleles in this Parquet (default: a temporary file)")
    _label_options(e)
    _report_options(e)
    e.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("plot", help="plot the models' view of ref vs alt around one or a few alleles",
                       description="SpliceAI acceptor/donor probabilities of ref and alt over POS ± D with DS/DP "
                                   "marked; SegmentNT element tracks from a --profiles Parquet; the gene model "
                                   "from --annotation. PNG, SVG or PDF by the extension. See docs/report.md.")
    p.add_argument("--variant", action="append", default=[], metavar="CHROM:POS:REF:ALT",
                   help="allele to plot; repeatable")
    p.add_argument("--result", metavar="PARQUET", default=None, help="a result to take --top N alleles from")
    p.add_argument("--top", type=int, default=None, metavar="N", help="plot the N top alleles of --result by priority")
    p.add_argument("--profiles", metavar="PARQUET", default=None,
                   help="SegmentNT profiles written by vareff score --profiles (adds the 14 element tracks)")
    p.add_argument("-m", "--model", action="append", dest="models", default=None, metavar="MODEL",
                   help="spliceai (default when -f is given) and/or a GROVER/NT checkpoint directory (LLR of every substitution around the allele)")
    p.add_argument("--flank", type=int, default=50, metavar="N",
                   help="GROVER/NT: per-position LLR over POS ± N (default 50)")
    _plot_model_options(p)
    p.add_argument("-o", "--output", required=True, metavar="PLOT",
                   help="PLOT.png|svg|pdf; several alleles: one file each, named PLOT.<chrom>_<pos>_<ref>_<alt>.png")
    p.set_defaults(func=_cmd_plot)
