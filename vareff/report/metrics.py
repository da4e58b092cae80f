"""Discrimination metrics on labelled alleles: AUROC, AUPRC (average precision), their curves and
stratified-bootstrap 95% intervals.

Pure numpy, checked against scikit-learn in tests/test_report_metrics.py (sklearn is a test-only
dependency).  Conventions (as scikit-learn's):

* AUROC = P(score of a random positive > score of a random negative) + ½ P(tie) (Mann-Whitney U
  with average ranks);
* AUPRC = average precision, ``Σ_k (R_k − R_{k−1}) P_k`` over the distinct thresholds in
  decreasing order (a step function, no interpolation);
* intervals: ``n_boot`` resamples drawn with replacement *within* each class (so every resample
  has both classes and the class balance of the data), percentile 2.5 / 97.5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: resamples for the bootstrap intervals (fewer when labelled × resamples exceeds ``BOOT_CELLS``)
N_BOOT = 1000
BOOT_CELLS = 10_000_000


def _check(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (drop missing ones first)")
    return y.astype(bool), s


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their mean rank (as scipy.stats.rankdata 'average')."""
    order = np.argsort(s)  # ties are averaged: the order within them does not matter
    ss = s[order]
    first = np.r_[True, ss[1:] != ss[:-1]]
    grp = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], ss.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty_like(s)
    ranks[order] = mean_rank[grp]
    return ranks


def auroc(y, s) -> float:
    """Area under the ROC curve; NaN when a class is missing."""
    y, s = _check(y, s)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _average_ranks(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _thresholds(y: np.ndarray, s: np.ndarray):
    """Cumulative true/false positives at each distinct threshold, scores in decreasing order."""
    order = np.argsort(-s)  # only counts at the end of each run of ties are kept: order within them is free
    ss, yy = s[order], y[order]
    last = np.r_[ss[1:] != ss[:-1], True]  # last index of each distinct score
    tp = np.cumsum(yy)[last].astype(np.float64)
    fp = np.cumsum(~yy)[last].astype(np.float64)
    return tp, fp, ss[last]


def auprc(y, s) -> float:
    """Average precision; NaN without positives."""
    y, s = _check(y, s)
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    tp, fp, _ = _thresholds(y, s)
    precision = tp / (tp + fp)
    recall = tp / n1
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_points(y, s) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0) to (1, 1)."""
    y, s = _check(y, s)
    tp, fp, _ = _thresholds(y, s)
    n1, n0 = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n0], np.r_[0.0, tp / n1]


def pr_points(y, s) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each threshold, decreasing threshold (recall increasing)."""
    y, s = _check(y, s)
    tp, fp, _ = _thresholds(y, s)
    n1 = max(int(y.sum()), 1)
    return tp / n1, tp / (tp + fp)


def _both(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) from one sort: the trapezoid under the ROC points equals the rank statistic
    (ties count ½), and average precision as in :func:`auprc`."""
    tp, fp, _ = _thresholds(y, s)
    n1, n0 = tp[-1], fp[-1]
    tpr, fpr = np.r_[0.0, tp / n1], np.r_[0.0, fp / n0]
    roc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return roc, float(np.sum(np.diff(tpr) * (tp / (tp + fp))))


def _resamples(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int, stat):
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if pos.size == 0 or neg.size == 0 or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    yb = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    return np.array([stat(yb, s[np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]])
                     for _ in range(n_boot)])


def _interval(vals: np.ndarray | None, level: float) -> tuple[float, float]:
    if vals is None:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(y, s, metric, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``metric(y, s)`` over class-stratified resamples (NaN, NaN if a class is empty)."""
    y, s = _check(y, s)
    return _interval(_resamples(y, s, n_boot, seed, metric), level)


def bootstrap_both(y, s, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95):
    """AUROC and AUPRC intervals from the same resamples (one sort each): the same numbers as two
    :func:`bootstrap_ci` calls with the same seed."""
    y, s = _check(y, s)
    vals = _resamples(y, s, n_boot, seed, lambda yy, ss: np.array(_both(yy, ss)))
    if vals is None:
        return (float("nan"),) * 2, (float("nan"),) * 2
    return _interval(vals[:, 0], level), _interval(vals[:, 1], level)


@dataclass
class ScoreMetrics:
    """One score's evaluation on the labelled alleles it covers."""

    score: str
    orientation: str  # how the column was turned into "higher = more pathogenic"
    n_labelled: int  # labelled alleles in the input
    n_covered: int  # ... with a value for this score
    n_pathogenic: int
    n_benign: int
    auroc: float
    auroc_ci: tuple[float, float]
    auprc: float
    auprc_ci: tuple[float, float]
    n_boot: int

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("auroc", "auprc"):
            d[k] = _num(d[k])
            d[f"{k}_ci"] = [_num(v) for v in d[f"{k}_ci"]]
        return d


def _num(v: float) -> float | None:
    return None if v != v else round(float(v), 6)


def orient(name: str, values: np.ndarray) -> tuple[np.ndarray, str]:
    """Scores as "higher = more pathogenic": LLRs are negated (a damaging allele is less likely
    than the reference), signed SegmentNT deltas taken in absolute value, others as they are."""
    if name.endswith("_llr"):
        return -values, "negated (lower LLR = more damaging)"
    if name.startswith("segmentnt_") and name.endswith("_delta"):
        return np.abs(values), "absolute value"
    return values, "as is"


def evaluate(name: str, labels, values, *, n_boot: int = N_BOOT, seed: int = 0) -> ScoreMetrics:
    """AUROC/AUPRC with intervals of one score column; ``values`` may hold NaN (not covered)."""
    y = np.asarray(labels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v) & np.isfinite(y)
    y, v = y[keep], v[keep]
    v, how = orient(name, v)
    n_boot = min(n_boot, max(10, BOOT_CELLS // max(y.size, 1)))
    n1 = int(y.sum())
    roc_ci, pr_ci = bootstrap_both(y, v, n_boot=n_boot, seed=seed)
    return ScoreMetrics(
        score=name, orientation=how, n_labelled=int(np.isfinite(np.asarray(labels, dtype=np.float64)).sum()),
        n_covered=int(y.size), n_pathogenic=n1, n_benign=int(y.size - n1),
        auroc=auroc(y, v), auroc_ci=roc_ci, auprc=auprc(y, v), auprc_ci=pr_ci, n_boot=n_boot,
    )
