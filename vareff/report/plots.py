"""Matplotlib figures for the report (histograms, ROC and precision-recall curves) and their
encoding for inline HTML.  Figures are built with :class:`matplotlib.figure.Figure` (no pyplot,
no global backend state), so they are safe in library code and worker processes."""
from __future__ import annotations

import base64
import io
import os

import numpy as np
from matplotlib.figure import Figure

from vareff.report import metrics as M

#: the report's figure size (inches) and resolution: ~20-40 kB PNGs
SIZE = (4.6, 2.9)
DPI = 90


def new_figure(size=SIZE, margins=(0.16, 0.2, 0.97, 0.88)) -> Figure:
    """A figure with fixed margins (left, bottom, right, top): no layout engine, fast to draw."""
    fig = Figure(figsize=size, dpi=DPI)
    fig.subplots_adjust(*margins)
    return fig


def to_data_uri(fig: Figure) -> str:
    """The figure as a base64 PNG ``data:`` URI (inline, no network)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def save(fig: Figure, path: str | os.PathLike) -> None:
    """PNG, SVG or PDF by the extension (written atomically)."""
    p = os.fspath(path)
    ext = p.rsplit(".", 1)[-1].lower()
    if ext not in ("png", "svg", "pdf"):
        from vareff.errors import ConfigError

        raise ConfigError(f"cannot tell the plot format of {p!r}", "name it .png, .svg or .pdf")
    tmp = f"{p}.tmp-{os.getpid()}"
    fig.savefig(tmp, format=ext, dpi=150 if ext == "png" else DPI)
    os.replace(tmp, p)


def wants_log(counts: np.ndarray) -> bool:
    """Log y-scale when the tallest bin dwarfs the typical non-empty one (skewed scores)."""
    nz = counts[counts > 0]
    return nz.size >= 3 and counts.max() >= 50 * max(np.median(nz), 1)


def histogram(name: str, values: np.ndarray, bins: int = 40) -> tuple[Figure, bool]:
    """Histogram of one score column's non-null values; returns (figure, log scale used)."""
    v = values[np.isfinite(values)]
    fig = new_figure((4.0, 2.4))
    ax = fig.add_subplot()
    counts, edges = np.histogram(v, bins=bins) if v.size else (np.zeros(bins), np.linspace(0, 1, bins + 1))
    ax.stairs(counts, edges, fill=True, color="#4c72b0", alpha=0.85)
    log = wants_log(counts)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel("alleles" + (" (log)" if log else ""))
    ax.set_title(f"{name}  (n = {v.size:,})", fontsize=9)
    return fig, log


def _thin(x: np.ndarray, y: np.ndarray, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most ~n points of a curve (every k-th, ends kept): the picture is the same, the PNG small."""
    if x.size <= n:
        return x, y
    idx = np.unique(np.r_[np.linspace(0, x.size - 1, n).astype(int), x.size - 1])
    return x[idx], y[idx]


def curves(labelled: list[tuple[str, np.ndarray, np.ndarray]], kind: str) -> Figure:
    """ROC (``kind='roc'``) or precision-recall (``'pr'``) curves of several oriented scores.

    ``labelled``: (name, labels 0/1, oriented scores) per score, NaN-free.
    """
    fig = new_figure((5.2, 4.0), (0.12, 0.12, 0.97, 0.93))
    ax = fig.add_subplot()
    for name, y, s in labelled:
        if kind == "roc":
            x, yv = M.roc_points(y, s)
            lab = f"{name} ({M.auroc(y, s):.3f})"
        else:
            x, yv = M.pr_points(y, s)
            x, yv = np.r_[0.0, x], np.r_[yv[0] if yv.size else 1.0, yv]
            lab = f"{name} ({M.auprc(y, s):.3f})"
        lw = 2.4 if name == "priority" else 1.3
        x, yv = _thin(x, yv)
        ax.step(x, yv, where="post", lw=lw, label=lab)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set_xlabel("false positive rate (benign called pathogenic)")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC (AUROC in brackets)", fontsize=9)
    else:
        if labelled:
            base = float(np.mean(labelled[0][1]))
            ax.axhline(base, ls=":", color="grey", lw=0.8)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall (AUPRC in brackets)", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if labelled:
        ax.legend(fontsize=6.5, loc="lower right" if kind == "roc" else "lower left")
    return fig
