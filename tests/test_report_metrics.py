"""AUROC/AUPRC, curves and bootstrap intervals: a hand-computed example, then scikit-learn on random data."""
from __future__ import annotations

import numpy as np
import pytest

from vareff.report import metrics as M

sk = pytest.importorskip("sklearn.metrics")

# positives 0.9, 0.7, 0.3; negatives 0.8, 0.3
Y = [1, 0, 1, 0, 1]
S = [0.9, 0.8, 0.7, 0.3, 0.3]


def test_hand_computed_example():
    # pairs (pos > neg): (.9,.8) (.9,.3) (.7,.3) win, (.7,.8) (.3,.8) lose, (.3,.3) tie -> 3.5 / 6
    assert M.auroc(Y, S) == pytest.approx(3.5 / 6, abs=1e-12)
    # thresholds .9 .8 .7 .3: (P, R) = (1, 1/3) (1/2, 1/3) (2/3, 2/3) (3/5, 1) -> 1/3 + 2/9 + 1/5
    assert M.auprc(Y, S) == pytest.approx(34 / 45, abs=1e-12)
    fpr, tpr = M.roc_points(Y, S)
    assert fpr.tolist() == pytest.approx([0, 0, 0.5, 0.5, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1])


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y * rng.uniform(0, 2), int(rng.integers(1, 4)))  # rounding -> ties
    assert M.auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert M.auprc(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    ours = M.roc_points(y, s)
    assert np.allclose(ours[0], fpr) and np.allclose(ours[1], tpr)
    prec, rec, _ = sk.precision_recall_curve(y, s, drop_intermediate=False)
    r, p = M.pr_points(y, s)
    assert np.allclose(r, rec[:-1][::-1]) and np.allclose(p, prec[:-1][::-1])


def test_bootstrap_interval_covers_and_is_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    lo, hi = M.bootstrap_ci(y, s, M.auroc, n_boot=300, seed=3)
    assert lo < M.auroc(y, s) < hi and hi - lo < 0.2
    assert (lo, hi) == M.bootstrap_ci(y, s, M.auroc, n_boot=300, seed=3)
    assert M.bootstrap_ci(y, s, M.auroc, n_boot=300, seed=4) != (lo, hi)  # the seed is used
    roc, pr = M.bootstrap_both(y, s, n_boot=300, seed=3)
    assert roc == pytest.approx((lo, hi), abs=1e-12)
    assert pr == pytest.approx(M.bootstrap_ci(y, s, M.auprc, n_boot=300, seed=3), abs=1e-12)


def test_evaluate_orientation_and_coverage():
    y = np.array([1, 1, 0, 0, 1, 0], dtype=float)
    llr = np.array([-3, -2, 0.5, 1, np.nan, np.nan])
    m = M.evaluate("grover_llr", y, llr, n_boot=50)
    assert m.n_labelled == 6 and m.n_covered == 4 and (m.n_pathogenic, m.n_benign) == (2, 2)
    assert m.auroc == 1.0 and m.orientation.startswith("negated")
    d = m.to_dict()
    assert d["auroc"] == 1.0 and len(d["auroc_ci"]) == 2


def test_one_class_gives_nan():
    assert np.isnan(M.auroc([1, 1], [0.1, 0.2]))
    assert M.bootstrap_ci([1, 1], [0.1, 0.2], M.auroc) != M.bootstrap_ci([1, 1], [0.1, 0.2], M.auroc)  # NaN pair
    with pytest.raises(ValueError):
        M.auroc([1, 2], [0.1, 0.2])
