"""Masked-language-model scorers (GROVER, NT, ...): passes, read-out and the four ``<name>_*`` columns.

On top of :class:`~vareff.score.lm.WindowedScorer` this adds what every masked LM backend shares:

* **passes** (:class:`Pass`): token ids with an optional masked token range; a :class:`PassSet`
  runs identical inputs once.  A site's :class:`Plan` names its passes: the unmasked reference and
  alt windows (embeddings), the masked reference window and, when the tokens differ in number or
  frame, the masked alt window.  The subclass decides the plan (:meth:`MaskedLMScorer.plan_site`):
  which tokens cover the allele and how they are scored.
* **running**: length-sorted, right-padded batches; masked passes read out the log-probabilities
  at their masked slots, unmasked passes the mean final embedding (:meth:`MaskedLMScorer.embedding_mean`);
  finished passes go to an LRU cache keyed by their input (``cache_size`` passes, 0: none).
* **columns**: ``<name>_llr`` (subclass: :meth:`MaskedLMScorer.llr`, default the token-level
  log-likelihood ratio), ``<name>_embedding_distance`` (cosine), ``<name>_embedding_l2`` and
  ``<name>_masked_tokens``; INFO ``<NAME>_LLR`` and ``<NAME>_EMB``.
* **strands=both**: llr, embedding distance and l2 are the means of the two strands' values;
  ``masked_tokens`` is the sum (the tokens behind the mean LLR); a null on either strand gives null.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch

from vareff.errors import Status
from vareff.score.base import AlleleBatch, InfoField, ScoreResult
from vareff.score.lm import LRU, Site, WindowedScorer, length_batches

log = logging.getLogger(__name__)

__all__ = ["Pass", "PassSet", "Plan", "MaskedLMScorer"]


@dataclass
class Pass:
    """One forward pass: token ids, the masked token range, and its read-out once run."""

    ids: np.ndarray
    mask_from: int = 0  # masked token range [mask_from, mask_to); empty: unmasked pass
    mask_to: int = 0
    logprobs: torch.Tensor | None = None  # (n_masked, V) log-softmax at the masked slots
    mean: torch.Tensor | None = None  # (C,) mean final embedding (unmasked passes)
    failed: bool = False
    derived: Any = None  # a subclass's read-out computed on first use (GROVER: base marginals)
    lp_all: bool = False  # unmasked pass that also keeps log-probs at every token (wild-type marginal)

    @property
    def n_masked(self) -> int:
        return self.mask_to - self.mask_from

    def key(self) -> tuple:
        return (self.mask_from, self.mask_to, self.ids.tobytes(), self.lp_all)


class PassSet(list):
    """The distinct passes of a chunk, in order of first use; :meth:`add` returns a pass's index."""

    def __init__(self, mask_id: int):
        super().__init__()
        self.mask_id = mask_id
        self._index: dict[tuple, int] = {}

    def add(self, ids: np.ndarray, a: int = 0, b: int = 0) -> int:
        """Index of the pass running ``ids`` with tokens ``[a, b)`` masked (identical inputs run once)."""
        if b > a:
            ids = ids.copy()
            ids[a:b] = self.mask_id
        key = (a, b, ids.tobytes())
        j = self._index.get(key)
        if j is None:
            j = self._index[key] = len(self)
            self.append(Pass(ids=ids, mask_from=a, mask_to=b))
        return j


@dataclass
class Plan:
    """What one site needs: its passes (indices into the :class:`PassSet`) and how to read its LLR."""

    row: int
    ref_job: int  # unmasked ref window
    alt_job: int  # unmasked alt window
    masked_ref: int
    masked_alt: int = -1  # masked alt window (token-level LLR with its own tokens)
    ref_tokens: np.ndarray | None = None  # token ids scored in the masked ref slots
    alt_tokens: np.ndarray | None = None  # token ids scored (in the masked alt slots, else the masked ref slots)
    kind: str = "token"
    extra: Any = field(default=None)  # a subclass's per-site read-out recipe (GROVER: changed bases)

    def jobs(self) -> tuple[int, ...]:
        return tuple(j for j in (self.ref_job, self.alt_job, self.masked_ref, self.masked_alt) if j >= 0)


class MaskedLMScorer(WindowedScorer):
    """Base of the masked-LM backends; subclasses add tokenization and the covering tokens.

    Subclass hooks: :meth:`encode` (windows -> :class:`~vareff.encode.bpe.Encoded`),
    :meth:`plan_site`, optionally :meth:`llr`, :meth:`embedding_mean`, :meth:`run_passes`; class
    attributes ``llr_info`` / ``emb_info`` (INFO descriptions).
    """

    title = ""  # model name in INFO descriptions (default: ``label``)
    llr_info = "masked-marginal log-likelihood ratio alt vs ref (natural log)"
    emb_info = "cosine distance between mean final embeddings of ref and alt windows"

    def __init__(self, model, *, batch_size: int, options, cache_size: int = 0, max_tokens: int | None = None):
        self.model, self.tok = model, model.tokenizer
        self.batch_size = max(1, int(batch_size))
        self.opts = options
        self.max_tokens = max_tokens
        self.cache = LRU(cache_size)  # pass input -> (logprobs, mean), reused across chunks
        self.stats = {"alleles": 0, "passes": 0, "cached": 0, "tokens": 0, "padded_tokens": 0}

    # -- columns ---------------------------------------------------------------------------------
    @property
    def columns(self) -> tuple[tuple[str, pa.DataType], ...]:
        n = self.name
        return ((f"{n}_llr", pa.float64()), (f"{n}_embedding_distance", pa.float64()),
                (f"{n}_embedding_l2", pa.float64()), (f"{n}_masked_tokens", pa.int32()))

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t, nullable=True) for n, t in self.columns])

    def info_fields(self) -> list[InfoField]:
        u, t = self.name.upper(), self.title or self.label
        return [InfoField(f"{u}_LLR", f"{t} {self.llr_info}", "Float"),
                InfoField(f"{u}_EMB", f"{t} {self.emb_info}", "Float")]

    def result(self, n: int, values: list, status: list) -> ScoreResult:
        names = [c for c, _ in self.columns]
        cols = {c: [None] * n for c in names}
        for row, v in enumerate(values):
            if v is not None:
                for c, x in zip(names, v):
                    cols[c][row] = x
        self.stats["alleles"] += sum(v is not None for v in values)
        u = self.name.upper()
        info = {f"{u}_LLR": [None if v is None else f"{v:.4f}" for v in cols[names[0]]],
                f"{u}_EMB": [None if v is None else f"{v:.4g}" for v in cols[names[1]]]}
        return ScoreResult(columns={c: pa.array(cols[c], type=t) for c, t in self.columns}, status=status, info=info)

    def merge_strands(self, forward, reverse):
        """Mean of llr, embedding distance and l2 (null if either is null); masked tokens summed."""
        llr = None if forward[0] is None or reverse[0] is None else (forward[0] + reverse[0]) / 2
        return (llr, (forward[1] + reverse[1]) / 2, (forward[2] + reverse[2]) / 2, forward[3] + reverse[3])

    # -- subclass hooks --------------------------------------------------------------------------
    def encode(self, seqs: list[str]) -> list:
        """Tokenize distinct windows (one :class:`~vareff.encode.bpe.Encoded` each)."""
        return self.tok.encode(seqs)

    def plan_site(self, site: Site, er, ea, add: Callable[..., int]) -> Plan | str:
        """The passes of one site (``add(ids, a, b)`` registers a pass), or a status."""
        raise NotImplementedError

    def llr(self, plan: Plan, jobs: list[Pass]) -> float | None:
        return self.token_llr(plan, jobs)

    def embedding_mean(self, hidden: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        """Mean final embedding (C,) of one unmasked pass (``hidden`` (T, C) without padding)."""
        return hidden[1:].mean(0).float().cpu()  # <cls> excluded

    def read_unmasked(self, jb: Pass, hidden: torch.Tensor) -> None:
        """Read-out of an unmasked pass (``hidden`` (T, C) without padding): the mean embedding.

        A wild-type-marginal LLR (log-ratios at the variant's tokens of the unmasked reference pass)
        overrides this to also keep ``log_softmax(self.model.module.mlm_logits(hidden))`` at the
        slots its plans name, and :meth:`plan_site` / :meth:`llr` to use them instead of a masked pass.
        """
        jb.mean = self.embedding_mean(hidden, jb.ids)

    # -- planning --------------------------------------------------------------------------------
    def score_sites(self, sites: list[Site], batch: AlleleBatch) -> list:
        if not sites:
            return []
        refs = list({st.seq: None for st in sites})
        alts = list({st.alt_seq: None for st in sites})
        encs = self.encode(refs + alts)
        ref_enc, alt_enc = dict(zip(refs, encs[:len(refs)])), dict(zip(alts, encs[len(refs):]))
        jobs = PassSet(self.tok.mask_id)
        plans: list[Plan | str] = []
        for st in sites:
            er, ea = ref_enc[st.seq], alt_enc[st.alt_seq]
            if self.max_tokens is not None and max(len(er), len(ea)) > self.max_tokens:
                log.warning("%s window %s:%d-%d has %d tokens > the model's %d positions; lower the window option",
                            self.label, st.key[0], st.key[1] + 1, st.key[2], max(len(er), len(ea)), self.max_tokens)
                plans.append(Status.MODEL_ERROR.value)
                continue
            plans.append(self.plan_site(st, er, ea, jobs.add))
        self.run_passes(jobs, [p for p in plans if isinstance(p, Plan)])
        return [p if isinstance(p, str) else self.read_site(p, jobs) for p in plans]

    def read_site(self, plan: Plan, jobs: list[Pass]):
        """(llr, embedding distance, embedding l2, masked tokens) of one site, or ``model_error``."""
        if any(jobs[j].failed for j in plan.jobs()):
            return Status.MODEL_ERROR.value
        e_ref, e_alt = jobs[plan.ref_job].mean.double(), jobs[plan.alt_job].mean.double()
        cos = torch.nn.functional.cosine_similarity(e_ref, e_alt, dim=0).item()
        l2 = torch.linalg.vector_norm(e_ref - e_alt).item()
        return self.llr(plan, jobs), 1.0 - cos, l2, jobs[plan.masked_ref].n_masked

    @staticmethod
    def token_llr(plan: Plan, jobs: list[Pass]) -> float:
        """``sum log p(alt tokens) - sum log p(ref tokens)`` at the masked slots."""
        mr = jobs[plan.masked_ref]
        lr = mr.logprobs.double()[torch.arange(mr.n_masked), torch.from_numpy(plan.ref_tokens)].sum().item()
        ma = mr if plan.masked_alt < 0 else jobs[plan.masked_alt]
        la = ma.logprobs.double()[torch.arange(ma.n_masked), torch.from_numpy(plan.alt_tokens)].sum().item()
        return la - lr

    # -- running ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def run_passes(self, jobs: list[Pass], plans: list[Plan]) -> None:
        """Run every pass not in the cache, in length-sorted batches."""
        todo = []
        for jb in jobs:
            hit = self.cache.get(jb.key())
            if hit is not None:
                jb.logprobs, jb.mean = hit
                self.stats["cached"] += 1
            else:
                todo.append(jb)
        for part in length_batches(todo, lambda jb: len(jb.ids), self.batch_size):
            self.run_batch(part)

    def batch_arrays(self, part: list[Pass], T: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and the attention mask (True: real token) on the model's device."""
        T = T or max(len(jb.ids) for jb in part)
        ids = np.full((len(part), T), self.tok.pad_id or 0, dtype=np.int64)
        am = np.zeros((len(part), T), dtype=bool)
        for r, jb in enumerate(part):
            ids[r, : len(jb.ids)] = jb.ids
            am[r, : len(jb.ids)] = True
        self.stats["passes"] += len(part)
        self.stats["tokens"] += int(am.sum())
        self.stats["padded_tokens"] += int(am.size)
        dev = self.model.device
        return torch.from_numpy(ids).to(dev), torch.from_numpy(am).to(dev)

    def fail(self, e: Exception, part: list[Pass]) -> None:
        """A failed batch marks its passes (their alleles get ``model_error``); the run goes on."""
        log.error("%s forward failed (%s: %s); its alleles get status model_error", self.label, type(e).__name__, e)
        for jb in part:
            jb.failed = True

    def run_batch(self, part: list[Pass], capture: list | None = None) -> torch.Tensor | None:
        """One batch of complete passes; returns the hidden states (None on failure)."""
        ids_t, am_t = self.batch_arrays(part)
        try:
            kw = {} if capture is None else {"capture": capture}
            hidden = self.model.module.encode(ids_t, am_t, **kw)  # (B, T, C) float32
        except Exception as e:
            self.fail(e, part)
            return None
        self.read_out(part, hidden)
        return hidden

    def read_out(self, part: list[Pass], hidden: torch.Tensor) -> None:
        """Unmasked passes: mean embedding; masked passes: log-probs at the masked slots; then cache them."""
        module, dev = self.model.module, self.model.device
        sel_rows, sel_pos, owners = [], [], []
        for r, jb in enumerate(part):
            if jb.n_masked:
                sel_rows += [r] * jb.n_masked
                sel_pos += list(range(jb.mask_from, jb.mask_to))
                owners.append(jb)
            else:
                self.read_unmasked(jb, hidden[r, : len(jb.ids)])
        if sel_rows:
            rows = hidden[torch.tensor(sel_rows, device=dev), torch.tensor(sel_pos, device=dev)]  # (N, C)
            lp = torch.log_softmax(module.mlm_logits(rows), dim=-1).cpu()  # (N, V)
            k = 0
            for jb in owners:
                jb.logprobs = lp[k:k + jb.n_masked]
                k += jb.n_masked
        for jb in part:
            self.cache.put(jb.key(), (jb.logprobs, jb.mean))
