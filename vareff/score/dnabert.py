"""DNABERT (v1) backend: ``-m DIR`` with ``model_type: bert`` and a k-mer ``vocab.txt`` (``zhihan1996/DNA_bert_6``).

DNABERT is a plain BERT masked LM over overlapping k-mers (stride 1,
:mod:`vareff.encode.kmer_overlap`); the network is :mod:`vareff.models.bert`.  Definitions (window
offsets 0-based; an allele is its trimmed form):

Window
    GROVER's grid rule (:func:`vareff.score.lm.window_for`): ``window`` nt (default 500: 495
    6-mers + ``[CLS]``/``[SEP]``, within the 512 positions) on a grid of step ``stride`` (250),
    centred when a flank would drop below ``min_flank`` (50); clipped at the contig ends.  The alt
    window is the reference window with the allele applied.

``dnabert_llr``
    Substitutions (SNV, MNV): every reference k-mer that contains a changed base is masked (k
    tokens for an SNV: no unmasked token then holds the base) in one pass shared by all alts of
    the site; ``llr = sum over masked slots t of log p_t(alt k-mer) - log p_t(ref k-mer)``, the
    alt k-mer being the alt window's token at the same slot.  Indels: the k-mers covering the
    allele are masked in the ref window and in the alt window (its own tokens) and
    ``llr = sum log p(alt k-mers | alt masked) - sum log p(ref k-mers | ref masked)``.
``dnabert_embedding_distance`` / ``dnabert_embedding_l2``
    Cosine / Euclidean distance between the mean final embeddings (``[CLS]``, ``[SEP]`` excluded)
    of the unmasked ref and alt windows.
``dnabert_masked_tokens``: reference k-mers masked for ``dnabert_llr``.

Windows with N get ``n_in_window`` (a k-mer holding N is ``[UNK]``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vareff.errors import ConfigError, Status
from vareff.score.lm import Site, parse_options, window_for
from vareff.score.masked_lm import MaskedLMScorer, Plan

__all__ = ["DNABERTOptions", "DNABERTScorer", "make_scorer"]


@dataclass(frozen=True)
class DNABERTOptions:
    """Settings of the DNABERT backend (``dnabert.<name>`` in ``model_options``).

    Parameters
    ----------
    window, stride, min_flank : int
        Window length, grid step and minimum flank in nt (defaults 500, 250, 50).
    max_allele : int
        Longer ref/alt alleles get ``allele_too_long`` (default 100).
    strands : str
        ``forward`` (default) or ``both`` (docs/strands.md).
    """

    window: int = 500
    stride: int = 250
    min_flank: int = 50
    max_allele: int = 100
    strands: str = "forward"

    @classmethod
    def from_mapping(cls, options: dict | None) -> "DNABERTOptions":
        o = parse_options(cls, options, ("dnabert.", "dnabert_", "dnabert-"), "DNABERT")
        if o.window < 2 * o.min_flank + 1 or o.stride < 1 or o.max_allele < 1 or o.min_flank < 0:
            raise ConfigError(f"DNABERT options window={o.window}, stride={o.stride}, min_flank={o.min_flank}, "
                              f"max_allele={o.max_allele} are inconsistent",
                              "need window > 2*min_flank, stride >= 1, max_allele >= 1")
        return o


class DNABERTScorer(MaskedLMScorer):
    """The DNABERT backend (:class:`~vareff.score.base.Scorer`): columns ``dnabert_*``."""

    name = "dnabert"
    cost_per_allele = 0.5  # s of model time per allele (chunk cutting): BERT-base over 512 tokens on 2 CPU cores
    label = "DNABERT"
    llr_info = "masked-marginal log-likelihood ratio alt vs ref at the k-mers covering the allele (natural log)"
    symbolic_first = False

    def __init__(self, model, *, batch_size: int = 16, options: DNABERTOptions | None = None):
        super().__init__(model, batch_size=batch_size, options=options or DNABERTOptions(),
                         max_tokens=model.config.max_position_embeddings)
        tok = model.tokenizer
        self._special = [tok.cls_id, tok.sep_id, tok.pad_id]

    def provenance(self) -> dict[str, str]:
        return self.provenance_with(f"k={self.tok.k} {self.grid_settings()} {self.dtype_device()}")

    def place(self, pos0: int, ref_len: int, span: tuple[int, int]) -> tuple[int, int]:
        ws, we = window_for(pos0, ref_len, self.opts)
        return max(ws, span[0]), min(we, span[1])

    def window_status(self, seq: str, alt: str) -> str | None:
        return Status.N_IN_WINDOW.value if "N" in seq or "N" in alt else None

    def embedding_mean(self, hidden: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        keep = torch.from_numpy(~np.isin(ids, self._special)).to(hidden.device)
        return hidden[keep].mean(0).cpu()

    def plan_site(self, site: Site, er, ea, add) -> Plan:
        s, ref, alt = site.s, site.ref, site.alt
        rj, aj = add(er.ids), add(ea.ids)
        if len(ref) == len(alt):  # same k-mer slots in both windows
            diff = [x for x in range(len(ref)) if ref[x] != alt[x]]
            t0, t1 = er.covering(s + diff[0], s + diff[-1] + 1)
            return Plan(site.row, rj, aj, add(er.ids, t0, t1), ref_tokens=er.ids[t0:t1].copy(),
                        alt_tokens=ea.ids[t0:t1].copy())
        r0, r1 = er.covering(s, s + len(ref))
        a0, a1 = ea.covering(s, s + len(alt))
        return Plan(site.row, rj, aj, add(er.ids, r0, r1), add(ea.ids, a0, a1),
                    ref_tokens=er.ids[r0:r1].copy(), alt_tokens=ea.ids[a0:a1].copy())


def make_scorer(path, *, device="auto", dtype=None, batch_size: int = 16, options: dict | None = None) -> DNABERTScorer:
    """Build the DNABERT backend for ``-m PATH`` (``model_type: bert`` with a k-mer ``vocab.txt``)."""
    from vareff.models.load import load_model

    opts = DNABERTOptions.from_mapping(options)  # validated before the weights load
    model = load_model(path, device=device, dtype=dtype)
    if model.family != "dnabert":
        raise ConfigError(f"{path} is a {model.family!r} checkpoint, not a DNABERT one",
                          "DNABERT directories hold a vocab.txt of k-mers and no tokenizer.json")
    return DNABERTScorer(model, batch_size=batch_size, options=opts)
