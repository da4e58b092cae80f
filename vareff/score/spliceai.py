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
mask), so for every such key the sites of a chunk are grouped by fixed genomic tiles
of ``TILE`` nt and each tile is one reference pass (covering every allele of a site
and of its neighbours); alts are computed only in their cone of changed activations,
batched by allele shape.  Each allele's floats are independent of the batch it is
scored in (see :meth:`SpliceAIScorer._passes`), so a partly warm store run equals a
cold one bit for bit.  The weights are loaded on the first allele to score.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from vareff.encode.onehot import one_hot, reverse_complement
from vareff.errors import SCORABLE, ConfigError, Status
from vareff.lookup.gene_table import GeneTable
from vareff.models.spliceai_files import weight_checksums, weights_folder
from vareff.score.base import AlleleBatch, InfoField, ScoreResult
from vareff.score.registry import quick_device, resolve_device, resolve_dtype
from vareff.window.genome import Genome

if TYPE_CHECKING:
    import torch

    from vareff.models.spliceai import SpliceAIEnsemble


NAME = "spliceai"
_INF = 1 << 62
TILE = 256  # sites share a reference pass per fixed genomic tile of this many nt (the pass covers the whole tile)
PENDING_TILES = 8  # tiles whose reference activations are kept for batched cones (~55 MB each at D = 50)


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
    #: s of model time per allele (chunk cutting): ~0.1 s on a dense gene, ~0.4 s per isolated SNV (2 cores)
    cost_per_allele = 0.3

    def __init__(self, options: SpliceAIOptions | None = None, *, device: str = "cpu",
                 dtype: str | torch.dtype = "float32", model: SpliceAIEnsemble | None = None,
                 threads: int | None = None):
        self.opt = options or SpliceAIOptions()
        # torch is imported and the threads set only when a model runs: a run served entirely from
        # the store starts without torch
        self.device = quick_device(str(device)) or resolve_device(str(device))
        self.dtype_name = dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")
        self.threads = threads
        # the weights are loaded on the first allele to score (a run served from the store needs none)
        self._model = model
        self._weights_dir = None if model is not None else str(weights_folder(self.opt.weights))
        self.genes = GeneTable.open(self.opt.annotation)
        #: with ``options.keep_raw``: one :class:`RawProbabilities` per (allele, gene) of the last batch
        self.raw: list[RawProbabilities] = []

    lazy_weights = True  # ``model`` loads the weights on first use (store key code must not touch it)

    @functools.cached_property
    def dtype(self) -> torch.dtype:
        return resolve_dtype(self.dtype_name)

    @property
    def model(self) -> SpliceAIEnsemble:
        if self._model is None:
            import torch

            from vareff.models.spliceai import load_spliceai

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = load_spliceai(self._weights_dir, device=self.device, dtype=self.dtype)
        return self._model

    @property
    def weights_loaded(self) -> bool:
        return self._model is not None

    @property
    def context(self) -> int:
        return self.model.context

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
            "weights_sha256_16": ",".join(self._model.checksums if self._model is not None
                                          else weight_checksums(self._weights_dir)),
            "annotation": self.genes.source.rsplit("/", 1)[-1],
            "distance": str(self.opt.distance),
            "mask": str(int(self.opt.mask)),
            "dtype": self.dtype_name,
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

        Reference: the sites of one key are grouped by fixed genomic tiles of ``TILE`` nt, and each
        tile is one valid pass over the whole tile whose activations are kept whole (no copies).
        Every alt is then computed from the activations it changes only
        (:meth:`SpliceAIModel.forward_cone`), reading the reference values of its tile's pass by
        offset; cones of the same allele shape are batched across the sites of up to
        ``PENDING_TILES`` neighbouring tiles (``batch_size`` rows per call).

        Every float is independent of the other alleles of the batch: a site's reference pass is
        its tile's (same input, same shape, batch 1, whichever sites are present) and an alt's
        cone runs in a batch whose row count is a multiple of the thread count (and at least 2):
        oneDNN then gives each thread whole rows, while a batch that does not divide evenly is
        split along positions and sums some outputs in another order (measured: 3 rows vs 2, 4, 6).
        """
        import torch

        D, ctx = self.opt.distance, self.context
        W = 2 * ctx + 2 * D + 1
        pos_of = [int(batch.pos1[t.allele]) for t in tasks]
        tasks_by_tile: dict[tuple, list[int]] = {}
        for j, (t, p) in enumerate(zip(tasks, pos_of)):
            tasks_by_tile.setdefault((t.key, (p - 1) // TILE * TILE + 1), []).append(j)
        tiles = sorted(tasks_by_tile, key=lambda kl: (kl[0][1] == "-", kl[1], kl[0]))
        seqs: dict[tuple, str] = {}

        ref_sum: dict[tuple, np.ndarray] = {}
        alt_sum: list[np.ndarray | None] = [None] * len(tasks)
        for member in self.model.members:
            pending: list[tuple[tuple, dict]] = []  # tiles whose alts await their cones, with their activations
            for g, (key, lo) in enumerate(tiles):
                rev = key[1] == "-"
                if (key, lo) not in seqs:
                    seq = self._window(genome, key, lo - D - ctx, lo + TILE - 1 + D + ctx)
                    seqs[(key, lo)] = reverse_complement(seq) if rev else seq
                x = torch.from_numpy(one_hot([seqs[(key, lo)]])).to(self.device, self.dtype)
                kept: dict[str, torch.Tensor] = {}
                with torch.inference_mode():
                    y = member(x, kept=kept).float()
                y = (y.flip(-1) if rev else y).cpu().numpy()
                for p in dict.fromkeys(pos_of[j] for j in tasks_by_tile[(key, lo)]):
                    yr = np.ascontiguousarray(y[0, :, p - lo: p - lo + 2 * D + 1])
                    ref_sum[(key, p)] = yr if (key, p) not in ref_sum else ref_sum[(key, p)] + yr
                pending.append(((key, lo), kept))
                if len(pending) >= PENDING_TILES or g + 1 == len(tiles) or (tiles[g + 1][0][1] == "-") != rev:
                    self._cones(member, pending, rev, W, tasks, tasks_by_tile, pos_of, batch, alt_sum)
                    pending = []
        k = np.float32(len(self.model.members))
        return ({key: y / k for key, y in ref_sum.items()}, [y / k for y in alt_sum])

    def _cones(self, member, pending, rev, W, tasks, tasks_by_tile, pos_of, batch, alt_sum):
        """Alt outputs of the tasks of the ``pending`` tiles (one strand), added to ``alt_sum``.

        ``pending``: ((key, first position of the tile), kept reference activations of its pass).
        """
        import torch

        D, ctx = self.opt.distance, self.context
        lin = W + TILE - 1
        rows_by_shape: dict[tuple[int, int], list[tuple[int, dict, int]]] = {}
        same: dict[tuple, list[int]] = {}  # one cone per (key, site, REF, ALT): genes sharing a key share it
        for (key, lo), kept in pending:
            for j in tasks_by_tile[(key, lo)]:
                a = tasks[j].allele
                twins = same.setdefault((key, pos_of[j], batch.ref[a], batch.alt[a]), [])
                twins.append(j)
                if len(twins) > 1:
                    continue
                off = lin - W - (pos_of[j] - lo) if rev else pos_of[j] - lo
                rows_by_shape.setdefault((len(batch.ref[a]), len(batch.alt[a])), []).append((j, kept, off))
        step = max(2, torch.get_num_threads())
        for shp, rows in rows_by_shape.items():
            v0 = W - (D + ctx) - shp[0] if rev else D + ctx
            geom = member.cone_geometry(W, v0, *shp)
            for a0 in range(0, len(rows), self.opt.batch_size):
                part = rows[a0: a0 + self.opt.batch_size]
                n_real = len(part)
                part = part + part[-1:] * (-n_real % step)  # padding rows: repeats, discarded
                alts = [batch.alt[tasks[j].allele] for j, _, _ in part]
                if rev:
                    alts = [reverse_complement(a) for a in alts]
                xa = torch.from_numpy(one_hot(alts)).to(self.device, self.dtype)
                with torch.inference_mode():
                    ya = member.forward_cone(xa, [(kept, off) for _, kept, off in part], geom).float()
                ya = (ya.flip(-1) if rev else ya).cpu().numpy()
                for r, (j0, _, _) in enumerate(part[:n_real]):
                    yj = np.ascontiguousarray(ya[r])
                    a = tasks[j0].allele
                    for j in same[(tasks[j0].key, pos_of[j0], batch.ref[a], batch.alt[a])]:
                        alt_sum[j] = yj if alt_sum[j] is None else alt_sum[j] + yj
