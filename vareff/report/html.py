"""The HTML run report: one self-contained file (styles, script and images inline) rendered from
a Jinja2 template, plus the same numbers as JSON beside it.

Sections: the run (command, version, models and lookups with their provenance, options, counts
per status with what each non-ok status means), score distributions, top alleles by
``priority``, a per-gene summary, the evaluation on labelled alleles, and optional plots of
single variants.  Every section says what is missing when its input is; tables are capped
(:class:`ReportOptions`) so a 10^6-row result still gives a small file (< ``MAX_BYTES``).
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from vareff import __version__
from vareff.errors import ConfigError
from vareff.report import metrics as M
from vareff.report import plots as P
from vareff.report.data import LABEL, Result

#: the report stays below this size whatever the input (checked by the tests)
MAX_BYTES = 5_000_000
MAX_TOP = 1000
MAX_HISTOGRAMS = 60

#: plain-language meaning of every non-ok status, and what to do about it
STATUS_HELP = {
    "near_contig_edge": ("Scored, on a window padded with N: the allele is close to the end of the contig or of a "
                         "sliced FASTA.", "Usable, but check with a FASTA that covers the whole model window."),
    "malformed_record": ("The VCF line could not be parsed (e.g. spaces instead of tabs); kept because of "
                         "--skip-malformed.", "Fix the line in the VCF (the log names it) and rescore."),
    "no_alt": ("ALT is '.' or equal to REF: there is nothing to score.", "Nothing to do."),
    "symbolic_allele": ("Symbolic ALT (<DEL>, breakend, *): sequence models need explicit bases.",
                        "Write the allele out as bases if it must be scored."),
    "invalid_allele": ("The allele holds letters other than A, C, G, T, N.", "Check the record in the VCF."),
    "contig_not_in_fasta": ("The chromosome is not in the FASTA (after matching chr1/1 and MT/chrM).",
                            "Use the FASTA of the VCF's genome build, or --contig-map for renamed contigs."),
    "outside_fasta": ("REF lies outside the part of the chromosome a sliced FASTA holds.",
                      "Give a FASTA that covers it, or restrict the run with -r."),
    "ref_mismatch": ("REF differs from the FASTA at this position.",
                     "Check that VCF and FASTA are the same build and any --contig-map offset is right."),
    "allele_too_long": ("The allele is longer than --max-allele-length (SpliceAI: REF longer than 2·D).",
                        "Raise --max-allele-length or --spliceai-distance if it must be scored."),
    "outside_gene": ("SpliceAI scores only alleles inside an annotated gene; none overlaps this one.",
                     "Expected for intergenic alleles; otherwise give a gene table that covers it "
                     "(--spliceai-annotation)."),
    "n_in_window": ("The model's window contains N bases (a gap in the reference).",
                    "Nothing to do for this model; other models may still score the allele."),
    "model_error": ("The model failed on this allele.", "See the log for the reason and report it."),
}


@dataclass
class ReportOptions:
    """What the report shows; caps keep its size bounded."""

    top: int = 50  # alleles in the top table (at most MAX_TOP)
    max_genes: int = 200
    n_boot: int = M.N_BOOT
    title: str | None = None
    variant_plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, data URI)

    def __post_init__(self):
        if not 1 <= self.top:
            raise ConfigError("--top must be at least 1")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _cell(v) -> dict:
    num = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    return {"text": _fmt(v), "sort": v if num else ("" if v is None else str(v)), "num": num}


def _options(command: str) -> list[tuple[str, str]]:
    """(option, value) pairs of a recorded command line, for the run table."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    out, i = [], 2 if len(argv) > 1 and argv[1] in ("score", "evaluate", "calibrate") else 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append((a, argv[i + 1]))
            i += 2
        else:
            out.append((a if a.startswith("-") else "input", "" if a.startswith("-") else a))
            i += 1
    return out


def _run_section(res: Result) -> dict:
    df = res.df
    counts = (df["status"].value_counts(sort=True).rows() if "status" in df.columns else [])
    total = df.height
    statuses = [{"status": s, "n": n, "pct": f"{100 * n / total:.1f}" if total else "0",
                 "meaning": STATUS_HELP.get(s, ("", ""))[0] if s != "ok" else "Scored.",
                 "todo": STATUS_HELP.get(s, ("", "See README, Statuses."))[1] if s != "ok" else ""}
                for s, n in counts]
    meta = res.meta
    return {
        "file": res.name or os.path.basename(res.path), "rows": total, "written": res.written,
        "command": meta.get("command") or "not recorded (no vareff metadata in this file)",
        "version": meta.get("version", "not recorded"), "report_version": __version__,
        "models": meta.get("models", []), "lookups": meta.get("lookups", []),
        "options": _options(meta.get("command") or ""), "statuses": statuses,
        "n_ok": sum(n for s, n in counts if s in ("ok", "near_contig_edge")),
        "has_meta": bool(meta),
    }


def _histograms(res: Result) -> dict:
    cols = res.score_columns
    shown = cols[:MAX_HISTOGRAMS]
    figs, empty = [], []
    for c in shown:
        v = res.df[c].cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
        if v.size == 0:
            empty.append(c)
            continue
        fig, log = P.histogram(c, v)
        figs.append({"name": c, "uri": P.to_data_uri(fig), "log": log, "n": int(v.size)})
    return {"figures": figs, "empty": empty, "capped": len(cols) - len(shown)}


def _gene_col(df: pl.DataFrame) -> str | None:
    for c in ("gene", "spliceai_gene"):
        if c in df.columns and df[c].drop_nulls().len():
            return c
    return None


def _top_section(res: Result, opts: ReportOptions) -> dict:
    df, scores = res.df, res.score_columns
    n = min(opts.top, MAX_TOP)
    fallback = [c for c in ("spliceai_ds_max", "am_pathogenicity") if c in scores] + scores
    rank_by = "priority" if "priority" in df.columns else next(iter(fallback), None)
    if rank_by is None:
        return {"rank_by": None, "header": [], "rows": [], "n": 0, "capped": False, "missing": True}
    gene = _gene_col(df)
    lead = [c for c in ("chrom", "pos", "ref", "alt", gene, "region_class", "priority", "priority_source", "status")
            if c and c in df.columns]
    cols = lead + [c for c in scores if c not in lead]
    ranked = df.filter(pl.col(rank_by).is_not_null() & pl.col(rank_by).is_not_nan()) if \
        df.schema[rank_by] in (pl.Float32, pl.Float64) else df.filter(pl.col(rank_by).is_not_null())
    top = ranked.sort(rank_by, descending=True).head(n).select(cols)
    rows = [[_cell(v) for v in r] for r in top.rows()]
    return {"rank_by": rank_by, "header": cols, "rows": rows, "n": len(rows), "available": ranked.height,
            "capped": ranked.height > n, "missing": rank_by != "priority", "gene": gene}


def _gene_section(res: Result, opts: ReportOptions) -> dict:
    df = res.df
    gene = _gene_col(df)
    if gene is None:
        return {"gene": None, "rows": [], "capped": 0}
    has_p = "priority" in df.columns
    aggs = [pl.len().alias("alleles"), (pl.col("status") == "ok").sum().alias("ok")] if "status" in df.columns \
        else [pl.len().alias("alleles")]
    if has_p:
        aggs += [pl.col("priority").max().alias("max priority"),
                 pl.col("priority_source").sort_by(pl.col("priority").fill_null(-1.0), descending=True).first()
                 .alias("strongest evidence")] if "priority_source" in df.columns else \
            [pl.col("priority").max().alias("max priority")]
        aggs.append((pl.concat_str([pl.col("chrom"), pl.col("pos").cast(pl.String), pl.col("ref"), pl.col("alt")],
                                   separator=":").sort_by(pl.col("priority").fill_null(-1.0), descending=True).first())
                    .alias("top allele"))
    g = df.filter(pl.col(gene).is_not_null()).group_by(gene).agg(aggs)
    g = g.sort(["max priority", gene], descending=[True, False], nulls_last=True) if has_p else \
        g.sort(["alleles", gene], descending=[True, False])
    shown = g.head(opts.max_genes)
    return {"gene": gene, "header": shown.columns, "rows": [[_cell(v) for v in r] for r in shown.rows()],
            "capped": g.height - shown.height, "total": g.height, "has_priority": has_p}


def evaluate_result(res: Result, n_boot: int = M.N_BOOT) -> tuple[list[M.ScoreMetrics], list[tuple]]:
    """Metrics of every score column (and ``priority``) on the labelled alleles, and the curve inputs."""
    if not res.has_labels:
        return [], []
    df = res.df.filter(pl.col(LABEL).is_not_null())
    y_all = df[LABEL].cast(pl.Float64).to_numpy()
    out, curves = [], []
    for c in res.score_columns:
        v = df[c].cast(pl.Float64).fill_nan(None).fill_null(float("nan")).to_numpy()
        m = M.evaluate(c, y_all, v, n_boot=n_boot)
        if m.n_covered == 0:
            continue
        out.append(m)
        if m.n_pathogenic and m.n_benign:
            keep = np.isfinite(v)
            curves.append((c, y_all[keep], M.orient(c, v[keep])[0]))
    out.sort(key=lambda m: (m.score != "priority", m.score))
    curves.sort(key=lambda t: (t[0] != "priority", t[0]))
    return out, curves


def _eval_section(res: Result, metrics: list[M.ScoreMetrics], curves: list[tuple]) -> dict:
    if not res.has_labels:
        why = ("no labels were given: pass --labels-vcf CLINVAR.vcf (CLNSIG) or --labels COLUMN"
               if res.label_source is None else f"no allele got a pathogenic/benign label from {res.label_source}")
        return {"present": False, "why": why}
    lab = res.df[LABEL].drop_nulls()
    rows = [{"score": m.score, "orientation": m.orientation, "covered": m.n_covered, "labelled": m.n_labelled,
             "p": m.n_pathogenic, "b": m.n_benign,
             "auroc": _fmt(m.auroc), "auroc_ci": "[{} – {}]".format(*map(_fmt, m.auroc_ci)),
             "auprc": _fmt(m.auprc), "auprc_ci": "[{} – {}]".format(*map(_fmt, m.auprc_ci))} for m in metrics]
    figs = []
    if curves:
        figs = [P.to_data_uri(P.curves(curves, "roc")), P.to_data_uri(P.curves(curves, "pr"))]
    return {"present": True, "source": res.label_source, "n_labelled": lab.len(), "n_p": int(lab.sum()),
            "n_b": int(lab.len() - lab.sum()), "rows": rows, "figures": figs,
            "n_boot": metrics[0].n_boot if metrics else 0}


def render(res: Result, opts: ReportOptions | None = None) -> tuple[str, dict]:
    """The report's HTML and its JSON numbers."""
    opts = opts or ReportOptions()
    metrics, curves = evaluate_result(res, opts.n_boot)
    ctx = {
        "title": opts.title or f"vareff report: {res.name or os.path.basename(res.path)}",
        "run": _run_section(res), "hist": _histograms(res), "top": _top_section(res, opts),
        "genes": _gene_section(res, opts), "eval": _eval_section(res, metrics, curves),
        "variant_plots": opts.variant_plots, "max_bytes": MAX_BYTES,
    }
    env = Environment(loader=PackageLoader("vareff.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(**ctx)
    run = ctx["run"]
    numbers = {
        "result": res.name or os.path.basename(res.path), "rows": run["rows"], "vareff_version": run["version"],
        "report_version": __version__, "command": res.meta.get("command"),
        "status_counts": {s["status"]: s["n"] for s in run["statuses"]},
        "labels": None if not ctx["eval"]["present"] else {
            "source": res.label_source, "n_labelled": ctx["eval"]["n_labelled"],
            "n_pathogenic": ctx["eval"]["n_p"], "n_benign": ctx["eval"]["n_b"]},
        "metrics": [m.to_dict() for m in metrics],
    }
    return html, numbers


def json_path(html_path: str) -> str:
    """REPORT.html -> REPORT.json (beside it)."""
    root, ext = os.path.splitext(html_path)
    return (root if ext.lower() in (".html", ".htm") else html_path) + ".json"


def _atomic_text(path: str, text: str) -> None:
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ConfigError(f"{path!r} exists and is not a regular file", "choose another output path")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ConfigError(f"the folder of {path!r} does not exist", "create it first")
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(res: Result, html_path: str | os.PathLike, opts: ReportOptions | None = None) -> dict:
    """Write REPORT.html and REPORT.json; returns the JSON numbers."""
    p = os.fspath(html_path)
    html, numbers = render(res, opts)
    jp = json_path(p)
    numbers["report"] = os.path.basename(p)
    _atomic_text(jp, json.dumps(numbers, indent=1) + "\n")
    _atomic_text(p, html)
    return numbers
