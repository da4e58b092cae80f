"""GROVER backend: masked-marginal LLR and embedding distance from a BERT masked LM over BPE tokens.

Exact definitions (also in docs/grover.md).  Coordinates: window offsets are 0-based into the
window string; an allele is its trimmed form (``norm_pos1``, ``norm_ref``, ``norm_alt``).

Window
    Reference windows of ``window`` nt (default 1000) are laid on a fixed genome-wide grid with
    step ``stride`` (default 500): an allele uses the grid window whose centre is nearest the
    allele's centre, so it keeps at least ``(window - stride)/2 - len/2`` nt of context on each
    side (>= 150 nt with the defaults; the model card advises >= 100) and every allele of the same
    grid cell shares one reference window.  If a flank would drop below ``min_flank`` the window is
    centred on the allele instead.  Windows are clipped at the ends of the FASTA contig (no N
    padding).  The alt window is the reference window with the allele applied (same start; an
    indel changes its length).  Both are tokenized whole by the checkpoint's tokenizer, so
    re-tokenization around the allele is exactly what the tokenizer does.

``grover_llr`` for substitutions (SNV, MNV: ``len(ref) == len(alt)``)
    Mask the reference-window tokens covering the changed bases (the "covering tokens"); one
    forward pass; ``p_k`` = softmax of the MLM logits at masked slot ``k`` (ref-token span
    ``[a_k, b_k)``).  For a base at window position ``x`` in slot ``k`` (offset ``o = x - a_k``),
    the slot's base distribution is the marginal over nucleotide tokens reaching that offset::

        q_x(c) = sum_{v: len(v) > o, v[o] = c} p_k(v)  /  sum_{v: len(v) > o} p_k(v)

    and ``llr = sum over changed bases x of [log q_x(alt_x) - log q_x(ref_x)]``.  The masked input
    holds no allele information, so one pass per site serves every alt with the same covering
    tokens (all alts of an SNV site).  When no vocabulary token carries the ref or alt base at
    that offset (the marginal would be 0, e.g. deep inside a long repeat token), the substitution
    is scored like an indel (below) instead.

``grover_llr`` for indels and complex alleles (length change), and unsupported substitutions
    Tokenize ref and alt windows; the tokens outside the longest common token prefix and suffix
    (widened to the tokens covering the allele in each) are the "differing tokens".  Mask them in
    the ref window (one pass, shared by alts with the same masked range) and in the alt window
    (one pass per alt); ``llr = sum log p(alt tokens | alt masked) - sum log p(ref tokens | ref masked)``
    over the actual tokens.  Ref and alt may differ in token count; the score then also reflects
    that count.

``grover_embedding_distance`` / ``grover_embedding_l2``
    Mean of the final hidden states over the non-special tokens of the unmasked ref window and of
    the unmasked alt window; cosine distance ``1 - cos`` and Euclidean distance between the two
    means.  The ref pass is shared by every allele of the window; identical alt windows are run once.

``grover_masked_tokens``: number of masked reference tokens behind ``grover_llr``.

Alleles with N in the window (GROVER's vocabulary has no N) get status ``n_in_window``; alleles
longer than ``max_allele`` get ``allele_too_long``; windows over the model's position limit get
``model_error`` (lower ``window``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vareff.errors import ConfigError, Status
from vareff.score.lm import Site, parse_options, window_for
from vareff.score.masked_lm import MaskedLMScorer, Pass, Plan


__all__ = ["GroverOptions", "GroverScorer", "make_scorer", "base_marginals", "LLR_DEFINITIONS"]

_BASES = "ACGT"
_PRECISIONS = ("bf16", "bf16-delta")
#: score definitions of ``grover_llr`` (option ``llr``)
LLR_DEFINITIONS = ("masked", "wt-marginal")


@dataclass(frozen=True)
class GroverOptions:
    """Settings of the GROVER backend (``make_scorer(..., options={...})``; keys may carry a ``grover.`` prefix).

    Parameters
    ----------
    window : int
        Reference window length in nt (default 1000, about 240 tokens of a ~600-token BPE vocabulary).
    stride : int
        Step of the genome-wide window grid (default 500).  ``stride=1`` centres every window on
        its allele (no sharing of reference passes).
    min_flank : int
        Minimum context (nt) on each side of the allele; below it the window is centred instead.
    max_allele : int
        Longer ref/alt alleles get status ``allele_too_long`` (default 200).
    precision : str
        How a ``bfloat16`` dtype is used: ``"bf16"`` (default) runs every pass with bfloat16
        matmuls (float32 residual stream, LayerNorm and logits): fastest on CPUs with AMX/AVX512-BF16
        and on GPUs, |dLLR| up to ~0.1 and embedding distances within ~8% of float32 on the
        GROVER-shaped benchmark model.  ``"bf16-delta"`` runs reference windows in float32 and every
        masked/alt window with the reference's token count as float32 reference + bfloat16
        difference (|dLLR| < 1e-3, distances within 0.3%), 0.7-2.2x the float32 speed on the
        2-core benchmark CPU (docs/grover.md).  Ignored for float32.
    strands : str
        ``forward`` (default) or ``both``: also score the reverse-complement window and average
        (:mod:`vareff.score.masked_lm`).
    llr : str
        ``masked`` (default): the masked-marginal LLR below.  ``wt-marginal``: substitutions read the
        log-ratio at their covering tokens from the *unmasked* reference pass (no masked pass; one
        reference pass per window serves every allele in it); indels keep the masked definition.
    """

    window: int = 1000
    stride: int = 500
    min_flank: int = 100
    max_allele: int = 200
    precision: str = "bf16"
    strands: str = "forward"
    llr: str = "masked"

    @staticmethod
    def _convert(k, v, key):
        if k == "llr":
            if v not in LLR_DEFINITIONS:
                raise ConfigError(f"GROVER option llr={v!r} is not known", f"use {' or '.join(LLR_DEFINITIONS)}")
            return v
        if k == "precision":
            if v not in _PRECISIONS:
                raise ConfigError(f"GROVER option precision={v!r} is not known", "use bf16 or bf16-delta")
            return v
        try:
            return int(v)
        except (TypeError, ValueError):
            raise ConfigError(f"GROVER option {key}={v!r} is not an integer") from None

    @classmethod
    def from_mapping(cls, options: dict | None) -> "GroverOptions":
        o = parse_options(cls, options, ("grover.", "grover_", "grover-"), "GROVER")
        if o.window < 2 * o.min_flank + 1 or o.stride < 1 or o.max_allele < 1 or o.min_flank < 0:
            raise ConfigError(
                f"GROVER options window={o.window}, stride={o.stride}, min_flank={o.min_flank}, max_allele={o.max_allele} are inconsistent",
                "need window > 2*min_flank, stride >= 1, max_allele >= 1",
            )
        return o


# --------------------------------------------------------------------------- pure helpers


def nucleotide_indicator(token_strings: list[str | None]) -> torch.Tensor:
    """(V, Lmax, 4) float32: 1 where token v is a nucleotide token with base c at offset o."""
    lmax = max((len(s) for s in token_strings if s), default=1)
    ind = np.zeros((len(token_strings), lmax, 4), dtype=np.float32)
    col = {b: i for i, b in enumerate(_BASES)}
    for v, s in enumerate(token_strings):
        if not s or "N" in s:
            continue
        for o, ch in enumerate(s):
            ind[v, o, col[ch]] = 1.0
    return torch.from_numpy(ind)


def base_marginals(logprobs: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
    """Per-slot, per-offset base distributions ``q`` (n, Lmax, 4) float64 from slot log-probs (n, V).

    ``q[k, o, c] = sum_{v: len(v)>o, v[o]=c} p_k(v) / sum_{v: len(v)>o} p_k(v)`` (NaN where no token reaches o).
    """
    p = logprobs.double().exp()  # (n, V)
    num = torch.einsum("nv,vlc->nlc", p, indicator.double())  # (n, Lmax, 4)
    den = num.sum(-1, keepdim=True)  # (n, Lmax, 1)
    return num / den


# --------------------------------------------------------------------------- scorer


class GroverScorer(MaskedLMScorer):
    """The GROVER backend (:class:`~vareff.score.base.Scorer`): columns ``grover_*``.

    Parameters
    ----------
    model : vareff.models.load.LoadedModel
        A loaded ``bert`` checkpoint (see :func:`vareff.models.load.load_model`).
    batch_size : int
        Sequences per forward pass; passes are sorted by token length so batches carry almost no padding.
    options : GroverOptions, optional
    """

    name = "grover"
    cost_per_allele = 0.5  # s of model time per allele (chunk cutting): ~1-3 alleles/s on 2 CPU cores
    label = "GROVER"
    symbolic_first = False  # the window is read (REF, N checks) before a symbolic ALT is refused

    def __init__(self, model, *, batch_size: int = 16, options: GroverOptions | None = None,
                 precision: str | None = None):
        tok = model.tokenizer
        if tok.mask_id is None:
            raise ConfigError(f"{tok.source} has no [MASK] token", "GROVER's masked-marginal score needs the mask token")
        super().__init__(model, batch_size=batch_size, options=options or GroverOptions(),
                         max_tokens=model.config.max_position_embeddings)
        self.indicator = nucleotide_indicator(tok.token_strings)
        self._support = self.indicator.any(0).numpy()  # (Lmax, 4): base c occurs at offset o in some token
        self.takes_n = any(s and "N" in s for s in tok.token_strings)
        self.precision = precision
        if precision == "bf16-delta" and not hasattr(model.module.layers[0].qkv, "weight_lp"):
            model.module.enable_delta(torch.bfloat16)
        self._special = [i for i in (tok.cls_id, tok.sep_id, tok.pad_id) if i is not None]

    def provenance(self) -> dict[str, str]:
        llr = "" if self.opts.llr == "masked" else f" llr={self.opts.llr}"  # default runs read as before
        return self.provenance_with(f"{self.grid_settings()} precision={self.precision} device={self.model.device}{llr}")

    # -- windows and passes ----------------------------------------------------------------------
    def place(self, pos0: int, ref_len: int, span: tuple[int, int]) -> tuple[int, int]:
        ws, we = window_for(pos0, ref_len, self.opts)
        return max(ws, span[0]), min(we, span[1])  # clipped at the contig ends

    def window_status(self, seq: str, alt: str) -> str | None:
        if not self.takes_n and ("N" in seq or "N" in alt):
            return Status.N_IN_WINDOW.value
        return None

    def plan_site(self, site: Site, er, ea, add) -> Plan:
        s, ref, alt = site.s, site.ref, site.alt
        rj, aj = add(er.ids), add(ea.ids)
        if len(ref) == len(alt):
            diff = [x for x in range(len(ref)) if ref[x] != alt[x]]
            i0, i1 = er.covering(s + diff[0], s + diff[-1] + 1)
            changes = []
            for x in diff:
                k = int(np.searchsorted(er.ends[i0:i1], s + x, side="right"))  # slot whose span holds s+x
                changes.append((k, s + x - int(er.starts[i0 + k]), ref[x], alt[x]))
            if all(self._supported(off, b) for _, off, rb, ab in changes for b in (rb, ab)):
                if self.opts.llr == "wt-marginal":  # slots of the unmasked reference pass
                    return Plan(site.row, rj, aj, rj, kind="wt", extra=[(i0 + k, *c) for k, *c in changes])
                return Plan(site.row, rj, aj, add(er.ids, i0, i1), kind="sub", extra=changes)
        # length change, or a base no token can carry at its offset: token-level LLR
        r0, r1, a0, a1 = _differing_tokens(er, ea, s, len(ref), len(alt))
        mj = add(er.ids, r0, r1)
        maj = add(ea.ids, a0, a1)
        return Plan(site.row, rj, aj, mj, maj, ref_tokens=er.ids[r0:r1], alt_tokens=ea.ids[a0:a1])

    def _supported(self, offset: int, base: str) -> bool:
        """Whether some nucleotide token of the vocabulary has ``base`` at ``offset`` (else q is 0)."""
        return offset < self._support.shape[0] and bool(self._support[offset, _BASES.index(base)])

    # -- read-out --------------------------------------------------------------------------------
    def embedding_mean(self, hidden: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        keep = torch.from_numpy(~np.isin(ids, self._special)).to(hidden.device)  # [CLS], [SEP], pads excluded
        return hidden[keep].mean(0).cpu()

    def read_unmasked(self, jb: Pass, hidden: torch.Tensor) -> None:
        """Mean embedding; a wild-type-marginal reference pass also keeps its log-probs at every token."""
        super().read_unmasked(jb, hidden)
        if jb.lp_all:
            jb.logprobs = torch.log_softmax(self.model.module.mlm_logits(hidden), dim=-1).cpu()  # (T, V)

    def llr(self, plan: Plan, jobs: list[Pass]) -> float | None:
        if plan.kind not in ("sub", "wt"):
            return self.token_llr(plan, jobs)
        m = jobs[plan.masked_ref]
        if m.derived is None:
            m.derived = base_marginals(m.logprobs, self.indicator)  # (n, Lmax, 4)
        q = m.derived
        total = 0.0
        for k, off, rb, ab in plan.extra:
            if off >= q.shape[1]:
                return None
            qa, qr = q[k, off, _BASES.index(ab)].item(), q[k, off, _BASES.index(rb)].item()
            if not (qa > 0 and qr > 0):  # no token supports the base at that offset (or NaN)
                return None
            total += math.log(qa) - math.log(qr)
        return total

    # -- running ---------------------------------------------------------------------------------
    def run_passes(self, jobs: list[Pass], plans: list[Plan]) -> None:
        for p in plans:
            if p.kind == "wt":
                jobs[p.ref_job].lp_all = True
        if self.precision == "bf16-delta":
            return self._run_delta(jobs, plans)
        return super().run_passes(jobs, plans)

    @torch.inference_mode()
    def _run_delta(self, jobs: list[Pass], plans: list[Plan]) -> None:
        """Reference windows in float32 (activations kept); passes with the same token count as their
        reference (masked passes, most SNV alt windows) as bfloat16 deltas from it; the rest in float32."""
        anchor_of: dict[int, int] = {}
        for a in plans:
            ref_ids = jobs[a.ref_job].ids
            for j in (a.masked_ref, a.alt_job):
                if j != a.ref_job and len(jobs[j].ids) == len(ref_ids):
                    anchor_of.setdefault(j, a.ref_job)
        deps: dict[int, list[int]] = {}
        for j, r in anchor_of.items():
            deps.setdefault(r, []).append(j)
        anchored = set(anchor_of)
        refs = sorted(deps, key=lambda j: len(jobs[j].ids))
        rest = sorted((j for j in range(len(jobs)) if j not in anchored and j not in deps), key=lambda j: len(jobs[j].ids))
        module = self.model.module
        group = max(1, min(self.batch_size, 8))  # captured activations: ~16 x hidden x layers floats per token
        for g0 in range(0, len(refs), group):
            rj = refs[g0:g0 + group]
            part = [jobs[j] for j in rj]
            capture: list = []
            if self.run_batch(part, capture=capture) is None:
                continue
            T = max(len(jb.ids) for jb in part)
            for row, r in enumerate(rj):
                dj = deps[r]
                anchor_ids = torch.from_numpy(np.pad(jobs[r].ids, (0, T - len(jobs[r].ids)),
                                                     constant_values=self.tok.pad_id or 0)).to(self.model.device)
                for d0 in range(0, len(dj), self.batch_size):
                    dpart = [jobs[j] for j in dj[d0:d0 + self.batch_size]]
                    ids_t, am_t = self.batch_arrays(dpart, T)
                    try:
                        hidden = module.encode_delta(ids_t, am_t, capture, row, anchor_ids)
                    except Exception as e:
                        self.fail(e, dpart)
                        continue
                    self.read_out(dpart, hidden)
            del capture
        for b0 in range(0, len(rest), self.batch_size):
            self.run_batch([jobs[j] for j in rest[b0:b0 + self.batch_size]])


def _differing_tokens(er, ea, s: int, ref_len: int, alt_len: int) -> tuple[int, int, int, int]:
    """Masked token ranges (ref [r0, r1), alt [a0, a1)) for a length-changing allele at window offset s.

    Tokens before the longest common prefix (same id and span) and after the longest common suffix
    (same id, spans shifted by the length change) stay; the rest is masked, widened to the tokens
    covering the allele in both windows.
    """
    delta = alt_len - ref_len
    nr, na = len(er.ids), len(ea.ids)
    p = 0
    while p < min(nr, na) and er.ids[p] == ea.ids[p] and er.starts[p] == ea.starts[p] and er.ends[p] == ea.ends[p]:
        p += 1
    q = 0
    while q < min(nr, na) - p:
        i, j = nr - 1 - q, na - 1 - q
        same_span = (er.starts[i] < 0 and ea.starts[j] < 0) or (
            er.starts[i] + delta == ea.starts[j] and er.ends[i] + delta == ea.ends[j])
        if er.ids[i] != ea.ids[j] or not same_span:
            break
        q += 1
    c_r0, c_r1 = er.covering(s, s + ref_len)
    c_a0, c_a1 = ea.covering(s, s + alt_len)
    start = min(p, c_r0, c_a0)
    tail = min(q, nr - c_r1, na - c_a1)
    return start, nr - tail, start, na - tail


def make_scorer(path, *, device="auto", dtype=None, batch_size: int = 16, options: dict | None = None) -> GroverScorer:
    """Build the GROVER backend for ``-m PATH`` (a local ``bert`` checkpoint directory or cached hub id).

    Parameters
    ----------
    path : str
        Checkpoint directory (config.json with ``model_type: bert``, weights, tokenizer.json).
    device : str
        ``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``.
    dtype : torch.dtype or str, optional
        ``"mixed"``: bfloat16 encoder matmuls with split hi+lo weights, float32 LayerNorm, residual
        stream and MLM head (:meth:`~vareff.models.bert.BertMaskedLM.set_mixed`).  None/``"auto"``:
        float32 on a CPU (``mixed`` measured only ~10% faster there and not within 0.05, see
        docs/grover.md 6.5), bfloat16 on CUDA.  ``float32`` is exact;
        ``bfloat16`` runs every matmul in bf16 (see option ``precision``).
    batch_size : int
        Sequences per forward pass.
    options : dict, optional
        ``window``, ``stride``, ``min_flank``, ``max_allele``, ``precision``, ``strands``, ``llr``
        (optionally prefixed ``grover.``).
    """
    from vareff.models.load import load_model, resolve_device, resolve_dtype

    opts = GroverOptions.from_mapping(options)
    dev = resolve_device(device)
    auto = dtype is None or (isinstance(dtype, str) and dtype == "auto")
    if (auto and dev.type == "cpu") or (isinstance(dtype, str) and dtype == "mixed"):
        model = load_model(path, device=dev, dtype=torch.float32)
        precision = "mixed" if dtype == "mixed" else "fp32"
        if precision == "mixed":
            model.module.set_mixed(torch.bfloat16)
    else:
        dt = resolve_dtype(dtype, dev)
        precision = {torch.float32: "fp32", torch.float16: "fp16"}.get(dt, opts.precision)
        # bf16-delta keeps float32 weights (reference passes) plus bfloat16 copies for the deltas
        model = load_model(path, device=dev, dtype=torch.float32 if precision == "bf16-delta" else dt)
    if model.family != "bert":
        raise ConfigError(f"{path} is a {model.family!r} checkpoint, not a GROVER/BERT one")
    return GroverScorer(model, batch_size=batch_size, options=opts, precision=precision)
