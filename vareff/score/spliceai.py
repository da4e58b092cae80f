"""SpliceAI delta scores with the official definitions, computed with shared reference passes.

Per allele and per overlapping gene (as SpliceAI 1.3.1 ``get_delta_scores``):

* the reference window is ``POS ± (5000 + D)`` of the gene's strand, with bases
  outside the gene's transcript set to N; the alt window splices ALT over REF at POS;
* ``y_ref``/``y_alt`` are the 5-model mean acceptor/donor probabilities at the
  ``2D+1`` positions ``POS-D .. POS+D``;
* alt outputs are aligned to reference positions: the first ``min(len(REF),
  len(ALT))`` positions one to one; extra REF bases (net deletion) get 0; extra
  ALT bases (net insertion) are folded into the last aligned position by a max.
  For ``len(REF) == 1`` or ``len(ALT) == 1`` this is exactly SpliceAI's rule; it
  also scores MNVs and complex alleles, which the official CLI leaves as ``.``;
* ``DS_AG = max(alt - ref)`` of acceptor at its argmax (first on ties),
  ``DS_AL = max(ref - alt)``, ``DS_DG``/``DS_DL`` likewise for donor; ``DP_*`` the
  argmax offset from POS; with masking, gains at annotated exon boundaries and
  losses elsewhere are zeroed.

How the work is shared: reference outputs depend only on (contig, strand, gene
mask), so for every such key the needed ``POS ± D`` intervals of all alleles in a
chunk are merged into segments and computed once (one pass covers every allele of
a site and neighbouring sites).  Alt windows are batched by length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from vareff.encode.onehot import one_hot, reverse_complement
from vareff.errors import SCORABLE, ConfigError, Status
from vareff.lookup.gene_table import GeneTable
from vareff.models.spliceai import SpliceAIEnsemble, _StashRequest, load_spliceai
from vareff.score.base import AlleleBatch, InfoField, ScoreResult
from vareff.window.genome import Genome


NAME = "spliceai"
_INF = 1 << 62
GROUP_SPAN = 10000  # max distance between the first and last site of one shared reference pass (~2x context)
MAX_SITES = 16  # sites per shared reference pass (bounds the stored activations, ~7 MB per site)


@dataclass(frozen=True)
class SpliceAIOptions:
    distance: int = 50  # D: scores are taken within POS ± D
    mask: bool = False
    annotation: str = "grch38"
    weights: str | None = None  # folder with spliceai1..5.h5 (default: the installed wheel)
    batch_size: int = 32  # alt windows per forward pass
    keep_raw: bool = False  # keep the ref/alt probabilities of the last batch in ``SpliceAIScorer.raw``

    def __post_init__(self):
        if not 0 <= self.distance < 5000:
            raise ConfigError(f"--spliceai-distance {self.distance} is out of range", "use 0 <= D < 5000")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")


@dataclass
class RawProbabilities:
    """SpliceAI's own view of one allele in one gene: the 5-model mean probabilities over POS ± D.

    ``y_ref``/``y_alt``: (3, 2D+1) float32, rows (neither, acceptor, donor), column ``j`` is
    genomic ``POS - D + j`` (alt already aligned to reference positions, see :func:`align_alt`);
    ``ds``/``dp`` the delta scores and positions computed from them (AG, AL, DG, DL).
    """

    allele: int  # index in the batch
    gene: str
    strand: str
    distance: int
    y_ref: np.ndarray
    y_alt: np.ndarray
    ds: tuple
    dp: tuple


@dataclass
class _Task:
    allele: int
    gene: int
    key: tuple  # (chrom, strand, mask_lo1, mask_hi1)


def align_alt(y_alt: np.ndarray, center: int, ref_len: int, alt_len: int) -> np.ndarray:
    """Map alt outputs (C, n + alt_len - ref_len) onto the n reference positions (see module doc)."""
    k = min(ref_len, alt_len)
    if ref_len == alt_len:
        return y_alt
    if ref_len > alt_len:
        pad = np.zeros((y_alt.shape[0], ref_len - alt_len), y_alt.dtype)
        return np.concatenate([y_alt[:, : center + k], pad, y_alt[:, center + k:]], axis=1)
    last = center + k - 1
    folded = y_alt[:, last: center + alt_len].max(axis=1, keepdims=True)
    return np.concatenate([y_alt[:, :last], folded, y_alt[:, center + alt_len:]], axis=1)


def delta_scores(y_ref: np.ndarray, y_alt: np.ndarray, dist_boundary: int, mask: bool, D: int):
    """(DS_AG, DS_AL, DS_DG, DS_DL) float32 and (DP_AG, DP_AL, DP_DG, DP_DL) from aligned (3, 2D+1) outputs."""
    d_acc = y_alt[1] - y_ref[1]
    d_don = y_alt[2] - y_ref[2]
    i_ag, i_al = int(np.argmax(d_acc)), int(np.argmax(-d_acc))
    i_dg, i_dl = int(np.argmax(d_don)), int(np.argmax(-d_don))
    m_ag = mask and (i_ag - D == dist_boundary)
    m_al = mask and (i_al - D != dist_boundary)
    m_dg = mask and (i_dg - D == dist_boundary)
    m_dl = mask and (i_dl - D != dist_boundary)
    one = np.float32(1)
    ds = (
        d_acc[i_ag] * (one - np.float32(m_ag)),
        -d_acc[i_al] * (one - np.float32(m_al)),
        d_don[i_dg] * (one - np.float32(m_dg)),
        -d_don[i_dl] * (one - np.float32(m_dl)),
    )
    # The official code computes (y_ref - y_alt) for losses; in float32 that equals -(y_alt - y_ref) exactly.
    return tuple(np.float32(v) for v in ds), (i_ag - D, i_al - D, i_dg - D, i_dl - D)


class SpliceAIScorer:
    """The SpliceAI backend (``-m spliceai``)."""

    name = NAME
    cost_per_allele = 1.5  # s of model time per allele (chunk cutting): ~0.7 alleles/s on 2 CPU cores

    def __init__(self, options: SpliceAIOptions | None = None, *, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, model: SpliceAIEnsemble | None = None):
        self.opt = options or SpliceAIOptions()
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model if model is not None else load_spliceai(self.opt.weights, device=self.device, dtype=dtype)
        self.genes = GeneTable.open(self.opt.annotation)
        self.context = self.model.context
        #: with ``options.keep_raw``: one :class:`RawProbabilities` per (allele, gene) of the last batch
        self.raw: list[RawProbabilities] = []

    # --- Scorer protocol -------------------------------------------------------------
    def schema(self) -> pa.Schema:
        f32, i32 = pa.float32(), pa.int32()
        return pa.schema([
            ("spliceai_gene", pa.string()),
            ("spliceai_ds_ag", f32), ("spliceai_ds_al", f32), ("spliceai_ds_dg", f32), ("spliceai_ds_dl", f32),
            ("spliceai_dp_ag", i32), ("spliceai_dp_al", i32), ("spliceai_dp_dg", i32), ("spliceai_dp_dl", i32),
            ("spliceai_ds_max", f32),
            ("spliceai", pa.string()),
        ])

    def info_fields(self) -> list[InfoField]:
        return [InfoField(
            "SpliceAI",
            "SpliceAIv1.3.1 variant annotation. These include delta scores (DS) and delta positions (DP) for "
            "acceptor gain (AG), acceptor loss (AL), donor gain (DG), and donor loss (DL). "
            "Format: ALLELE|SYMBOL|DS_AG|DS_AL|DS_DG|DS_DL|DP_AG|DP_AL|DP_DG|DP_DL",
            number=".",
        )]

    def provenance(self) -> dict[str, str]:
        return {
            "model": "spliceai-10k (5-model mean, spliceai 1.3.1 weights)",
            "weights_sha256_16": ",".join(self.model.checksums),
            "annotation": self.genes.source.rsplit("/", 1)[-1],
            "distance": str(self.opt.distance),
            "mask": str(int(self.opt.mask)),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    # --- scoring ----------------------------------------------------------------------
    def score(self, batch: AlleleBatch, genome: Genome) -> ScoreResult:
        n = len(batch)
        D, ctx = self.opt.distance, self.context
        half = ctx + D  # wid // 2
        status: list[str | None] = [None] * n
        tasks: list[_Task] = []
        for i in range(n):
            if batch.status[i] not in SCORABLE:
                continue
            pos, ref = int(batch.pos1[i]), batch.ref[i]
            if len(ref) > 2 * D:
                status[i] = Status.ALLELE_TOO_LONG.value
                continue
            genes = self.genes.genes_at(batch.chrom[i], pos)
            if len(genes) == 0:
                status[i] = Status.OUTSIDE_GENE.value
                continue
            lo1, hi1 = pos - half, pos + half
            if not genome.covers(batch.chrom[i], lo1 - 1, hi1):
                status[i] = Status.NEAR_CONTIG_EDGE.value
            for g in genes:
                ts, te = int(self.genes.tx_start1[g]), int(self.genes.tx_end1[g])
                key = (batch.chrom[i], self.genes.strand[g], ts if ts > lo1 else -_INF, te if te < hi1 else _INF)
                tasks.append(_Task(i, int(g), key))

        ref_out, alt_out = self._passes(tasks, batch, genome)

        entries: list[list[str]] = [[] for _ in range(n)]
        best: list[tuple | None] = [None] * n
        self.raw = []
        for t, y_alt in zip(tasks, alt_out):
            i, pos = t.allele, int(batch.pos1[t.allele])
            y_ref = ref_out[(t.key, pos)]
            y_al = align_alt(y_alt, D, len(batch.ref[i]), len(batch.alt[i]))
            ds, dp = delta_scores(y_ref, y_al, self.genes.nearest_boundary(t.gene, pos), self.opt.mask, D)
            gene = str(self.genes.name[t.gene])
            if self.opt.keep_raw:
                self.raw.append(RawProbabilities(i, gene, t.key[1], D, y_ref, y_al, ds, dp))
            entries[i].append("{}|{}|{:.2f}|{:.2f}|{:.2f}|{:.2f}|{}|{}|{}|{}".format(batch.alt[i], gene, *ds, *dp))
            m = max(ds)
            if best[i] is None or m > best[i][0]:
                best[i] = (m, gene, ds, dp)

        cols: dict[str, list] = {f.name: [None] * n for f in self.schema()}
        for i, b in enumerate(best):
            if b is None:
                continue
            m, gene, ds, dp = b
            cols["spliceai_gene"][i] = gene
            for k, v in zip(("ag", "al", "dg", "dl"), ds):
                cols[f"spliceai_ds_{k}"][i] = float(v)
            for k, v in zip(("ag", "al", "dg", "dl"), dp):
                cols[f"spliceai_dp_{k}"][i] = v
            cols["spliceai_ds_max"][i] = float(m)
            cols["spliceai"][i] = ",".join(entries[i])
        info = {"SpliceAI": [",".join(e) if e else None for e in entries]}
        return ScoreResult(columns=cols, status=status, info=info)

    # --- model passes -----------------------------------------------------------------
    def _window(self, genome: Genome, key: tuple, lo1: int, hi1: int) -> str:
        """Reference bases of genomic [lo1, hi1] (1-based, forward strand) with the gene mask applied."""
        chrom, _, m_lo, m_hi = key
        seq = genome.fetch(chrom, lo1 - 1, hi1)
        if m_lo > lo1 or m_hi < hi1:
            a = max(0, min(len(seq), m_lo - lo1))
            b = max(0, min(len(seq), m_hi - lo1 + 1))
            seq = "N" * a + seq[a:b] + "N" * (len(seq) - b)
        return seq

    def _passes(self, tasks: list[_Task], batch: AlleleBatch, genome: Genome):
        """Reference outputs per (key, site) and alt outputs per task, averaged over the 5 models.

        Reference: the sites of one key are grouped (at most ``MAX_SITES`` within ``GROUP_SPAN``
        nt) and each group is one valid pass over its span, which also keeps the activations the
        alts will read.  Every alt is then computed from the activations it changes only
        (:meth:`SpliceAIModel.forward_cone`), batched by (REF length, ALT length).
        """
        D, ctx = self.opt.distance, self.context
        W = 2 * ctx + 2 * D + 1
        pos_of = [int(batch.pos1[t.allele]) for t in tasks]
        shape_of = [(len(batch.ref[t.allele]), len(batch.alt[t.allele])) for t in tasks]
        sites_by_key: dict[tuple, set[int]] = {}
        for t, p in zip(tasks, pos_of):
            sites_by_key.setdefault(t.key, set()).add(p)
        groups: list[tuple[tuple, list[int]]] = []
        for key, ps in sites_by_key.items():
            cur: list[int] = []
            for p in sorted(ps):
                if cur and (p - cur[0] > GROUP_SPAN or len(cur) == MAX_SITES):
                    groups.append((key, cur))
                    cur = []
                cur.append(p)
            groups.append((key, cur))
        group_of = {(key, p): g for g, (key, ps) in enumerate(groups) for p in ps}
        tasks_by_group: dict[int, list[int]] = {}
        for j, t in enumerate(tasks):
            tasks_by_group.setdefault(group_of[(t.key, pos_of[j])], []).append(j)
        seg_seq = [self._window(genome, key, ps[0] - D - ctx, ps[-1] + D + ctx) for key, ps in groups]
        by_shape: dict[tuple[int, bool], list[int]] = {}
        for g, (key, _) in enumerate(groups):
            by_shape.setdefault((len(seg_seq[g]), key[1] == "-"), []).append(g)

        ref_sum: dict[tuple, np.ndarray] = {}
        alt_sum: list[np.ndarray | None] = [None] * len(tasks)
        for member in self.model.members:
            geoms: dict[tuple[int, int, bool], object] = {}
            for (lin, rev), gs in by_shape.items():
                for s0 in range(0, len(gs), self.opt.batch_size):
                    gb = gs[s0: s0 + self.opt.batch_size]
                    # one stash request per allele shape; a row per (site, shape)
                    reqs: dict[tuple[int, int], _StashRequest] = {}
                    row_of: dict[tuple, int] = {}
                    for b, g in enumerate(gb):
                        first = groups[g][1][0]
                        for j in tasks_by_group.get(g, ()):
                            shp, p = shape_of[j], pos_of[j]
                            if shp not in reqs:
                                gk = (*shp, rev)
                                if gk not in geoms:
                                    v0 = W - (D + ctx) - shp[0] if rev else D + ctx
                                    geoms[gk] = member.cone_geometry(W, v0, *shp)
                                reqs[shp] = _StashRequest(geoms[gk], [], {})
                            if (shp, g, p) not in row_of:
                                o = p - first
                                row_of[(shp, g, p)] = len(reqs[shp].sites)
                                reqs[shp].sites.append((b, lin - W - o if rev else o))
                    seqs = [seg_seq[g] for g in gb]
                    if rev:
                        seqs = [reverse_complement(x) for x in seqs]
                    x = torch.from_numpy(one_hot(seqs)).to(self.device, self.dtype)
                    with torch.inference_mode():
                        y = member(x, stash=list(reqs.values())).float()
                    y = (y.flip(-1) if rev else y).cpu().numpy()
                    for b, g in enumerate(gb):
                        key, ps = groups[g]
                        for p in ps:
                            o = p - ps[0]
                            yr = np.ascontiguousarray(y[b, :, o: o + 2 * D + 1])
                            ref_sum[(key, p)] = yr if (key, p) not in ref_sum else ref_sum[(key, p)] + yr
                    for shp, req in reqs.items():
                        js = [j for g in gb for j in tasks_by_group.get(g, ()) if shape_of[j] == shp]
                        for a0 in range(0, len(js), self.opt.batch_size):
                            jb = js[a0: a0 + self.opt.batch_size]
                            rows = torch.tensor([row_of[(shp, group_of[(tasks[j].key, pos_of[j])], pos_of[j])]
                                                 for j in jb])
                            alts = [batch.alt[tasks[j].allele] for j in jb]
                            if rev:
                                alts = [reverse_complement(a) for a in alts]
                            xa = torch.from_numpy(one_hot(alts)).to(self.device, self.dtype)
                            ref = {m: v.index_select(0, rows.to(v.device)) for m, v in req.values.items()}
                            with torch.inference_mode():
                                ya = member.forward_cone(xa, ref, req.geom).float()
                            ya = (ya.flip(-1) if rev else ya).cpu().numpy()
                            for r, j in enumerate(jb):
                                yj = np.ascontiguousarray(ya[r])
                                alt_sum[j] = yj if alt_sum[j] is None else alt_sum[j] + yj
                    del reqs
        k = np.float32(len(self.model.members))
        return ({key: y / k for key, y in ref_sum.items()}, [y / k for y in alt_sum])


