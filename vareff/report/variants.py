"""``vareff plot``: the models' view of ref vs alt around single alleles.

Panels, top to bottom (each only when its input is there):

* SpliceAI acceptor and donor probabilities of ref and alt over POS ± D (one panel each, the
  strongest gene), DS/DP of the four deltas marked at their positions;
* SegmentNT: the element probabilities of ref and alt from a ``--profiles`` Parquet, one thin
  track per element, the elements whose probability moves most highlighted;
* GROVER / Nucleotide Transformer (``-m CHECKPOINT``): the model's LLR of every substitution at
  every position of POS ± flank (in-silico saturation mutagenesis scored by the backend itself,
  through :func:`vareff.score_variants`), the allele's own LLR starred;
* the gene model from ``--annotation``: exons as boxes, introns as lines, strand arrows.

The SpliceAI values are recomputed here with the scorer's ``keep_raw`` option (the same code and
weights as ``vareff score``), so DS/DP in the plot are the values in the result.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from vareff.errors import SCORABLE, ConfigError, InputError
from vareff.report import plots as P

_VARIANT = re.compile(r"^([^:\s]+):(\d+):([ACGTNacgtn]+):([ACGTNacgtn]+)$")
#: SegmentNT tracks drawn highlighted: at most this many, with |alt - ref| at least HIGHLIGHT_MIN
HIGHLIGHT_TOP, HIGHLIGHT_MIN = 3, 0.01


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int
    ref: str
    alt: str

    @classmethod
    def parse(cls, text: str) -> "Variant":
        m = _VARIANT.match(text.strip())
        if not m:
            raise ConfigError(f"--variant {text!r} is not CHROM:POS:REF:ALT", "e.g. --variant chr17:43124096:G:A")
        return cls(m.group(1), int(m.group(2)), m.group(3).upper(), m.group(4).upper())

    def __str__(self) -> str:
        return f"{self.chrom}:{self.pos}:{self.ref}:{self.alt}"

    @property
    def slug(self) -> str:
        return f"{self.chrom}_{self.pos}_{self.ref[:10]}_{self.alt[:10]}"


def top_variants(df: pl.DataFrame, n: int) -> list[Variant]:
    """The ``n`` alleles with the highest ``priority`` (or SpliceAI max DS when there is none)."""
    key = "priority" if "priority" in df.columns else "spliceai_ds_max" if "spliceai_ds_max" in df.columns else None
    if key is None:
        raise InputError("the result has neither priority nor spliceai_ds_max to pick the top alleles by",
                         "name the alleles with --variant CHROM:POS:REF:ALT")
    top = df.filter(pl.col(key).is_not_null()).sort(key, descending=True).head(n)
    return [Variant(c, int(p), r, a) for c, p, r, a in top.select("chrom", "pos", "ref", "alt").rows()]


def check_in_result(df: pl.DataFrame, variants: list[Variant], path: str) -> None:
    for v in variants:
        hit = df.filter((pl.col("chrom") == v.chrom) & (pl.col("pos") == v.pos) & (pl.col("ref") == v.ref)
                        & (pl.col("alt") == v.alt))
        if hit.height == 0:
            raise InputError(f"{v} is not in the result {path!r}", "check CHROM:POS:REF:ALT as written in the VCF")


# --------------------------------------------------------------------------------------- SpliceAI
def spliceai_views(variants: list[Variant], *, fasta: str, contig_map=(), distance: int = 50,
                   annotation: str = "grch38", weights: str | None = None, device: str = "cpu") -> list[list]:
    """Per variant, SpliceAI's :class:`~vareff.score.spliceai.RawProbabilities` for every gene it overlaps."""
    from vareff.config import OutputSpec, RunConfig
    from vareff.engine.run import Pipeline, open_genome
    from vareff.normalize.alleles import Record
    from vareff.report.html import STATUS_HELP
    from vareff.score.registry import resolve_device
    from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer

    cfg = RunConfig(input="-", outputs=(OutputSpec("<memory>", "parquet"),), fasta=fasta, models=("spliceai",),
                    contig_map=tuple(contig_map), device=device, progress=False, spliceai_distance=distance,
                    spliceai_annotation=annotation, spliceai_weights=weights)
    scorer = SpliceAIScorer(SpliceAIOptions(distance=distance, annotation=annotation, weights=weights, keep_raw=True),
                            device=resolve_device(device))
    pipe = Pipeline(cfg, [scorer], open_genome(cfg))
    out = []
    for v in variants:
        _, table, _ = pipe.process([Record(v.chrom, v.pos, None, v.ref, (v.alt,))])
        status = table.column("status")[0].as_py()
        if status not in SCORABLE:
            raise InputError(f"{v} cannot be scored by SpliceAI here: status {status}",
                             STATUS_HELP.get(status, ("", "see README, Statuses"))[1])
        out.append(sorted(scorer.raw, key=lambda r: -max(r.ds)))
    return out


def _spliceai_panels(axes, v: Variant, raw) -> None:
    best = raw[0]
    D = best.distance
    x = np.arange(v.pos - D, v.pos + D + 1)
    names = ("acceptor", "donor")
    for k, ax in enumerate(axes):
        row = 1 + k
        ax.plot(x, best.y_ref[row], color="#555555", lw=1.2, label="ref")
        ax.plot(x, best.y_alt[row], color="#c0392b", lw=1.2, ls="--", label="alt")
        ax.axvline(v.pos, color="#999999", lw=0.6, ls=":")
        for j, tag in ((2 * k, "gain"), (2 * k + 1, "loss")):
            ds, dp = float(best.ds[j]), int(best.dp[j])
            p = v.pos + dp
            yv = best.y_alt[row][dp + D] if tag == "gain" else best.y_ref[row][dp + D]
            ax.annotate(f"DS_{names[k][0].upper()}{tag[0].upper()} {ds:.2f}\nDP {dp:+d}", (p, yv),
                        xytext=(-6, 10) if tag == "gain" else (6, 10), textcoords="offset points", fontsize=6.5,
                        ha="right" if tag == "gain" else "left",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#333333"})
            ax.plot([p], [yv], marker="v" if tag == "loss" else "^", color="#2c7fb8", ms=5)
        ax.set_ylabel(f"SpliceAI\n{names[k]} p", fontsize=8)
        ax.set_ylim(-0.02, 1.4)
        ax.legend(fontsize=6.5, loc="upper right")
    axes[0].set_title(f"{v}  SpliceAI ({best.gene}, {best.strand} strand, ±{D} nt)"
                      + (f"; {len(raw) - 1} more gene(s)" if len(raw) > 1 else ""), fontsize=9)


# --------------------------------------------------------------------------------------- SegmentNT
def segmentnt_profile(profiles: pl.DataFrame, v: Variant) -> pl.DataFrame | None:
    p = profiles.filter((pl.col("chrom") == v.chrom) & (pl.col("pos") == v.pos) & (pl.col("ref") == v.ref)
                        & (pl.col("alt") == v.alt)).sort("position")
    return p if p.height else None


def _segmentnt_panels(axes, prof: pl.DataFrame, lo: int, hi: int) -> None:
    elems = [c[4:] for c in prof.columns if c.startswith("ref_")]
    x = prof["position"].to_numpy()
    delta = {e: np.nanmax(np.abs(prof[f"alt_{e}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
                                 - prof[f"ref_{e}"].to_numpy())) if prof.height else 0.0 for e in elems}
    ranked = sorted(elems, key=lambda e: -np.nan_to_num(delta[e]))
    hot = {e for e in ranked[:HIGHLIGHT_TOP] if delta[e] >= HIGHLIGHT_MIN}
    for ax, e in zip(axes, elems):
        ax.plot(x, prof[f"ref_{e}"].to_numpy(), color="#555555", lw=0.9)
        ax.plot(x, prof[f"alt_{e}"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                color="#c0392b" if e in hot else "#e39b94", lw=0.9, ls="--")
        if e in hot:
            ax.set_facecolor("#fff3e0")
        ax.set_ylim(-0.05, 1.05)
        ax.set_yticks([])
        ax.set_ylabel(f"{e}\nΔ{delta[e]:.2f}", fontsize=6, rotation=0, ha="right", va="center")
        ax.set_xlim(lo, hi)
    axes[0].set_title("SegmentNT element probabilities: ref (solid) vs alt (dashed), largest changes shaded",
                      fontsize=8)


# --------------------------------------------------------------------------------------- GROVER / NT
@dataclass
class LMScan:
    """LLR (column ``column``) of the 3 substitutions at each position of a window, and the allele's own."""

    column: str
    positions: np.ndarray  # 1-based
    ref_bases: str
    llr: np.ndarray  # (n, 4) over A, C, G, T; NaN at the reference base or where not scored
    own: float | None


def lm_scan(v: Variant, checkpoint: str, *, fasta: str, contig_map=(), flank: int = 50, device: str = "cpu",
            model_options: dict | None = None) -> LMScan:
    """Score every SNV of POS ± flank and the allele itself with a GROVER/NT checkpoint."""
    from vareff.api import score_variants
    from vareff.window.genome import ContigSlice, Genome

    g = Genome(fasta, contig_map=[ContigSlice.parse(x) for x in contig_map])
    lo = max(1, v.pos - flank)
    seq = g.fetch(v.chrom, lo - 1, v.pos + flank).upper()
    rows = [(v.chrom, lo + i, b, a) for i, b in enumerate(seq) if b in "ACGT" for a in "ACGT" if a != b]
    rows.append((v.chrom, v.pos, v.ref, v.alt))
    df = pl.DataFrame(rows, schema={"chrom": pl.String, "pos": pl.Int64, "ref": pl.String, "alt": pl.String},
                      orient="row")
    out = score_variants(df, fasta=fasta, models=[checkpoint], contig_map=tuple(contig_map), device=device,
                         progress=False, model_options=dict(model_options or {}))
    col = next((c for c in out.columns if c.endswith("_llr")), None)
    if col is None:
        raise ConfigError(f"-m {checkpoint}: the model writes no *_llr column", "GROVER or NT masked LMs do")
    own_status = out["status"][-1]
    if own_status not in SCORABLE:
        raise InputError(f"{v} cannot be scored by {checkpoint}: status {own_status}")
    llr = np.full((len(seq), 4), np.nan)
    body = out.head(len(rows) - 1)
    for p, a, x in zip(body["pos"].to_list(), body["alt"].to_list(), body[col].to_list()):
        if x is not None:
            llr[p - lo, "ACGT".index(a)] = x
    return LMScan(col, np.arange(lo, lo + len(seq)), seq, llr, out[col][-1])


def _lm_panel(ax, v: Variant, scan: LMScan) -> None:
    colors = {"A": "#2ca02c", "C": "#1f77b4", "G": "#ff7f0e", "T": "#d62728"}
    for k, b in enumerate("ACGT"):
        ax.scatter(scan.positions, scan.llr[:, k], s=6, color=colors[b], label=f"→{b}")
    worst = np.where(np.isnan(scan.llr).all(1), np.nan, np.nanmin(np.where(np.isnan(scan.llr), np.inf, scan.llr), 1))
    ax.plot(scan.positions, worst, color="#444444", lw=0.7)
    ax.axhline(0, color="#999999", lw=0.5)
    if scan.own is not None:
        ax.plot([v.pos], [scan.own], marker="*", ms=11, color="black", label=f"{v.ref}>{v.alt} {scan.own:.2f}")
    ax.set_ylabel(f"{scan.column}\nlog p(alt) − log p(ref)", fontsize=7)
    ax.legend(fontsize=6, ncol=5, loc="lower right")
    ax.set_title(f"{scan.column.split('_')[0].upper()}: LLR of every substitution (line: the lowest per position)",
                 fontsize=8)


# --------------------------------------------------------------------------------------- gene model
def gene_model(annotation: str, chrom: str, lo: int, hi: int) -> pl.DataFrame:
    """Exons (tx, gene, strand, start0, end0) of transcripts overlapping [lo, hi] (1-based)."""
    from vareff.lookup import regions as R
    from vareff.window.contigs import resolve_contig

    fmt = R._detect_format(annotation)
    exons, _ = {"gtf": R._load_gtf, "gff3": R._load_gff3, "spliceai": R._load_spliceai}[fmt](annotation)
    c = resolve_contig(chrom, set(exons["chrom"].unique().to_list()))
    if c is None:
        return exons.clear()
    ex = exons.filter(pl.col("chrom") == c)
    spans = ex.group_by("tx").agg(pl.col("start0").min().alias("a"), pl.col("end0").max().alias("b"))
    keep = spans.filter((pl.col("a") < hi) & (pl.col("b") >= lo))["tx"]
    return ex.filter(pl.col("tx").is_in(keep.implode())).sort("tx", "start0")


def _gene_panel(ax, exons: pl.DataFrame, lo: int, hi: int, pos: int, max_tx: int = 6) -> None:
    from matplotlib.patches import Rectangle

    txs = list(dict.fromkeys(exons["tx"].to_list()))[:max_tx]
    for k, tx in enumerate(txs):
        e = exons.filter(pl.col("tx") == tx)
        y = -k
        a, b = int(e["start0"].min()) + 1, int(e["end0"].max())
        ax.plot([max(a, lo), min(b, hi)], [y, y], color="#333333", lw=0.8)
        for s0, e0 in e.select("start0", "end0").rows():
            ax.add_patch(Rectangle((s0 + 0.5, y - 0.3), e0 - s0, 0.6, color="#3b6ea8"))
        strand = e["strand"][0]
        for xa in np.linspace(max(a, lo), min(b, hi), 6)[1:-1]:
            ax.annotate("", (xa + (1 if strand == "+" else -1) * (hi - lo) * 0.01, y), (xa, y),
                        arrowprops={"arrowstyle": "->", "lw": 0.6, "color": "#333333"})
        ax.text(lo, y + 0.35, f"{e['gene'][0]} ({tx.split(':')[-1]}, {strand})", fontsize=6, va="bottom")
    ax.axvline(pos, color="#c0392b", lw=0.8, ls=":")
    ax.set_ylim(-len(txs) + 0.3, 1.0)
    ax.set_yticks([])
    ax.set_ylabel("genes", fontsize=8)
    if not txs:
        ax.text((lo + hi) / 2, 0.3, "no transcript of --annotation here", ha="center", fontsize=7)


# --------------------------------------------------------------------------------------- figure
def variant_figure(v: Variant, *, spliceai=None, segmentnt: pl.DataFrame | None = None,
                   exons: pl.DataFrame | None = None, flank: int | None = None, lm: list[LMScan] = ()):
    """One figure with the panels that have data (see module doc)."""
    lo_hi = []
    if spliceai:
        D = spliceai[0].distance
        lo_hi.append((v.pos - D, v.pos + D))
    if segmentnt is not None:
        lo_hi.append((int(segmentnt["position"].min()), int(segmentnt["position"].max())))
    for s in lm:
        lo_hi.append((int(s.positions[0]), int(s.positions[-1])))
    if not lo_hi:
        f = flank or 50
        lo_hi.append((v.pos - f, v.pos + f))
    lo, hi = min(a for a, _ in lo_hi), max(b for _, b in lo_hi)
    n_seg = 0 if segmentnt is None else sum(c.startswith("ref_") for c in segmentnt.columns)
    ratios = ([3, 3] if spliceai else []) + [3] * len(lm) + [0.8] * n_seg + ([1.6] if exons is not None else [])
    if not ratios:
        raise InputError(f"{v}: nothing to plot", "give -f FASTA for SpliceAI, and/or --profiles, --annotation")
    fig = P.new_figure((8.0, 0.9 + 0.55 * sum(ratios)), (0.13, 0.06 if len(ratios) > 4 else 0.12, 0.98, 0.95))
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios, "hspace": 0.15})
    axes = list(np.atleast_1d(axes))
    i = 0
    if spliceai:
        _spliceai_panels(axes[:2], v, spliceai)
        i = 2
    for s in lm:
        _lm_panel(axes[i], v, s)
        i += 1
    if n_seg:
        _segmentnt_panels(axes[i: i + n_seg], segmentnt, lo, hi)
        i += n_seg
    if exons is not None:
        _gene_panel(axes[i], exons, lo, hi, v.pos)
    axes[-1].set_xlabel(f"{v.chrom} position (1-based)")
    axes[-1].ticklabel_format(axis="x", style="plain", useOffset=False)
    axes[0].set_xlim(lo, hi)
    return fig


def _out_paths(output: str, variants: list[Variant]) -> list[str]:
    if len(variants) == 1:
        return [output]
    root, ext = os.path.splitext(output)
    return [f"{root}.{v.slug}{ext}" for v in variants]


def plot_variants(variants: list[Variant], output: str, *, fasta=None, contig_map=(), distance=50,
                  annotation_spliceai="grch38", weights=None, device="cpu", profiles=None, annotation=None,
                  flank=None, checkpoints=(), spliceai=True) -> list[str]:
    """Draw every variant's figure; one file each (``output`` itself for a single variant)."""
    if not variants:
        raise ConfigError("no allele to plot", "give --variant CHROM:POS:REF:ALT or --result R.parquet --top N")
    if output.rsplit(".", 1)[-1].lower() not in ("png", "svg", "pdf"):
        raise ConfigError(f"cannot tell the plot format of {output!r}", "name it .png, .svg or .pdf")
    if checkpoints and not fasta:
        raise ConfigError("the GROVER/NT plot needs the reference FASTA", "pass -f REF.fa")
    raws = spliceai_views(variants, fasta=fasta, contig_map=contig_map, distance=distance,
                          annotation=annotation_spliceai, weights=weights,
                          device=device) if fasta and spliceai else [None] * len(variants)
    prof = None
    if profiles:
        if not os.path.isfile(profiles):
            raise InputError(f"profiles {profiles!r} do not exist", "write them with vareff score -m SEGMENTNT --profiles")
        prof = pl.read_parquet(profiles)
    paths = _out_paths(output, variants)
    for v, raw, path in zip(variants, raws, paths):
        seg = segmentnt_profile(prof, v) if prof is not None else None
        if prof is not None and seg is None:
            raise InputError(f"{v} has no profile in {profiles!r}",
                             "score it with --profiles (and --profile-alleles including it)")
        lm = [lm_scan(v, c, fasta=fasta, contig_map=contig_map, flank=flank or 50, device=device) for c in checkpoints]
        lo_hi = (v.pos - (raw[0].distance if raw else flank or 50), v.pos + (raw[0].distance if raw else flank or 50))
        if seg is not None:
            lo_hi = (min(lo_hi[0], int(seg["position"].min())), max(lo_hi[1], int(seg["position"].max())))
        exons = gene_model(annotation, v.chrom, *lo_hi) if annotation else None
        P.save(variant_figure(v, spliceai=raw, segmentnt=seg, exons=exons, flank=flank, lm=lm), path)
    return paths


def _spliceai_settings(args, meta: dict) -> tuple[int, str]:
    """--spliceai-distance/--spliceai-annotation, else the run's own settings from the result metadata."""
    prov = next((m for m in meta.get("models", []) if str(m.get("model", "")).startswith("spliceai")), {})
    dist = args.spliceai_distance if args.spliceai_distance is not None else int(prov.get("distance", 50))
    ann = args.spliceai_annotation or "grch38"
    return dist, ann


def report_plots(res, args) -> list[tuple[str, str]]:
    """(caption, data URI) of the top ``args.plot_top`` alleles' SpliceAI plots, for the report."""
    if not args.fasta:
        raise ConfigError("--plot-top needs the reference FASTA", "pass -f REF.fa (and the run's --contig-map, "
                          "--spliceai-annotation)")
    vs = top_variants(res.df, args.plot_top)
    dist, ann = _spliceai_settings(args, res.meta)
    raws = spliceai_views(vs, fasta=args.fasta, contig_map=args.contig_map, distance=dist, annotation=ann,
                          weights=args.spliceai_weights, device=args.device)
    out = []
    for v, raw in zip(vs, raws):
        exons = gene_model(args.annotation, v.chrom, v.pos - dist, v.pos + dist) if args.annotation else None
        fig = variant_figure(v, spliceai=raw, exons=exons)
        out.append((f"{v}: SpliceAI ref vs alt ({raw[0].gene})", P.to_data_uri(fig)))
    return out


def plot_cli(args) -> int:
    import logging

    variants = [Variant.parse(t) for t in args.variant]
    meta: dict = {}
    if args.result:
        from vareff.report.data import read_result

        res = read_result(args.result)
        meta = res.meta
        if args.top:
            variants += top_variants(res.df, args.top)
        check_in_result(res.df, variants, args.result)
    elif args.top:
        raise ConfigError("--top needs --result R.parquet to take the alleles from")
    models = args.models or (["spliceai"] if args.fasta else [])
    if models and not args.fasta:
        raise ConfigError("the model plots need the reference FASTA", "pass -f REF.fa")
    dist, ann = _spliceai_settings(args, meta)
    paths = plot_variants(variants, args.output, fasta=args.fasta, contig_map=args.contig_map, distance=dist,
                          annotation_spliceai=ann, weights=args.spliceai_weights, device=args.device,
                          profiles=args.profiles, annotation=args.annotation, flank=args.flank,
                          checkpoints=[m for m in models if m != "spliceai"], spliceai="spliceai" in models)
    logging.getLogger("vareff").info("wrote %s", ", ".join(paths))
    return 0
