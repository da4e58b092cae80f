"""Nucleotide Transformer and SegmentNT backends (``-m DIR`` with ``model_type: esm``).

Exact definitions are in docs/nt_segmentnt.md; in short (window offsets are 0-based into the
window string; an allele is its trimmed form ``norm_pos1``, ``norm_ref``, ``norm_alt``):

Windows (both backends)
    Reference windows of ``window`` nt lie on a genome-wide grid with step ``stride`` (both
    multiples of 6, so the 6-mer frame is the genome's: nucleotide p is always in the token of
    [6*floor(p/6), +6)).  An allele takes the grid window whose centre is nearest its own, so every
    allele of one grid cell shares one reference pass; if a flank would drop below ``min_flank``
    the window is centred on the allele instead (start rounded down to a multiple of 6).  Windows
    are shifted to stay inside the FASTA contig.  The alt window has the same start.

NT (columns ``nt_*``)
    ``nt_llr``: masked-marginal log-likelihood ratio at the 6-mer(s) covering the allele.  For a
    substitution, the reference tokens covering the changed bases are masked in one pass (shared
    by every substitution with the same covering tokens) and
    ``llr = sum_t log p_t(alt token) - log p_t(ref token)`` (natural log), the alt token being the
    reference 6-mer with the alt bases.  For an indel, the tokens covering the allele are masked
    in the ref window and in the alt window (its own tokenization; the k-mer frame downstream
    shifts) and ``llr = sum log p(alt tokens | alt masked) - sum log p(ref tokens | ref masked)``.
    ``nt_embedding_distance`` / ``nt_embedding_l2``: cosine distance / Euclidean distance between
    the mean final embeddings (``<cls>`` and pads excluded) of the unmasked ref and alt windows.
    ``nt_masked_tokens``: reference tokens masked for ``nt_llr``.  N in the window is allowed
    (NT has an N token).

SegmentNT (columns ``segmentnt_<feature>_delta``)
    Per-nucleotide probabilities of the 14 features for the ref and the alt window (no N; length
    a multiple of 24).  The alt profile is put on reference coordinates (bases before the allele
    and the aligned part of the allele keep their offset, bases after it shift by
    ``len(alt) - len(ref)``; deleted reference bases and inserted alt bases have no counterpart
    and are skipped).  Over reference positions ``[p - k, p + len(ref) + k)`` the signed change
    ``p_alt - p_ref`` of largest magnitude is reported per feature (ties: the first).  Windows
    with N get status ``n_in_window``.  Optionally the full ref/alt profiles go to a Parquet file.
"""
from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from vareff.errors import SCORABLE, ConfigError, Status
from vareff.score.base import AlleleBatch, InfoField, ScoreResult
from vareff.window.genome import Genome

log = logging.getLogger(__name__)

__all__ = ["NTOptions", "SegmentNTOptions", "NTScorer", "SegmentNTScorer", "make_scorer", "grid_window",
           "signed_max_delta", "alt_on_reference"]

NT_COLUMNS = (
    ("nt_llr", pa.float64()),
    ("nt_embedding_distance", pa.float64()),
    ("nt_embedding_l2", pa.float64()),
    ("nt_masked_tokens", pa.int32()),
)
_ACGT = frozenset("ACGT")


# --------------------------------------------------------------------------- options


def _parse(cls, options: dict | None, prefixes: tuple[str, ...], label: str):
    """Options for ``cls`` from the engine's shared ``model_options``: ``<prefix><name>`` or a bare known name."""
    names = {f.name: f for f in fields(cls)}
    kw: dict[str, Any] = {}
    for key, value in (options or {}).items():
        k = str(key)
        for pre in prefixes:
            if k.startswith(pre):
                k, mine = k[len(pre):], True
                break
        else:
            if "." in k:  # another model's option
                continue
            mine = False
        k = k.replace("-", "_")
        if k not in names:
            if mine:
                raise ConfigError(f"unknown {label} option {key!r}", f"known: {', '.join(sorted(names))}")
            continue
        kw[k] = cls._convert(k, value, key)
    return cls(**kw)


def _int(v, key):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"option {key}={v!r} is not an integer") from None


@dataclass(frozen=True)
class NTOptions:
    """Settings of the NT backend (``nt.<name>`` in ``model_options``).

    Parameters
    ----------
    window : int
        Reference window in nt (default 6000 = 1000 6-mers; lowered to the model's position limit
        for NT v1).  A multiple of 6.
    stride : int
        Step of the genome-wide window grid, a multiple of 6 (default window/2: 3000).
    min_flank : int
        Minimum context on each side of the allele (default min(500, window/8)).
    max_allele : int
        Longer ref/alt alleles get ``allele_too_long`` (default 200).
    """

    window: int = 6000
    stride: int | None = None
    min_flank: int | None = None
    max_allele: int = 200

    @staticmethod
    def _convert(k, v, key):
        return _int(v, key)

    def __post_init__(self):  # derived defaults: stride window/2, min_flank min(500, window/8)
        if self.stride is None:
            object.__setattr__(self, "stride", max(6, self.window // 2 // 6 * 6))
        if self.min_flank is None:
            object.__setattr__(self, "min_flank", min(500, self.window // 8))

    @classmethod
    def from_mapping(cls, options: dict | None) -> "NTOptions":
        o = _parse(cls, options, ("nt.", "nt_", "nt-"), "NT")
        if o.window % 6 or o.stride % 6 or o.window < 12 or o.stride < 6:
            raise ConfigError(f"NT options window={o.window}, stride={o.stride} must be positive multiples of 6",
                              "e.g. nt.window=6000 nt.stride=3000")
        if o.min_flank < 0 or 2 * o.min_flank >= o.window or o.max_allele < 1:
            raise ConfigError(f"NT options min_flank={o.min_flank}, max_allele={o.max_allele} do not fit window={o.window}")
        return o


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
        return _int(v, key)

    def __post_init__(self):  # derived defaults: stride 2/5 window, min_flank max(k, min(2000, window/10))
        if self.stride is None:
            object.__setattr__(self, "stride", max(6, self.window * 2 // 5 // 6 * 6))
        if self.min_flank is None:
            object.__setattr__(self, "min_flank", max(self.k, min(2000, self.window // 10)))

    @classmethod
    def from_mapping(cls, options: dict | None) -> "SegmentNTOptions":
        o = _parse(cls, options, ("segmentnt.", "segmentnt_", "segmentnt-", "segment_nt."), "SegmentNT")
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


def grid_window(pos0: int, ref_len: int, window: int, stride: int, min_flank: int,
                span: tuple[int, int], multiple: int = 6) -> tuple[int, int]:
    """Genomic ``[start0, end0)`` of the reference window for an allele at ``[pos0, pos0 + ref_len)``.

    The grid window (starts ``t * stride``) whose centre is nearest the allele's; centred (start
    rounded down to a multiple of 6) when a flank would be shorter than ``min_flank``; shifted into
    ``span`` (the FASTA contig) and, for a contig shorter than the window, cut to the longest
    multiple of ``multiple`` that fits.
    """
    centre2 = 2 * pos0 + ref_len  # twice the allele centre (integer arithmetic)
    t = math.floor((centre2 - window) / (2 * stride) + 0.5)
    start = t * stride
    if min(pos0 - start, start + window - pos0 - ref_len) < min_flank:
        start = (centre2 - window) // 2
        start -= start % 6
    lo, hi = span
    if hi - lo < window:  # short contig: the longest allowed window, as centred as the contig allows
        window = (hi - lo) // multiple * multiple
        start = (centre2 - window) // 2
    start = min(max(start, lo), hi - window)
    return start, start + window


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


class _LRU(OrderedDict):
    """A small least-recently-used cache (reference passes reused across batches)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _check_allele(batch: AlleleBatch, i: int, genome: Genome, max_allele: int):
    """(chrom, pos0, ref, alt, span) or a Status value."""
    ref, alt = batch.norm_ref[i].upper(), batch.norm_alt[i].upper()
    if len(ref) > max_allele or len(alt) > max_allele:
        return Status.ALLELE_TOO_LONG.value
    if not ref and not alt:
        return Status.NO_ALT.value
    if set(alt) - set("ACGTN"):
        return Status.SYMBOLIC_ALLELE.value
    chrom, pos0 = batch.chrom[i], int(batch.norm_pos1[i]) - 1
    span = genome.span(chrom)
    if span is None:
        return Status.CONTIG_NOT_IN_FASTA.value
    return chrom, pos0, ref, alt, span


# --------------------------------------------------------------------------- NT


@dataclass
class _NTJob:
    ids: np.ndarray
    mask_from: int = 0
    mask_to: int = 0
    logprobs: torch.Tensor | None = None  # (n_masked, V) log-softmax at the masked slots
    mean: torch.Tensor | None = None  # (C,) mean final embedding (unmasked runs)
    failed: bool = False


@dataclass
class _NTAllele:
    row: int
    ref_job: int
    alt_job: int
    masked_ref: int
    masked_alt: int = -1  # indels: masked alt window
    ref_tokens: np.ndarray | None = None  # token ids scored in the masked ref slots
    alt_tokens: np.ndarray | None = None  # token ids scored (substitutions: in the masked ref slots)


class NTScorer:
    """Nucleotide Transformer masked LM backend (:class:`~vareff.score.base.Scorer`): columns ``nt_*``."""

    name = "nt"
    cost_per_allele = 2.0  # s of model time per allele (chunk cutting): 6 kb windows of a 500M-parameter trunk on CPU

    def __init__(self, model, *, batch_size: int = 16, options: NTOptions | None = None):
        if not getattr(model.module, "has_lm_head", False):
            raise ConfigError(f"{model.name}: this NT checkpoint has no MLM head (lm_head.*)", "nt_llr needs it")
        self.model, self.tok = model, model.tokenizer
        self.batch_size = max(1, int(batch_size))
        o = options or NTOptions()
        limit = model.module.max_tokens()
        if limit is not None and o.window > 6 * (limit - 1):
            w = 6 * (limit - 1)
            log.info("NT window %d nt exceeds this model's %d positions; using %d nt", o.window, limit, w)
            o = NTOptions(window=w, stride=min(o.stride, w // 2 // 6 * 6 or 6), min_flank=min(o.min_flank, w // 4),
                          max_allele=o.max_allele)
        self.opts = o
        self.max_tokens = limit
        self.cache = _LRU(256)  # (key) -> finished job results, reused across batches
        self.stats = {"alleles": 0, "passes": 0, "cached": 0, "tokens": 0}

    # -- Scorer protocol ---------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t, nullable=True) for n, t in NT_COLUMNS])

    def info_fields(self) -> list[InfoField]:
        return [
            InfoField("NT_LLR", "Nucleotide Transformer masked-marginal log-likelihood ratio alt vs ref at the covering 6-mer(s) (natural log)", "Float"),
            InfoField("NT_EMB", "Nucleotide Transformer cosine distance between mean final embeddings of ref and alt windows", "Float"),
        ]

    def provenance(self) -> dict[str, str]:
        o = self.opts
        return {
            "nt.checkpoint": str(self.model.name),
            "nt.weights": self.model.checksum(),
            "nt.settings": f"{self.model.config.variant} window={o.window} stride={o.stride} min_flank={o.min_flank} "
                           f"max_allele={o.max_allele} dtype={str(self.model.dtype).replace('torch.', '')} "
                           f"device={self.model.device}",
        }

    def score(self, batch: AlleleBatch, genome: Genome) -> ScoreResult:
        n = len(batch)
        status: list[str | None] = [None] * n
        cols = {name: [None] * n for name, _ in NT_COLUMNS}
        alleles, jobs = self._plan(batch, genome, status)
        self._run(jobs)
        for a in alleles:
            used = [jobs[j] for j in (a.ref_job, a.alt_job, a.masked_ref, a.masked_alt) if j >= 0]
            if any(jb.failed for jb in used):
                status[a.row] = Status.MODEL_ERROR.value
                continue
            mr = jobs[a.masked_ref]
            k = mr.mask_to - mr.mask_from
            lr = mr.logprobs.double()[torch.arange(k), torch.from_numpy(a.ref_tokens)].sum().item()
            if a.masked_alt < 0:  # substitution: alt tokens scored in the same masked ref slots
                la = mr.logprobs.double()[torch.arange(k), torch.from_numpy(a.alt_tokens)].sum().item()
            else:
                ma = jobs[a.masked_alt]
                la = ma.logprobs.double()[torch.arange(ma.mask_to - ma.mask_from), torch.from_numpy(a.alt_tokens)].sum().item()
            e_ref, e_alt = jobs[a.ref_job].mean.double(), jobs[a.alt_job].mean.double()
            cos = torch.nn.functional.cosine_similarity(e_ref, e_alt, dim=0).item()
            cols["nt_llr"][a.row] = la - lr
            cols["nt_embedding_distance"][a.row] = 1.0 - cos
            cols["nt_embedding_l2"][a.row] = torch.linalg.vector_norm(e_ref - e_alt).item()
            cols["nt_masked_tokens"][a.row] = k
        self.stats["alleles"] += len(alleles)
        info = {
            "NT_LLR": [None if v is None else f"{v:.4f}" for v in cols["nt_llr"]],
            "NT_EMB": [None if v is None else f"{v:.4g}" for v in cols["nt_embedding_distance"]],
        }
        return ScoreResult(columns={nm: pa.array(cols[nm], type=t) for nm, t in NT_COLUMNS}, status=status, info=info)

    # -- planning ----------------------------------------------------------------------------------
    def _plan(self, batch: AlleleBatch, genome: Genome, status: list) -> tuple[list[_NTAllele], list[_NTJob]]:
        o = self.opts
        ref_seqs: dict[tuple, str] = {}
        encs: dict[str, Any] = {}
        jobs: list[_NTJob] = []
        index: dict[tuple, int] = {}

        def enc(seq: str):
            e = encs.get(seq)
            if e is None:
                e = encs[seq] = self.tok.encode_one(seq)
            return e

        def job(ids: np.ndarray, a: int = 0, b: int = 0) -> int:
            if b > a:
                ids = ids.copy()
                ids[a:b] = self.tok.mask_id
            key = (a, b, ids.tobytes())
            j = index.get(key)
            if j is None:
                j = index[key] = len(jobs)
                jobs.append(_NTJob(ids=ids, mask_from=a, mask_to=b))
            return j

        alleles = []
        for i in range(len(batch)):
            if batch.status[i] not in SCORABLE:
                continue
            chk = _check_allele(batch, i, genome, o.max_allele)
            if isinstance(chk, str):
                status[i] = chk
                continue
            chrom, pos0, ref, alt, span = chk
            ws, we = grid_window(pos0, len(ref), o.window, o.stride, o.min_flank, span)
            key = (chrom, ws, we)
            seq = ref_seqs.get(key)
            if seq is None:
                seq = ref_seqs[key] = genome.fetch(chrom, ws, we)
            s = pos0 - ws
            if s < 0 or s + len(ref) > len(seq) or seq[s:s + len(ref)] != ref:
                status[i] = Status.REF_MISMATCH.value
                continue
            alt_seq = seq[:s] + alt + seq[s + len(ref):]
            er, ea = enc(seq), enc(alt_seq)
            if self.max_tokens is not None and max(len(er), len(ea)) > self.max_tokens:
                status[i] = Status.MODEL_ERROR.value
                log.warning("NT window %s:%d-%d has %d tokens > the model's %d positions; lower nt.window",
                            chrom, ws + 1, we, max(len(er), len(ea)), self.max_tokens)
                continue
            rj, aj = job(er.ids), job(ea.ids)
            same_frame = len(ref) == len(alt) and np.array_equal(er.starts, ea.starts) and np.array_equal(er.ends, ea.ends)
            diff = [x for x in range(len(ref)) if ref[x] != alt[x]] if len(ref) == len(alt) else []
            if same_frame and not diff:
                status[i] = Status.NO_ALT.value
                continue
            if same_frame:
                t0, t1 = er.covering(s + diff[0], s + diff[-1] + 1)
                alleles.append(_NTAllele(i, rj, aj, job(er.ids, t0, t1),
                                         ref_tokens=er.ids[t0:t1].copy(), alt_tokens=ea.ids[t0:t1].copy()))
            else:  # length change (or N gained/lost): each window's own covering tokens
                r0, r1 = er.covering(s, s + len(ref))
                a0, a1 = ea.covering(s, s + len(alt))
                alleles.append(_NTAllele(i, rj, aj, job(er.ids, r0, r1), job(ea.ids, a0, a1),
                                         ref_tokens=er.ids[r0:r1].copy(), alt_tokens=ea.ids[a0:a1].copy()))
        return alleles, jobs

    # -- running -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, jobs: list[_NTJob]) -> None:
        todo = []
        for jb in jobs:
            hit = self.cache.get((jb.mask_from, jb.mask_to, jb.ids.tobytes()))
            if hit is not None:
                jb.logprobs, jb.mean = hit
                self.stats["cached"] += 1
            else:
                todo.append(jb)
        module, dev, tok = self.model.module, self.model.device, self.tok
        todo.sort(key=lambda jb: len(jb.ids))  # length-sorted: little padding
        for b0 in range(0, len(todo), self.batch_size):
            part = todo[b0:b0 + self.batch_size]
            T = max(len(jb.ids) for jb in part)
            ids = np.full((len(part), T), tok.pad_id, dtype=np.int64)
            am = np.zeros((len(part), T), dtype=np.int64)
            for r, jb in enumerate(part):
                ids[r, : len(jb.ids)] = jb.ids
                am[r, : len(jb.ids)] = 1
            self.stats["passes"] += len(part)
            self.stats["tokens"] += int(am.sum())
            try:
                hidden = module.encode(torch.from_numpy(ids).to(dev), torch.from_numpy(am).to(dev))  # (B, T, C)
                rows, pos, owners = [], [], []
                for r, jb in enumerate(part):
                    if jb.mask_to > jb.mask_from:
                        rows += [r] * (jb.mask_to - jb.mask_from)
                        pos += list(range(jb.mask_from, jb.mask_to))
                        owners.append(jb)
                    else:
                        jb.mean = hidden[r, 1: len(jb.ids)].mean(0).float().cpu()  # <cls> and pads excluded
                if rows:
                    sel = hidden[torch.tensor(rows, device=dev), torch.tensor(pos, device=dev)]  # (N, C)
                    lp = torch.log_softmax(module.mlm_logits(sel), dim=-1).cpu()  # (N, V)
                    k = 0
                    for jb in owners:
                        n = jb.mask_to - jb.mask_from
                        jb.logprobs = lp[k:k + n]
                        k += n
            except Exception as e:  # a failed batch marks its alleles, the run goes on
                log.error("NT forward failed (%s: %s); its alleles get status model_error", type(e).__name__, e)
                for jb in part:
                    jb.failed = True
                continue
            for jb in part:
                self.cache.put((jb.mask_from, jb.mask_to, jb.ids.tobytes()), (jb.logprobs, jb.mean))


# --------------------------------------------------------------------------- SegmentNT


@dataclass
class _SegAllele:
    row: int
    key: tuple  # reference window (chrom, start0, end0)
    alt_seq: str
    s: int  # allele offset in the window
    ref_len: int
    alt_len: int


class SegmentNTScorer:
    """SegmentNT backend (:class:`~vareff.score.base.Scorer`): columns ``segmentnt_<feature>_delta``."""

    name = "segmentnt"
    cost_per_allele = 30.0  # s of model time per allele (chunk cutting): one 30 kb forward ~28 s on 2 CPU cores

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
        self.ref_cache = _LRU(8)  # reference window -> (L, F) float32 probabilities
        self.stats = {"alleles": 0, "passes": 0, "ref_passes": 0, "alt_passes": 0, "ref_cached": 0}
        self._profiles: list[pa.Table] = []
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
        return {
            "segmentnt.checkpoint": str(self.model.name),
            "segmentnt.weights": self.model.checksum(),
            "segmentnt.settings": f"k={o.k} window={o.window} stride={o.stride} min_flank={o.min_flank} "
                                  f"max_allele={o.max_allele} rescaling_factor={o.rescaling_factor or 'auto'} "
                                  f"dtype={str(self.model.dtype).replace('torch.', '')} device={self.model.device}",
            "segmentnt.features": ",".join(self.features),
        }

    def score(self, batch: AlleleBatch, genome: Genome) -> ScoreResult:
        n = len(batch)
        status: list[str | None] = [None] * n
        out = np.full((n, len(self.features)), np.nan, dtype=np.float64)
        alleles, ref_seqs = self._plan(batch, genome, status)
        probs = self._run(alleles, ref_seqs)
        o = self.opts
        new_profiles = []
        for a in alleles:
            p_ref, p_alt = probs.get(("ref",) + a.key), probs.get(("alt", a.alt_seq))
            if p_ref is None or p_alt is None:
                status[a.row] = Status.MODEL_ERROR.value
                continue
            L = len(p_ref)
            j, jj = alt_on_reference(a.s, a.ref_len, a.alt_len, a.s - o.k, a.s + a.ref_len + o.k, L)
            out[a.row] = signed_max_delta(p_ref, p_alt, j, jj)
            if o.profiles and self._wants_profile(batch, a.row):
                new_profiles.append(self._profile_rows(batch, a, p_ref, p_alt))
        self.stats["alleles"] += len(alleles)
        columns = {}
        for f, c in enumerate(self.columns):
            v = out[:, f]
            columns[c] = pa.array(v.astype(np.float32), type=pa.float32(), mask=np.isnan(v))
        info = {"SegmentNT": [None if np.isnan(out[i]).all() else "|".join(f"{x:.4f}" for x in out[i]) for i in range(n)]}
        if new_profiles:
            self._profiles.extend(new_profiles)
            self._write_profiles()
        return ScoreResult(columns=columns, status=status, info=info)

    # -- planning ----------------------------------------------------------------------------------
    def _plan(self, batch: AlleleBatch, genome: Genome, status: list) -> tuple[list[_SegAllele], dict]:
        o = self.opts
        m = self.cfg.nt_multiple
        ref_seqs: dict[tuple, str] = {}
        alleles = []
        for i in range(len(batch)):
            if batch.status[i] not in SCORABLE:
                continue
            chk = _check_allele(batch, i, genome, o.max_allele)
            if isinstance(chk, str):
                status[i] = chk
                continue
            chrom, pos0, ref, alt, span = chk
            ws, we = grid_window(pos0, len(ref), o.window, o.stride, o.min_flank, span, multiple=m)
            if we - ws < m:
                status[i] = Status.MODEL_ERROR.value
                log.warning("SegmentNT: contig %s is shorter than %d nt; %s:%d not scored", chrom, m, chrom, pos0 + 1)
                continue
            key = (chrom, ws, we)
            seq = ref_seqs.get(key)
            if seq is None:
                seq = ref_seqs[key] = genome.fetch(chrom, ws, we)
            s = pos0 - ws
            if s < 0 or s + len(ref) > len(seq) or seq[s:s + len(ref)] != ref:
                status[i] = Status.REF_MISMATCH.value
                continue
            if "N" in alt or not set(seq) <= _ACGT:
                status[i] = Status.N_IN_WINDOW.value
                continue
            L = we - ws
            alt_seq = seq[:s] + alt + seq[s + len(ref):]
            if len(alt_seq) < L:  # deletion: extend with the reference after the window
                alt_seq += genome.fetch(chrom, we, we + L - len(alt_seq))
                if not set(alt_seq[L - (len(ref) - len(alt)):]) <= _ACGT:
                    status[i] = Status.N_IN_WINDOW.value
                    continue
            alt_seq = alt_seq[:L]  # insertion: drop the bases pushed past the window end
            alleles.append(_SegAllele(i, key, alt_seq, s, len(ref), len(alt)))
        return alleles, ref_seqs

    # -- running -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, alleles: list[_SegAllele], ref_seqs: dict) -> dict[tuple, np.ndarray]:
        """Probabilities (L, F) float32 for every needed ref window and distinct alt window."""
        out: dict[tuple, np.ndarray] = {}
        todo: dict[tuple, str] = {}
        for a in alleles:
            rk = ("ref",) + a.key
            if rk not in out and rk not in todo:
                hit = self.ref_cache.get(a.key)
                if hit is not None:
                    out[rk] = hit
                    self.stats["ref_cached"] += 1
                else:
                    todo[rk] = ref_seqs[a.key]
            todo.setdefault(("alt", a.alt_seq), a.alt_seq)
        by_len: dict[int, list[tuple]] = {}
        for key, seq in todo.items():
            by_len.setdefault(len(seq), []).append(key)
        for L, keys in sorted(by_len.items()):
            per = max(1, min(self.batch_size, self.opts.max_batch_tokens // (L // 6 + 1)))
            for b0 in range(0, len(keys), per):
                part = keys[b0:b0 + per]
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

    def _profile_rows(self, batch: AlleleBatch, a: _SegAllele, p_ref: np.ndarray, p_alt: np.ndarray) -> pa.Table:
        L = len(p_ref)
        f = self.opts.profile_flank
        lo, hi = (0, L) if f == 0 else (max(0, a.s - f), min(L, a.s + a.ref_len + f))
        j = np.arange(lo, hi)
        jj, aa = alt_on_reference(a.s, a.ref_len, a.alt_len, lo, hi, L)
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
            "in_allele": pa.array((j >= a.s) & (j < a.s + a.ref_len)),
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


# --------------------------------------------------------------------------- factory


def make_scorer(path, *, device="auto", dtype=None, batch_size: int = 16, options: dict | None = None):
    """Build the NT or SegmentNT backend for ``-m PATH`` (a local ``model_type: esm`` checkpoint).

    Parameters
    ----------
    path : str
        Checkpoint directory: NT v1/v2 masked LM (``EsmForMaskedLM``) -> :class:`NTScorer`;
        ``architectures: ["SegmentNT"]`` -> :class:`SegmentNTScorer`.
    device : str
        ``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``.
    dtype : torch.dtype or str, optional
        Matmul dtype; None: float32 on CPU, bfloat16 on CUDA.
    batch_size : int
        Sequences per forward pass (SegmentNT also caps tokens per pass, ``max_batch_tokens``).
    options : dict, optional
        ``nt.<name>`` (:class:`NTOptions`) / ``segmentnt.<name>`` (:class:`SegmentNTOptions`).
    """
    from vareff.models.load import load_model

    cfg_path = Path(path) / "config.json"
    is_segment = False
    if cfg_path.is_file():
        import json

        try:
            is_segment = "SegmentNT" in (json.loads(cfg_path.read_text()).get("architectures") or [])
        except (OSError, ValueError):
            pass
    # validate options before loading weights
    opts = SegmentNTOptions.from_mapping(options) if is_segment else NTOptions.from_mapping(options)
    model = load_model(path, device=device, dtype=dtype)
    if model.family == "segment_nt":
        return SegmentNTScorer(model, batch_size=batch_size, options=opts)
    if model.family != "esm":
        raise ConfigError(f"{path} is a {model.family!r} checkpoint, not a Nucleotide Transformer one")
    return NTScorer(model, batch_size=batch_size, options=opts)
