"""The engine's store hook: look alleles up before a backend runs, score only the misses, add them.

:meth:`StoreHook.score` stands in for ``scorer.score(batch, genome)``: every scorable allele
whose contig is in the FASTA is looked up; the hits take their stored columns, model status and
VCF INFO values; the other alleles (misses, and those the backend will not score) form a
sub-batch that the backend scores as usual, and the misses' storable results are written back
as one segment per partition.  The merged result has the same values, in the same Arrow types,
as the backend's own result for the whole batch.
"""
from __future__ import annotations

import atexit
import logging
import os
import time
import uuid
import weakref
from dataclasses import fields

import numpy as np
import pyarrow as pa

from vareff import __version__
from vareff.errors import SCORABLE, ConfigError
from vareff.score.base import AlleleBatch, ScoreResult
from vareff.store.folder import BLOCK, StoreFolder
from vareff.store.allele_key import Queries
from vareff.store.key import STORABLE_STATUS, ContigIds, config_descriptor, digest, has_side_outputs
from vareff.store.segments import info_column, segment_schema

log = logging.getLogger("vareff")


def subset(batch: AlleleBatch, idx: np.ndarray) -> AlleleBatch:
    """The alleles ``idx`` of ``batch`` as a batch of their own."""
    out = {}
    for f in fields(AlleleBatch):
        v = getattr(batch, f.name)
        out[f.name] = v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
    return AlleleBatch(**out)


def as_array(values, typ: pa.DataType) -> pa.Array:
    """A result column as the engine turns it into Arrow (``Pipeline.process_rows``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(typ) if isinstance(values, pa.Array) else pa.array(values, type=typ)


class _Backend:
    """Per scorer: its configuration id, segment schema, INFO ids and counters."""

    def __init__(self, scorer, folder: StoreFolder, model_options: dict, use=()):
        self.scorer = scorer
        self.enabled = not has_side_outputs(scorer, model_options)
        if not self.enabled:
            log.warning("score store: %s writes side outputs (e.g. --profiles) that stored alleles would skip; "
                        "it is scored without the store in this run", scorer.name)
        desc = config_descriptor(scorer, model_options)
        self.config = digest(desc)
        self.score_schema = scorer.schema()
        self.info_ids = [f.id for f in scorer.info_fields()]
        self.schema = segment_schema(self.score_schema, self.info_ids)
        self.hits = self.computed = self.added = 0
        self.read_configs = [self.config]
        self.write_error: OSError | None = None
        if self.enabled and folder.usable:
            try:
                folder.put_config(self.config, desc)
            except OSError as e:  # e.g. a read-only store: it is still read
                self.write_error = e
            _warn_other_definitions(folder, self.config, desc)
            self.read_configs += _imported(folder, use, desc, scorer)


def _imported(folder: StoreFolder, use, desc: dict, scorer) -> list[str]:
    """The ``--store-use`` configurations that apply to this backend (imported tables), checked."""
    out, known = [], folder.configs()
    for cid in use:
        other = known.get(cid)
        if other is None:
            raise ConfigError(f"--store-use {cid}: the store {str(folder.root)!r} has no such configuration",
                              "see `vareff store info`")
        if other.get("backend") != scorer.name:
            continue
        if other.get("schema") != desc["schema"]:
            raise ConfigError(f"--store-use {cid}: its columns are not those of {scorer.name}")
        prov = desc["provenance"]
        for k, v in other.get("declared", {}).items():
            if k in prov and prov[k] != v:
                raise ConfigError(f"--store-use {cid}: declared {k}={v}, this run uses {k}={prov[k]}",
                                  "run with the options the table was made with, or leave --store-use out")
        log.info("score store: %s alleles missing from this configuration are looked up in %s (%s)",
                 scorer.name, cid, other.get("imported"))
        out.append(cid)
    return out


def _warn_other_definitions(folder: StoreFolder, config: str, desc: dict) -> None:
    """Entries of the same backend and provenance under other score definitions are never mixed: say so."""
    for cid, other in folder.configs().items():
        if cid != config and other.get("backend") == desc["backend"] \
                and other.get("provenance") == desc["provenance"] and other.get("definitions") != desc["definitions"]:
            log.warning("score store %s holds %s scores under score definitions %s (this vareff: %s); they are "
                        "ignored (`vareff store prune --config %s` drops them)", folder.root, desc["backend"],
                        other.get("definitions"), desc["definitions"], cid)


def _flush_at_exit(ref) -> None:
    hook = ref()
    if hook is not None:
        hook._record_run(force=True)


class StoreHook:
    """Store lookups and write-backs for every backend of one :class:`~vareff.engine.run.Pipeline`."""

    def __init__(self, root: str | os.PathLike, scorers: list, genome, model_options: dict | None = None,
                 command: str = "", use=()):
        self.folder = StoreFolder(root)
        self.genome = genome
        self.contigs = ContigIds(genome, self.folder.root / "refs") if genome is not None else None
        self.backends = {id(s): _Backend(s, self.folder, model_options or {}, use) for s in scorers}
        self.writable = self.folder.usable
        for b in self.backends.values():
            if b.write_error is not None:
                self._stop_writing(b.write_error)
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.command = command
        self._known_contigs: set[str] = set()
        self._last_record = -1e9
        self._keyed = None  # (batch, its keys): computed once per chunk for all backends
        atexit.register(_flush_at_exit, weakref.ref(self))  # weak: a finished hook's partitions are freed

    # --- reporting ----------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Per backend: alleles served from the store, computed by the backend, added to the store."""
        return {b.scorer.name: {"served": b.hits, "computed": b.computed, "added": b.added}
                for b in self.backends.values()}

    def _record_run(self, force: bool = False) -> None:
        """Update this run's line in the store's run log (at most once a second, and at exit)."""
        now = time.monotonic()
        if not self.writable or (not force and now - self._last_record < 1.0):
            return
        self._last_record = now
        try:
            self.folder.record_run(self.run_id, {"command": self.command, "vareff": __version__,
                                                 "configs": {b.config: self.counts()[b.scorer.name]
                                                             for b in self.backends.values()}})
        except OSError as e:
            self._stop_writing(e)

    def _stop_writing(self, err: OSError) -> None:
        if self.writable:
            self.writable = False
            log.warning("score store %s: cannot write (%s); the run goes on and its outputs are complete, "
                        "but no more scores are added to the store", self.folder.root, err)

    # --- the hook -----------------------------------------------------------------------
    def _contig_id(self, chrom: str) -> str | None:
        """Store id of VCF contig ``chrom`` (resolved once per run), its descriptor written once."""
        ident = self.contigs.id_of(chrom)
        if ident is None:
            return None
        if ident[0] not in self._known_contigs:
            self._known_contigs.add(ident[0])
            if self.writable:
                try:
                    self.folder.put_contig(*ident)
                except OSError as e:
                    self._stop_writing(e)
        return ident[0]

    def _keys(self, batch: AlleleBatch):
        """Scorable alleles with a FASTA contig: their indices, contig ids and blocks, and the
        partitions to read as (contig id, block, indices) (one, in the usual chunk)."""
        n = len(batch)
        kinds = set(batch.status)
        if kinds <= SCORABLE:
            ok = np.ones(n, bool)
        else:
            st = np.asarray(batch.status, dtype=object)
            ok = np.zeros(n, bool)
            for v in kinds & SCORABLE:
                ok |= st == v
        names = set(batch.chrom)
        pos = np.asarray(batch.pos1, np.int64)
        if len(names) == 1:  # the usual chunk: one contig
            c = self._contig_id(names.pop())
            idx = np.flatnonzero(ok) if c is not None else np.zeros(0, np.int64)
            blocks = pos[idx] // BLOCK
            cids = [c] * len(idx)
            if not len(idx):
                return idx, cids, blocks, []
            if (blocks == blocks[0]).all():  # engine chunks never span a block
                return idx, cids, blocks, [(c, int(blocks[0]), idx)]
            return idx, cids, blocks, [(c, int(k), idx[blocks == k]) for k in np.unique(blocks).tolist()]
        chrom = np.asarray(batch.chrom, dtype=object)
        cid = np.full(n, None, dtype=object)
        for c in names:
            ident = self._contig_id(c)
            if ident is not None:
                cid[ok & (chrom == c)] = ident
        idx = np.flatnonzero(cid != None)  # noqa: E711 (element-wise)
        cid, blocks = cid[idx], pos[idx] // BLOCK
        groups = [(c, blk, idx[(cid == c) & (blocks == blk)]) for c in set(cid.tolist())
                  for blk in np.unique(blocks[cid == c]).tolist()]
        return idx, list(cid), blocks, groups

    def score(self, scorer, batch: AlleleBatch) -> ScoreResult:
        b = self.backends.get(id(scorer))
        if b is None or not b.enabled or not self.folder.usable or self.contigs is None:
            res = scorer.score(batch, self.genome)
            if b is not None:
                b.computed += sum(st in SCORABLE for st in batch.status)
            return res
        n = len(batch)
        if self._keyed is not None and self._keyed[0] is batch:  # the next backend on the same chunk
            cand, cids, blocks, groups, pos, q = self._keyed[1]
        else:
            cand, cids, blocks, groups = self._keys(batch)
            pos = np.asarray(batch.pos1, np.int64)
            q = Queries(pos, batch.ref, batch.alt)
            self._keyed = (batch, (cand, cids, blocks, groups, pos, q))
        hit_idx, hit_tables = [], []
        for c, blk, qidx in groups:
            self._lookup(b, c, blk, qidx, q, hit_idx, hit_tables)
        hits = np.concatenate(hit_idx) if len(hit_idx) > 1 else hit_idx[0] if hit_idx else np.zeros(0, np.int64)
        if len(hits) == n:
            miss = np.zeros(0, np.int64)
        else:
            is_hit = np.zeros(n, bool)
            is_hit[hits] = True
            miss = np.flatnonzero(~is_hit)
        res = scorer.score(subset(batch, miss), self.genome) if len(miss) else None
        b.hits += len(hits)
        b.computed += int(sum(batch.status[i] in SCORABLE for i in miss))
        if res is not None and len(cand) and self.writable:
            try:
                self._write_back(b, res, miss, cand, cids, blocks, pos, batch.ref, batch.alt)
            except OSError as e:
                self._stop_writing(e)
            except Exception as e:  # the scores are fine: never lose them over the store
                log.exception("score store: write-back failed")
                self._stop_writing(OSError(str(e)))
        self._record_run()
        if res is not None and not len(hits):
            return res
        return self._merge(b, n, hits, hit_tables, miss, res)

    def _lookup(self, b: _Backend, c: str, blk: int, qidx, q: Queries, hit_idx: list, hit_tables: list) -> None:
        """Look alleles ``qidx`` (one contig and block) up: this configuration first, then --store-use tables."""
        for config in b.read_configs:
            part = self.folder.partition(config, c, blk)
            part.refresh()
            run_of, row_of = part.find(q, qidx)
            if len(part.runs) == 1:
                found = row_of >= 0
                if found.any():
                    hit_idx.append(qidx[found] if not found.all() else qidx)
                    rows = row_of[found] if not found.all() else row_of
                    hit_tables.append(part.runs[0].values(b.schema).take(pa.array(rows)))
            else:
                for r in np.unique(run_of[run_of >= 0]).tolist():
                    sel = run_of == r
                    hit_idx.append(qidx[sel])
                    hit_tables.append(part.runs[r].values(b.schema).take(pa.array(row_of[sel])))
            qidx = qidx[run_of < 0]
            if not len(qidx):
                return

    def _merge(self, b: _Backend, n: int, hits, hit_tables, miss, res: ScoreResult | None) -> ScoreResult:
        stored = pa.concat_tables(hit_tables) if len(hit_tables) > 1 else hit_tables[0] if hit_tables \
            else b.schema.empty_table()
        # position of every allele in [miss results..., stored hits...]
        if not len(miss) and (len(hits) < 2 or bool((hits[1:] > hits[:-1]).all())):
            identity, perm, take = True, None, None  # e.g. a fully warm chunk, found in order
        else:
            perm = np.empty(n, np.int64)
            perm[miss] = np.arange(len(miss))
            perm[hits] = len(miss) + np.arange(len(hits))
            identity = bool((perm == np.arange(n)).all())
            take = None if identity else pa.array(perm)
        cols = {}
        for f in b.score_schema:
            col = stored.column(f.name)
            parts = [col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()]
            if res is not None:
                parts.insert(0, as_array(res.columns[f.name], f.type))
            arr = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
            cols[f.name] = arr if identity else arr.take(take)
        st = stored.column("status")
        status = (list(res.status) if res is not None else []) + \
            ([None] * len(st) if st.null_count == len(st) else st.to_pylist())  # mostly all scored
        info_ids = list(b.info_ids) + [k for k in (res.info if res is not None else {}) if k not in b.info_ids]
        info = {}
        for k in info_ids:
            if res is None:  # all served: the stored text stays Arrow (read only for VCF output)
                col = stored.column(info_column(k))
                arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
                info[k] = arr if identity else arr.take(take)
                continue
            vals = list(res.info.get(k, [None] * len(miss)))
            vals += stored.column(info_column(k)).to_pylist() if k in b.info_ids else [None] * len(hits)
            info[k] = vals if identity else [vals[p] for p in perm]
        return ScoreResult(columns=cols, status=status if identity else [status[p] for p in perm], info=info)

    def _write_back(self, b: _Backend, res: ScoreResult, miss, cand, cids, blocks, pos, ref, alt) -> None:
        """Add the misses' storable results (one segment per partition); a failing write only stops writing."""
        if not self.writable:
            return
        ref, alt = np.asarray(ref, dtype=object), np.asarray(alt, dtype=object)
        where = {int(i): j for j, i in enumerate(cand)}
        keep, seen = [], set()
        for m, i in enumerate(miss):
            j = where.get(int(i))
            if j is None or res.status[m] not in STORABLE_STATUS:
                continue
            k = (cids[j], int(pos[i]), ref[i], alt[i])
            if k in seen:
                continue
            seen.add(k)
            keep.append((m, j))
        if not keep:
            return
        ms = np.asarray([m for m, _ in keep])
        cols = {"pos": pa.array(pos[miss[ms]], pa.int64()), "ref": pa.array(list(ref[miss[ms]]), pa.string()),
                "alt": pa.array(list(alt[miss[ms]]), pa.string()),
                "status": pa.array([res.status[m] for m in ms], pa.string())}
        for f in b.score_schema:
            cols[f.name] = as_array(res.columns[f.name], f.type).take(pa.array(ms))
        for k in b.info_ids:
            vals = res.info.get(k)
            cols[info_column(k)] = pa.array([None if vals is None else vals[m] for m in ms], pa.string())
        table = pa.Table.from_pydict(cols, schema=b.schema)
        by_part: dict[tuple, list[int]] = {}
        for r, (_, j) in enumerate(keep):
            by_part.setdefault((cids[j], int(blocks[j])), []).append(r)
        try:
            for (c, blk), rows in by_part.items():
                self.folder.add(b.config, c, blk, table.take(pa.array(rows)))
                b.added += len(rows)
        except OSError as e:
            self._stop_writing(e)
