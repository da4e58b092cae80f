"""``vareff evaluate``: score a labelled VCF (or read an already scored result) and write the
report with its evaluation section, plus the metrics as REPORT.json beside it."""
from __future__ import annotations

import logging
import os
import tempfile

from vareff.errors import InputError
from vareff.report.data import LABEL, attach_labels, read_result
from vareff.report.html import ReportOptions, json_path, write_report

log = logging.getLogger("vareff")

_RESULT_EXT = (".parquet", ".pq", ".tsv", ".tsv.gz", ".txt")


def is_result(path: str) -> bool:
    return path.lower().endswith(_RESULT_EXT)


def evaluate_result_file(path: str, html: str, opts: ReportOptions, *, labels_vcf: str | None = None,
                         labels_column: str | None = None) -> dict:
    """Report on an already scored result; labels from a VCF, a column, or its ``label`` column."""
    res = read_result(path)
    if not labels_vcf and not labels_column:
        if LABEL not in res.df.columns:
            raise InputError(f"{path!r} is a result without labels",
                             "pass --labels-vcf CLINVAR.vcf (CLNSIG) or --labels COLUMN")
        labels_column = LABEL
    res = attach_labels(res, labels_vcf=labels_vcf, labels_column=labels_column)
    return write_report(res, html, opts)


def evaluate_vcf(vcf: str, html: str, opts: ReportOptions, *, scored: str | None = None,
                 labels_vcf: str | None = None, command: str | None = None, **score_options) -> dict:
    """Score ``vcf`` with ``score_options`` (as :func:`vareff.score_vcf`) and report on its CLNSIG labels."""
    from vareff.api import score_vcf
    from vareff.combine.priority import clinvar_labels

    lab_src = labels_vcf or vcf
    clinvar_labels(lab_src)  # fail before scoring when there are no labels
    with tempfile.TemporaryDirectory(prefix="vareff-evaluate-") as tmp:
        out = scored or os.path.join(tmp, "scored.parquet")
        score_vcf(vcf, out, command=command, **score_options)
        res = attach_labels(read_result(out), labels_vcf=lab_src)
        res.name = f"{os.path.basename(vcf)} (scored)"
        return write_report(res, html, opts)


def evaluate_cli(args, argv, opts: ReportOptions) -> int:
    from vareff.cli import _score_kwargs
    from vareff.write.vcf import format_command

    if is_result(args.input):
        evaluate_result_file(args.input, args.output, opts, labels_vcf=args.labels_vcf, labels_column=args.labels)
    else:
        if args.labels:
            raise InputError("--labels COLUMN applies to a scored .parquet/.tsv input",
                             "a VCF input is labelled by its CLNSIG (or --labels-vcf)")
        evaluate_vcf(args.input, args.output, opts, scored=args.scored, labels_vcf=args.labels_vcf,
                     command=format_command(["vareff", *argv]), **_score_kwargs(args))
    log.info("wrote %s and %s", args.output, json_path(args.output))
    return 0
