"""SegmentNT backend (``-m DIR`` with ``architectures: ["SegmentNT"]``): columns ``segmentnt_<feature>_delta``.

Exact definitions are in docs/nt_segmentnt.md; windows are those of NT
(:func:`vareff.score.lm.grid_window`, a multiple of 24 nt).

SegmentNT (columns ``segmentnt_<feature>_delta``)
    Per-nucleotide probabilities of the 14 features for the ref and the alt window (no N; length
    a multiple of 24).  The alt profile is put on reference coordinates (bases before the allele
    and the aligned part of the allele keep their offset, bases after it shift by
    ``len(alt) - len(ref)``; deleted reference bases and inserted alt bases have no counterpart
    and are skipped).  Over reference positions ``[p - k, p + len(ref) + k)`` the signed change
    ``p_alt - p_ref`` of largest magnitude is reported per feature (ties: the first).  Windows
    with N get status ``n_in_window``.  Optionally the full ref/alt profiles go to a Parquet file.

With ``strands=both`` the reverse-complement window is scored too (its alt window anchored at the
other end: a deletion pulls in the bases before the window, an insertion pushes bases out at the
start) and every delta is the mean of the two strands' signed largest changes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from vareff.errors import ConfigError, Status
from vareff.score.base import AlleleBatch, InfoField, ScoreResult
from vareff.score.lm import LRU, Site, WindowedScorer, _int, grid_window, length_batches, parse_options, reverse_complement
from vareff.window.genome import Genome

log = logging.getLogger(__name__)

__all__ = ["SegmentNTOptions", "SegmentNTScorer", "alt_on_reference", "signed_max_delta"]

_ACGT = frozenset("ACGT")


@dataclass(frozen=True)
class SegmentNTOptions:
    """Settings of the SegmentNT backend (``segmentnt.<name>`` in ``model_options``).

    Parameters
    ----------
    k : int
        Half-width (nt) of the neighbourhood of the allele whose largest change is reported
        (default 100: about the reach of the U-Net head's convolutions, +-20 tokens = +-120 nt).
    window : int
        Input length in nt (default 30000, SegmentNT's training length); a multiple of 24.
    stride : int
        Window grid step, a multiple of 6 (default 2/5 of the window: 12000): alleles less than
        ``stride`` apart usually share one reference pass; every allele keeps >= (window -
        stride)/2 - len nt of context on each side.
    min_flank : int
        Minimum context on each side of the allele (default max(k, min(2000, window/10))); below
        it the window is centred.
    max_allele : int
        Longer ref/alt alleles get ``allele_too_long`` (default 500).
    profiles : str, optional
        Write per-position ref/alt probabilities to this Parquet file (rewritten atomically after
        every batch).
    profile_flank : int
        Profile rows cover ``+-profile_flank`` nt around the allele (default 0: the whole window).
    profile_alleles : str, optional
        Only these alleles get profiles: comma-separated ``CHROM:POS`` or ``CHROM:POS:REF:ALT``
        (VCF coordinates); default all scored alleles.
    rescaling_factor : float, optional
        Force this rotary rescaling factor (default: the checkpoint's training factor, or
        (T+1)/2048 beyond the training length).
    max_batch_tokens : int
        Cap on tokens per forward pass (default 40000, about 8 windows of 30 kb).
    strands : str
        ``forward`` (default) or ``both``: each delta is the mean of the forward window's and the
        reverse-complement window's signed largest change (profiles hold the forward strand).
    """

    k: int = 100
    window: int = 30000
    stride: int | None = None
    min_flank: int | None = None
    max_allele: int = 500
    profiles: str | None = None
    profile_flank: int = 0
    profile_alleles: str | None = None
    rescaling_factor: float | None = None
    max_batch_tokens: int = 40000
    strands: str = "forward"

    @staticmethod
    def _convert(k, v, key):
        if k in ("profiles", "profile_alleles"):
            return None if v in (None, "") else str(v)
        if k == "rescaling_factor":
            if v in (None, "", "auto"):
                return None
            try:
                return float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"option {key}={v!r} is not a number or 'auto'") from None
        return _int(v, key, "SegmentNT")

    def __post_init__(self):  # derived defaults: stride 2/5 window, min_flank max(k, min(2000, window/10))
        if self.stride is None:
            object.__setattr__(self, "stride", max(6, self.window * 2 // 5 // 6 * 6))
        if self.min_flank is None:
            object.__setattr__(self, "min_flank", max(self.k, min(2000, self.window // 10)))

    @classmethod
    def from_mapping(cls, options: dict | None) -> "SegmentNTOptions":
        o = parse_options(cls, options, ("segmentnt.", "segmentnt_", "segmentnt-", "segment_nt."), "SegmentNT")
        if o.window % 24 or o.window < 24 or o.stride % 6 or o.stride < 6:
            raise ConfigError(f"SegmentNT options window={o.window}, stride={o.stride}: the window must be a "
                              "positive multiple of 24 (6-mers, two 2x poolings) and the stride of 6",
                              "e.g. segmentnt.window=30000 segmentnt.stride=12000")
        if o.k < 0 or o.min_flank < o.k or 2 * o.min_flank >= o.window or o.max_allele < 1 or o.profile_flank < 0:
            raise ConfigError(f"SegmentNT options k={o.k}, min_flank={o.min_flank}, window={o.window}, "
                              f"max_allele={o.max_allele} are inconsistent",
                              "need 0 <= k <= min_flank < window/2 and max_allele >= 1")
        if o.rescaling_factor is not None and o.rescaling_factor <= 0:
            raise ConfigError(f"SegmentNT option rescaling_factor={o.rescaling_factor} must be positive")
        return o


# --------------------------------------------------------------------------- pure helpers


def alt_on_reference(s: int, ref_len: int, alt_len: int, lo: int, hi: int, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference offsets ``j`` in ``[lo, hi)`` that have an alt counterpart, and that counterpart's alt offset.

    Before the allele and in the aligned part of the allele (``min(len(ref), len(alt))`` bases)
    offsets are equal; after the reference allele they shift by ``alt_len - ref_len``; deleted
    reference bases and positions pushed past the alt window's end (``L``) have none.
    """
    j = np.arange(max(lo, 0), min(hi, L))
    a = np.where(j < s + ref_len, j, j + (alt_len - ref_len))
    deleted = (j >= s + min(ref_len, alt_len)) & (j < s + ref_len)
    keep = ~deleted & (a >= 0) & (a < L)
    return j[keep], a[keep]


def signed_max_delta(p_ref: np.ndarray, p_alt: np.ndarray, j: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per feature, ``p_alt[a] - p_ref[j]`` of largest magnitude (first on ties); (F,) float64, NaN if empty."""
    if len(j) == 0:
        return np.full(p_ref.shape[1], np.nan)
    d = p_alt[a].astype(np.float64) - p_ref[j].astype(np.float64)  # (n, F)
    idx = np.abs(d).argmax(axis=0)  # (F,)
    return d[idx, np.arange(d.shape[1])]


# --------------------------------------------------------------------------- scorer


class SegmentNTScorer(WindowedScorer):
    """SegmentNT backend (:class:`~vareff.score.base.Scorer`): columns ``segmentnt_<feature>_delta``."""

    name = "segmentnt"
    cost_per_allele = 30.0  # s of model time per allele (chunk cutting): one 30 kb forward ~28 s on 2 CPU cores
    label = "SegmentNT"

    def __init__(self, model, *, batch_size: int = 4, options: SegmentNTOptions | None = None):
        from vareff.models.segment_nt import column_safe

        self.model = model
        self.tok = model.tokenizer
        self.cfg = model.config
        self.batch_size = max(1, int(batch_size))
        self.opts = options or SegmentNTOptions()
        if self.opts.window % self.cfg.nt_multiple:
            raise ConfigError(f"SegmentNT window {self.opts.window} is not a multiple of {self.cfg.nt_multiple}")
        self.features = tuple(model.features)
        self.safe = [column_safe(f) for f in self.features]
        self.columns = [f"segmentnt_{c}_delta" for c in self.safe]
        self.ref_cache = LRU(8)  # reference window (and strand) -> (L, F) float32 probabilities
        self.stats = {"alleles": 0, "passes": 0, "ref_passes": 0, "alt_passes": 0, "ref_cached": 0}
        self._profiles: list[pa.Table] = []
        self._new_profiles: list[pa.Table] = []
        self._profile_select = self._selectors(self.opts.profile_alleles)

    # -- Scorer protocol ---------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c, pa.float32(), nullable=True) for c in self.columns])

    def info_fields(self) -> list[InfoField]:
        fmt = "|".join(self.features)
        return [InfoField("SegmentNT", f"SegmentNT signed largest change of feature probability (alt - ref) within "
                                       f"+-{self.opts.k} nt of the allele. Format: {fmt}", "String")]

    def provenance(self) -> dict[str, str]:
        o = self.opts
        return self.provenance_with(f"k={o.k} {self.grid_settings()} rescaling_factor={o.rescaling_factor or 'auto'} "
                                    f"{self.dtype_device()}", features=",".join(self.features))

    def result(self, n: int, values: list, status: list) -> ScoreResult:
        out = np.full((n, len(self.features)), np.nan, dtype=np.float64)
        for row, v in enumerate(values):
            if v is not None:
                out[row] = v
        self.stats["alleles"] += sum(v is not None for v in values)
        columns = {}
        for f, c in enumerate(self.columns):
            v = out[:, f]
            columns[c] = pa.array(v.astype(np.float32), type=pa.float32(), mask=np.isnan(v))
        info = {"SegmentNT": [None if np.isnan(out[i]).all() else "|".join(f"{x:.4f}" for x in out[i]) for i in range(n)]}
        if self._new_profiles:
            self._profiles.extend(self._new_profiles)
            self._new_profiles = []
            self._write_profiles()
        return ScoreResult(columns=columns, status=status, info=info)

    # -- windows -----------------------------------------------------------------------------------
    def place(self, pos0: int, ref_len: int, span: tuple[int, int]) -> tuple[int, int]:
        o = self.opts
        return grid_window(pos0, ref_len, o.window, o.stride, o.min_flank, span, multiple=self.cfg.nt_multiple)

    def window_error(self, chrom: str, pos0: int, ws: int, we: int) -> str | None:
        m = self.cfg.nt_multiple
        if we - ws < m:
            log.warning("SegmentNT: contig %s is shorter than %d nt; %s:%d not scored", chrom, m, chrom, pos0 + 1)
            return Status.MODEL_ERROR.value
        return None

    def window_status(self, seq: str, alt: str) -> str | None:
        if "N" in alt or not set(seq) <= _ACGT:
            return Status.N_IN_WINDOW.value
        return None

    def alt_window(self, genome: Genome, key, seq: str, s: int, ref: str, alt: str) -> str | Status:
        """The alt window keeps the reference window's length: a deletion pulls in the reference after
        the window, an insertion drops the bases pushed past its end."""
        chrom, ws, we = key
        L = we - ws
        alt_seq = seq[:s] + alt + seq[s + len(ref):]
        if len(alt_seq) < L:  # deletion: extend with the reference after the window
            alt_seq += genome.fetch(chrom, we, we + L - len(alt_seq))
            if not set(alt_seq[L - (len(ref) - len(alt)):]) <= _ACGT:
                return Status.N_IN_WINDOW
        return alt_seq[:L]  # insertion: drop the bases pushed past the window end

    def reverse_site(self, genome: Genome, site: Site) -> Site | Status:
        """On strand - the window starts at the forward window's end: a deletion pulls in the bases
        before the forward window, an insertion pushes bases out at its start."""
        chrom, ws, we = site.key
        L, s, ref, alt = we - ws, site.s, site.ref, site.alt
        fwd = site.seq[:s] + alt + site.seq[s + len(ref):]
        if len(fwd) < L:
            pre = genome.fetch(chrom, ws - (L - len(fwd)), ws)
            if not set(pre) <= _ACGT:
                return Status.N_IN_WINDOW
            fwd = pre + fwd
        fwd = fwd[len(fwd) - L:]
        return Site(site.row, site.key, L - s - len(ref), reverse_complement(ref), reverse_complement(alt),
                    reverse_complement(site.seq), reverse_complement(fwd), "-")

    # -- running -----------------------------------------------------------------------------------
    def score_sites(self, sites: list[Site], batch: AlleleBatch) -> list:
        probs = self._run(sites)
        o = self.opts
        out = []
        for a in sites:
            p_ref, p_alt = probs.get(self._ref_key(a)), probs.get(("alt", a.alt_seq))
            if p_ref is None or p_alt is None:
                out.append(Status.MODEL_ERROR.value)
                continue
            L = len(p_ref)
            j, jj = alt_on_reference(a.s, len(a.ref), len(a.alt), a.s - o.k, a.s + len(a.ref) + o.k, L)
            out.append(signed_max_delta(p_ref, p_alt, j, jj))
            if o.profiles and a.strand == "+" and self._wants_profile(batch, a.row):
                self._new_profiles.append(self._profile_rows(batch, a, p_ref, p_alt))
        return out

    @staticmethod
    def _ref_key(a: Site) -> tuple:
        return ("ref",) + a.key + (("-",) if a.strand == "-" else ())

    @torch.inference_mode()
    def _run(self, sites: list[Site]) -> dict[tuple, np.ndarray]:
        """Probabilities (L, F) float32 for every needed ref window and distinct alt window."""
        out: dict[tuple, np.ndarray] = {}
        todo: dict[tuple, str] = {}
        for a in sites:
            rk = self._ref_key(a)
            if rk not in out and rk not in todo:
                hit = self.ref_cache.get(rk[1:])
                if hit is not None:
                    out[rk] = hit
                    self.stats["ref_cached"] += 1
                else:
                    todo[rk] = a.seq
            todo.setdefault(("alt", a.alt_seq), a.alt_seq)
        for part in length_batches(list(todo), lambda k: len(todo[k]), self.batch_size, same_length=True,
                                   max_tokens=lambda L: self.opts.max_batch_tokens // (L // 6 + 1)):
            try:
                probs = self.forward([todo[k] for k in part])  # (B, L, F)
            except Exception as e:
                log.error("SegmentNT forward failed (%s: %s); its alleles get status model_error", type(e).__name__, e)
                continue
            for k, p in zip(part, probs):
                out[k] = p
                if k[0] == "ref":
                    self.ref_cache.put(k[1:], p)
                    self.stats["ref_passes"] += 1
                else:
                    self.stats["alt_passes"] += 1
            self.stats["passes"] += len(part)
        return out

    def forward(self, seqs: list[str]) -> np.ndarray:
        """Per-nucleotide probabilities (B, L, F) float32 for equal-length ACGT windows."""
        ids, _ = self.tok(seqs)  # no padding: equal lengths, no N
        ids = ids.to(self.model.device)
        module = self.model.module
        kw = {} if self.opts.rescaling_factor is None else {"rescaling_factor": self.opts.rescaling_factor}
        _, logits = module(ids, None, **kw)  # (B, L, F, 2)
        return module.probabilities(logits).cpu().numpy().astype(np.float32)

    # -- profiles ----------------------------------------------------------------------------------
    @staticmethod
    def _selectors(text: str | None) -> set[tuple] | None:
        if not text:
            return None
        sel = set()
        for item in str(text).split(","):
            parts = item.strip().split(":")
            if len(parts) == 2:
                sel.add((parts[0], int(parts[1].replace("_", ""))))
            elif len(parts) == 4:
                sel.add((parts[0], int(parts[1].replace("_", "")), parts[2].upper(), parts[3].upper()))
            elif item.strip():
                raise ConfigError(f"SegmentNT profile_alleles item {item!r} is not CHROM:POS or CHROM:POS:REF:ALT")
        return sel

    def _wants_profile(self, batch: AlleleBatch, i: int) -> bool:
        sel = self._profile_select
        if sel is None:
            return True
        c, p = batch.chrom[i], int(batch.pos1[i])
        return (c, p) in sel or (c, p, batch.ref[i].upper(), batch.alt[i].upper()) in sel

    def _profile_rows(self, batch: AlleleBatch, a: Site, p_ref: np.ndarray, p_alt: np.ndarray) -> pa.Table:
        L = len(p_ref)
        f = self.opts.profile_flank
        lo, hi = (0, L) if f == 0 else (max(0, a.s - f), min(L, a.s + len(a.ref) + f))
        j = np.arange(lo, hi)
        jj, aa = alt_on_reference(a.s, len(a.ref), len(a.alt), lo, hi, L)
        alt_vals = np.full((len(j), p_ref.shape[1]), np.nan, dtype=np.float32)
        alt_vals[jj - lo] = p_alt[aa]
        start0 = a.key[1]
        n = len(j)
        norm_pos1 = int(batch.norm_pos1[a.row])
        cols = {
            "chrom": pa.array([batch.chrom[a.row]] * n, pa.string()),
            "pos": pa.array(np.full(n, int(batch.pos1[a.row]), dtype=np.int64)),
            "ref": pa.array([batch.ref[a.row]] * n, pa.string()),
            "alt": pa.array([batch.alt[a.row]] * n, pa.string()),
            "position": pa.array(start0 + j + 1),  # 1-based genomic position of the row
            "offset": pa.array(start0 + j + 1 - norm_pos1),  # relative to the first allele base
            "in_allele": pa.array((j >= a.s) & (j < a.s + len(a.ref))),
        }
        for k, c in enumerate(self.safe):
            cols[f"ref_{c}"] = pa.array(p_ref[lo:hi, k], pa.float32())
        for k, c in enumerate(self.safe):
            v = alt_vals[:, k]
            cols[f"alt_{c}"] = pa.array(v, pa.float32(), mask=np.isnan(v))
        return pa.table(cols)

    def _write_profiles(self) -> None:
        """Rewrite the profile Parquet with every profile so far: temporary name, then rename (atomic)."""
        import pyarrow.parquet as pq

        path = Path(self.opts.profiles)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        table = pa.concat_tables(self._profiles)
        meta = {b"vareff.segmentnt": (f"checkpoint={self.model.name} k={self.opts.k} window={self.opts.window} "
                                      f"features={','.join(self.features)}").encode()}
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
        os.replace(tmp, path)

    def close(self) -> None:
        """Nothing is pending: the profile file is complete after every batch."""


