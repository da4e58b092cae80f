"""Nucleotide Transformer backend (``-m DIR`` with ``model_type: esm``), and the ``esm`` factory.

Exact definitions are in docs/nt_segmentnt.md; in short (window offsets are 0-based into the
window string; an allele is its trimmed form ``norm_pos1``, ``norm_ref``, ``norm_alt``):

Windows (NT and SegmentNT, :func:`vareff.score.lm.grid_window`)
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

SegmentNT lives in :mod:`vareff.score.segment_nt`; :func:`make_scorer` picks it for a checkpoint
with ``architectures: ["SegmentNT"]``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vareff.errors import ConfigError, Status
from vareff.score.lm import Site, grid_window, parse_options
from vareff.score.masked_lm import MaskedLMScorer, Plan

log = logging.getLogger(__name__)

__all__ = ["NTOptions", "NTScorer", "make_scorer"]


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
    strands : str
        ``forward`` (default) or ``both``: also score the reverse-complement window and average
        (:mod:`vareff.score.masked_lm`).
    """

    window: int = 6000
    stride: int | None = None
    min_flank: int | None = None
    max_allele: int = 200
    strands: str = "forward"

    def __post_init__(self):  # derived defaults: stride window/2, min_flank min(500, window/8)
        if self.stride is None:
            object.__setattr__(self, "stride", max(6, self.window // 2 // 6 * 6))
        if self.min_flank is None:
            object.__setattr__(self, "min_flank", min(500, self.window // 8))

    @classmethod
    def from_mapping(cls, options: dict | None) -> "NTOptions":
        o = parse_options(cls, options, ("nt.", "nt_", "nt-"), "NT")
        if o.window % 6 or o.stride % 6 or o.window < 12 or o.stride < 6:
            raise ConfigError(f"NT options window={o.window}, stride={o.stride} must be positive multiples of 6",
                              "e.g. nt.window=6000 nt.stride=3000")
        if o.min_flank < 0 or 2 * o.min_flank >= o.window or o.max_allele < 1:
            raise ConfigError(f"NT options min_flank={o.min_flank}, max_allele={o.max_allele} do not fit window={o.window}")
        return o


class NTScorer(MaskedLMScorer):
    """Nucleotide Transformer masked LM backend (:class:`~vareff.score.base.Scorer`): columns ``nt_*``."""

    name = "nt"
    cost_per_allele = 2.0  # s of model time per allele (chunk cutting): 6 kb windows of a 500M-parameter trunk on CPU
    label = "NT"
    title = "Nucleotide Transformer"
    llr_info = "masked-marginal log-likelihood ratio alt vs ref at the covering 6-mer(s) (natural log)"

    def __init__(self, model, *, batch_size: int = 16, options: NTOptions | None = None):
        if not getattr(model.module, "has_lm_head", False):
            raise ConfigError(f"{model.name}: this NT checkpoint has no MLM head (lm_head.*)", "nt_llr needs it")
        o = options or NTOptions()
        limit = model.module.max_tokens()
        if limit is not None and o.window > 6 * (limit - 1):
            w = 6 * (limit - 1)
            log.info("NT window %d nt exceeds this model's %d positions; using %d nt", o.window, limit, w)
            o = replace(o, window=w, stride=min(o.stride, w // 2 // 6 * 6 or 6), min_flank=min(o.min_flank, w // 4))
        super().__init__(model, batch_size=batch_size, options=o, cache_size=256, max_tokens=limit)

    def provenance(self) -> dict[str, str]:
        return self.provenance_with(f"{self.model.config.variant} {self.grid_settings()} {self.dtype_device()}")

    def place(self, pos0: int, ref_len: int, span: tuple[int, int]) -> tuple[int, int]:
        o = self.opts
        return grid_window(pos0, ref_len, o.window, o.stride, o.min_flank, span)

    def plan_site(self, site: Site, er, ea, add) -> Plan | str:
        s, ref, alt = site.s, site.ref, site.alt
        rj, aj = add(er.ids), add(ea.ids)
        same_frame = len(ref) == len(alt) and np.array_equal(er.starts, ea.starts) and np.array_equal(er.ends, ea.ends)
        diff = [x for x in range(len(ref)) if ref[x] != alt[x]] if len(ref) == len(alt) else []
        if same_frame and not diff:
            return Status.NO_ALT.value
        if same_frame:  # substitution: alt tokens scored in the same masked ref slots
            t0, t1 = er.covering(s + diff[0], s + diff[-1] + 1)
            return Plan(site.row, rj, aj, add(er.ids, t0, t1),
                        ref_tokens=er.ids[t0:t1].copy(), alt_tokens=ea.ids[t0:t1].copy())
        # length change (or N gained/lost): each window's own covering tokens
        r0, r1 = er.covering(s, s + len(ref))
        a0, a1 = ea.covering(s, s + len(alt))
        return Plan(site.row, rj, aj, add(er.ids, r0, r1), add(ea.ids, a0, a1),
                    ref_tokens=er.ids[r0:r1].copy(), alt_tokens=ea.ids[a0:a1].copy())


def make_scorer(path, *, device="auto", dtype=None, batch_size: int = 16, options: dict | None = None):
    """Build the NT or SegmentNT backend for ``-m PATH`` (a local ``model_type: esm`` checkpoint).

    Parameters
    ----------
    path : str
        Checkpoint directory: NT v1/v2 masked LM (``EsmForMaskedLM``) -> :class:`NTScorer`;
        ``architectures: ["SegmentNT"]`` -> :class:`~vareff.score.segment_nt.SegmentNTScorer`.
    device : str
        ``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``.
    dtype : torch.dtype or str, optional
        Matmul dtype; None: float32 on CPU, bfloat16 on CUDA.
    batch_size : int
        Sequences per forward pass (SegmentNT also caps tokens per pass, ``max_batch_tokens``).
    options : dict, optional
        ``nt.<name>`` (:class:`NTOptions`) / ``segmentnt.<name>``
        (:class:`~vareff.score.segment_nt.SegmentNTOptions`).
    """
    from vareff.models.load import load_model
    from vareff.score.segment_nt import SegmentNTOptions, SegmentNTScorer

    cfg_path = Path(path) / "config.json"
    is_segment = False
    if cfg_path.is_file():
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
