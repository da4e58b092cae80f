"""One priority per allele across coding and non-coding evidence, and its calibration.

Rule
----
Each kind of evidence ``e`` reduces its score columns to one oriented number ``x_e``
(higher = more damaging) and maps it through a non-decreasing function ``f_e`` into [0, 1]:

===============  ========================================  ======================  =================
evidence         columns                                   ``x_e``                 default ``f_e``
===============  ========================================  ======================  =================
``alphamissense`` ``am_pathogenicity``                      the score               identity
``spliceai``     ``spliceai_ds_ag/al/dg/dl``               max of the four         identity
``grover``       ``grover_llr``                            ``-llr``                none (calibrate)
``nt``           ``nt_llr``                                ``-llr``                none (calibrate)
``segmentnt``    ``segmentnt_*_delta``                     max of ``|delta|``      none (calibrate)
===============  ========================================  ======================  =================

Then::

    priority        = max_e f_e(x_e)        over the evidence present for the allele
    priority_source = the e attaining it    (ties: the order of the table above)

Nulls (evidence not computed, allele not scored) are skipped; an allele with no usable
evidence gets null for both.  Because every ``f_e`` is non-decreasing and ``max`` is
non-decreasing in each argument, ``priority`` never decreases when any one score moves in
its damaging direction (monotone in each), and ``priority_source`` names the evidence
that decided the rank.  AlphaMissense and SpliceAI scores are already on a probability-like
[0, 1] scale, so they are used as they are until calibrated; language-model deltas have no
such scale and enter the priority only through a calibration.

Calibration
-----------
:func:`calibrate` fits, for each evidence kind with enough labelled alleles, a logistic map
``f_e(x) = 1 / (1 + exp(-(a + b x)))`` by maximum likelihood with ``b >= 0`` (Platt
scaling; if the labels run the other way, ``b = 0`` and the map is the base rate, with a
warning).  ``f_e`` is then P(pathogenic | x_e) at the class balance of the training set.
Logistic maps are smooth, strictly increasing when ``b > 0`` (so they keep each score's
ranking and AUROC), need two numbers each, and do not overfit small label sets.  Labels
come from a ClinVar-style VCF (:func:`clinvar_labels`: ``CLNSIG`` pathogenic / likely
pathogenic = 1, benign / likely benign = 0, everything else left out).  The fitted maps are
saved as a small JSON file (:meth:`PriorityModel.save`) that ``vareff score`` loads.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from vareff._version import __version__
from vareff.errors import ConfigError, InputError

log = logging.getLogger(__name__)

FORMAT_NAME = "vareff-priority"
FORMAT_VERSION = 1

#: ClinVar CLNSIG values taken as labels (compared case-insensitively, first term only)
PATHOGENIC = frozenset({"pathogenic", "likely_pathogenic", "pathogenic/likely_pathogenic"})
BENIGN = frozenset({"benign", "likely_benign", "benign/likely_benign"})


@dataclass(frozen=True)
class Evidence:
    """One kind of evidence: which columns, and how they become one damaging-is-higher number.

    Attributes
    ----------
    name : str
        The ``priority_source`` value.
    columns : tuple of str
        Score columns; a name ending in ``*`` is a prefix pattern (``segmentnt_*``) and
        ``suffix`` filters the matches.
    transform : {"identity", "negate", "abs"}
        Applied to each column before the maximum is taken over columns.
    suffix : str
        Only for pattern columns: the matched name must end with it.
    default_identity : bool
        Whether the uncalibrated default maps ``x`` to ``clip(x, 0, 1)`` (probability-like
        scores) or leaves the evidence out until calibrated.
    """

    name: str
    columns: tuple[str, ...]
    transform: Literal["identity", "negate", "abs"] = "identity"
    suffix: str = ""
    default_identity: bool = False

    def resolve(self, available: list[str]) -> list[str]:
        """The columns of ``available`` this evidence reads."""
        out = []
        for c in self.columns:
            if c.endswith("*"):
                out += [a for a in available if a.startswith(c[:-1]) and a.endswith(self.suffix)]
            elif c in available:
                out.append(c)
        return out

    def value(self, df: pl.DataFrame) -> pl.Series | None:
        """``x_e`` per row (Float64, null where no column has a value), or None if absent."""
        cols = self.resolve(df.columns)
        if not cols:
            return None
        exprs = []
        for c in cols:
            e = pl.col(c).cast(pl.Float64)
            e = -e if self.transform == "negate" else e.abs() if self.transform == "abs" else e
            exprs.append(pl.when(e.is_nan()).then(None).otherwise(e))
        return df.select(pl.max_horizontal(exprs).alias(self.name)).to_series()


#: the evidence kinds, in tie-break order
DEFAULT_EVIDENCE: tuple[Evidence, ...] = (
    Evidence("alphamissense", ("am_pathogenicity",), default_identity=True),
    Evidence("spliceai", ("spliceai_ds_ag", "spliceai_ds_al", "spliceai_ds_dg", "spliceai_ds_dl"),
             default_identity=True),
    Evidence("grover", ("grover_llr",), "negate"),
    Evidence("nt", ("nt_llr",), "negate"),
    Evidence("segmentnt", ("segmentnt_*",), "abs", suffix="_delta"),
)


@dataclass
class LogisticMap:
    """``f(x) = 1 / (1 + exp(-(a + b x)))`` with ``b >= 0``, fitted on labelled alleles.

    Attributes
    ----------
    a, b : float
        Intercept and slope on the oriented score ``x``.
    n, n_pathogenic : int
        Labelled alleles with this evidence, and how many were pathogenic.
    auroc : float
        AUROC of ``x`` on them (the map keeps it when ``b > 0``).
    columns : list of str
        The score columns that were present when fitting.
    """

    a: float
    b: float
    n: int = 0
    n_pathogenic: int = 0
    auroc: float | None = None
    columns: list[str] = field(default_factory=list)

    def __call__(self, x: pl.Series) -> pl.Series:
        return 1.0 / (1.0 + (-(self.a + self.b * x)).exp())


def _auroc(x: np.ndarray, y: np.ndarray) -> float | None:
    """Mann-Whitney AUROC (average ranks for ties); None without both classes."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    r = pl.Series(x).rank("average").to_numpy()
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fit_logistic(x: np.ndarray, y: np.ndarray, *, iters: int = 100) -> tuple[float, float]:
    """Maximum-likelihood (a, b) of P(y=1|x) = sigmoid(a + b x) with b >= 0 (Newton / IRLS).

    x is standardised for the iterations and mapped back; a tiny ridge keeps separable
    data finite.
    """
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    z = (x - mu) / sd
    X = np.column_stack([np.ones_like(z), z])
    w = np.zeros(2)
    ridge = np.diag([0.0, 1e-6 * len(z)])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        g = X.T @ (y - p) - ridge @ w
        H = (X * (p * (1 - p))[:, None]).T @ X + ridge + 1e-12 * np.eye(2)
        step = np.linalg.solve(H, g)
        w = w + step
        if np.abs(step).max() < 1e-10:
            break
    if w[1] < 0:  # labels run against the score's damaging direction: keep only the base rate
        rate = min(max(y.mean(), 1e-9), 1 - 1e-9)
        return math.log(rate / (1 - rate)), 0.0
    b = w[1] / sd
    return float(w[0] - b * mu), float(b)


class PriorityModel:
    """The per-evidence maps and the max rule (see the module docstring).

    Build with :meth:`default`, :func:`calibrate` or :meth:`load`; apply per chunk with
    :meth:`apply`.

    Attributes
    ----------
    maps : dict
        Evidence name -> :class:`LogisticMap`, or ``"identity"`` for the default maps.
    evidence : tuple of Evidence
        The evidence kinds, in tie-break order.
    info : dict
        Provenance written to / read from the JSON (training set, counts, version).
    """

    def __init__(self, maps: dict, *, evidence: tuple[Evidence, ...] = DEFAULT_EVIDENCE,
                 info: dict | None = None):
        unknown = set(maps) - {e.name for e in evidence}
        if unknown:
            raise ConfigError(f"priority maps for unknown evidence {sorted(unknown)}",
                              f"known evidence: {[e.name for e in evidence]}")
        self.maps = maps
        self.evidence = evidence
        self.info = info or {}

    @classmethod
    def default(cls) -> "PriorityModel":
        """Uncalibrated: AlphaMissense and SpliceAI scores as they are, nothing else."""
        return cls({e.name: "identity" for e in DEFAULT_EVIDENCE if e.default_identity},
                   info={"calibrated": False})

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        """``priority`` (Float64 in [0, 1]) and ``priority_source`` (String) per row.

        Parameters
        ----------
        df : polars.DataFrame
            Rows with any of the evidence columns (missing columns are simply absent
            evidence).

        Returns
        -------
        polars.DataFrame
            Same height and order; both columns null where no evidence is available.
        """
        names, values = [], []
        for ev in self.evidence:
            f = self.maps.get(ev.name)
            if f is None:
                continue
            x = ev.value(df)
            if x is None:
                continue
            p = x.clip(0.0, 1.0) if f == "identity" else f(x)
            names.append(ev.name)
            values.append(p.alias(ev.name))
        if not values:
            return pl.DataFrame({"priority": pl.Series([None] * df.height, dtype=pl.Float64),
                                 "priority_source": pl.Series([None] * df.height, dtype=pl.String)})
        m = pl.DataFrame(values)
        best = m.select(pl.max_horizontal(pl.all()).alias("priority"))["priority"]
        # first evidence (tie-break order) whose value equals the maximum
        src = pl.lit(None, dtype=pl.String)
        for name in reversed(names):
            src = pl.when(pl.col(name) == best).then(pl.lit(name)).otherwise(src)
        return m.with_columns(priority=best).select(
            pl.col("priority"), priority_source=pl.when(best.is_null()).then(None).otherwise(src))

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        maps = {k: (v if v == "identity" else {"kind": "logistic", **asdict(v)}) for k, v in self.maps.items()}
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "vareff_version": __version__,
                "rule": "priority = max over evidence of f_e(x_e); f_e non-decreasing",
                "info": self.info, "maps": maps}

    def save(self, path: str | os.PathLike) -> None:
        """Write the maps as JSON (atomically)."""
        p = os.fspath(path)
        tmp = f"{p}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PriorityModel":
        """Read maps written by :meth:`save` (``vareff calibrate -o``).

        Raises
        ------
        InputError
            The file is missing, not JSON, or not a vareff priority file.
        """
        p = os.fspath(path)
        hint = "make one with: vareff calibrate LABELLED.vcf.gz ... -o priority.json"
        try:
            with open(p) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise InputError(f"priority maps {p!r} do not exist", hint) from None
        except json.JSONDecodeError as e:
            raise InputError(f"priority maps {p!r} are not valid JSON: {e}", hint) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise InputError(f"{p!r} is not a vareff priority file", hint)
        if d.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{p!r} has priority format version {d.get('format_version')}, this "
                             f"vareff reads {FORMAT_VERSION}", "re-run vareff calibrate")
        maps = {}
        for name, m in d.get("maps", {}).items():
            if m == "identity":
                maps[name] = "identity"
            elif isinstance(m, dict) and m.get("kind") == "logistic":
                if m.get("b", 0) < 0:
                    raise InputError(f"{p!r}: map {name!r} has slope b < 0, which is not monotone", hint)
                maps[name] = LogisticMap(**{k: v for k, v in m.items() if k != "kind"})
            else:
                raise InputError(f"{p!r}: map {name!r} is neither 'identity' nor a logistic map", hint)
        return cls(maps, info=d.get("info", {}))


def clinvar_labels(vcf: str | os.PathLike) -> pl.DataFrame:
    """Per-allele labels from a ClinVar-style VCF's ``CLNSIG``.

    Parameters
    ----------
    vcf : str or PathLike
        VCF / VCF.gz with an ``INFO/CLNSIG`` field (ClinVar's own VCF, or any VCF that
        carries it).

    Returns
    -------
    polars.DataFrame
        ``chrom``, ``pos``, ``ref``, ``alt``, ``allele_index`` (1-based), ``clnsig`` and
        ``label`` (Int8: 1 pathogenic / likely pathogenic, 0 benign / likely benign, null for
        everything else, e.g. uncertain, conflicting, not provided).  The first term of
        ``CLNSIG`` decides (``Pathogenic|risk_factor`` is pathogenic).

    Raises
    ------
    InputError
        The file cannot be read or has no ``CLNSIG`` INFO field.
    """
    import pysam

    p = os.fspath(vcf)
    try:
        f = pysam.VariantFile(p)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read labelled VCF {p!r}: {e}", "give a VCF or VCF.gz") from None
    if "CLNSIG" not in f.header.info:
        f.close()
        raise InputError(f"{p!r} has no INFO/CLNSIG field",
                         "calibration needs ClinVar clinical significance (CLNSIG) per record")
    rows = []
    with f:
        for rec in f:
            sig = rec.info.get("CLNSIG")
            text = "|".join(sig) if isinstance(sig, tuple) else (sig or "")
            first = re.split(r"[|,]", text)[0].strip("_").lower() if text else ""
            label = 1 if first in PATHOGENIC else 0 if first in BENIGN else None
            for i, alt in enumerate(rec.alts or (), start=1):
                rows.append((rec.chrom, rec.pos, rec.ref, alt, i, text or None, label))
    return pl.DataFrame(rows, schema={"chrom": pl.String, "pos": pl.Int64, "ref": pl.String,
                                      "alt": pl.String, "allele_index": pl.Int32, "clnsig": pl.String,
                                      "label": pl.Int8}, orient="row")


def calibrate(
    scored: pl.DataFrame,
    *,
    label: str = "label",
    evidence: tuple[Evidence, ...] = DEFAULT_EVIDENCE,
    min_per_class: int = 10,
    info: dict | None = None,
) -> PriorityModel:
    """Fit one monotone logistic map per evidence kind from labelled, scored alleles.

    Parameters
    ----------
    scored : polars.DataFrame
        Score columns (as written by ``vareff score``) and a 0/1 label column (e.g. the
        output joined with :func:`clinvar_labels` on ``chrom, pos, ref, alt``).  Rows with a
        null label are ignored.
    label : str, default "label"
        The label column: 1 pathogenic, 0 benign.
    evidence : tuple of Evidence
        Evidence kinds to fit (default :data:`DEFAULT_EVIDENCE`).
    min_per_class : int, default 10
        An evidence kind is fitted only with at least this many pathogenic and this many
        benign alleles carrying it; otherwise it keeps its default (identity for
        AlphaMissense / SpliceAI, absent for the others) and a warning says so.
    info : dict, optional
        Extra provenance stored in the JSON (e.g. the labelled VCF's name).

    Returns
    -------
    PriorityModel
        Save it with :meth:`PriorityModel.save`.

    Raises
    ------
    InputError
        No label column, or no evidence kind could be fitted.
    """
    if label not in scored.columns:
        raise InputError(f"scored alleles have no {label!r} column",
                         "join the scores with clinvar_labels(VCF) on chrom, pos, ref, alt first")
    lab = scored[label].cast(pl.Float64)
    maps: dict = {}
    fitted = []
    for ev in evidence:
        x = ev.value(scored)
        if x is None:
            continue
        keep = (x.is_not_null() & lab.is_not_null()).to_numpy()
        xv = x.to_numpy()[keep].astype(np.float64)
        yv = lab.to_numpy()[keep].astype(np.float64)
        n1 = int(yv.sum())
        n0 = len(yv) - n1
        if min(n1, n0) < min_per_class:
            log.warning("priority: %s has %d pathogenic / %d benign labelled alleles (< %d); not fitted",
                        ev.name, n1, n0, min_per_class)
            continue
        a, b = _fit_logistic(xv, yv)
        if b == 0.0:
            log.warning("priority: %s ranks benign above pathogenic on these labels; its map is the base rate",
                        ev.name)
        maps[ev.name] = LogisticMap(a=a, b=b, n=len(yv), n_pathogenic=n1, auroc=_auroc(xv, yv),
                                    columns=ev.resolve(scored.columns))
        fitted.append(ev.name)
    if not fitted:
        raise InputError(
            "no evidence could be calibrated: no score column has enough labelled alleles of both classes",
            f"score the labelled VCF with --alphamissense / -m spliceai first; need >= {min_per_class} "
            "pathogenic and benign alleles per score",
        )
    for ev in evidence:  # unfitted probability-like evidence keeps its default
        if ev.name not in maps and ev.default_identity:
            maps[ev.name] = "identity"
    n_lab = int(lab.is_not_null().sum())
    meta = {"calibrated": True, "labelled_alleles": n_lab,
            "pathogenic": int((lab == 1).sum()), "benign": int((lab == 0).sum()), **(info or {})}
    return PriorityModel(maps, evidence=evidence, info=meta)
