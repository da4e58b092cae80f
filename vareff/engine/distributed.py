"""Scale-out on Ray: genomic shards scored by actors that hold the models, merged into the
single-process output (``vareff score --engine ray``; design in docs/scale-out.md).

The unit of work is the chunk of :func:`vareff.engine.run.iter_chunks`, a pure function of the
input.  The driver pre-scans the input once (host path only: record positions, no parsing of
REF/ALT, no FASTA, no model) to learn every chunk, numbers them as a single process does, and
groups runs of consecutive chunks into shards balanced by record count:

* indexed input (``.tbi``/``.csi``, no ``-r``): a shard is a list of :class:`Segment`\\ s, one per
  contig it touches, each a range of whole 1 Mb blocks that the worker reads through the index
  (keeping records whose POS lies in the range, since the index also returns records that only
  overlap it), then ``skip``/``take`` records when the shard starts or ends inside a block;
* unindexed input, or ``-r`` regions: a shard is a range of record numbers of the stream the
  single process reads; the worker skips to it (reading, not scoring, the records before it).

A worker (:class:`ShardWorker`, one Ray actor per GPU, else per ``--threads`` CPUs) builds the
scorers once and scores its shards' chunks exactly as :func:`~vareff.engine.run.run` does
(:func:`~vareff.engine.run.process_chunk`), writing each chunk's part files under its global
chunk index, then a per-chunk marker.  When every chunk has a marker the driver folds the
markers into the manifest and :meth:`~vareff.write.parts.PartStore.finalize` concatenates the
parts: the files are those of a single process, byte for byte.

Failures: a shard whose worker raises or dies is retried up to :data:`SHARD_RETRIES` times (a
dead worker is replaced); a shard that still fails is reported with its region and error
while the others finish; the run then raises :class:`ShardsFailedError` without finalizing.
``--resume`` rescores only chunks without a marker.  ``ray`` is imported here only.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vareff.config import RunConfig
from vareff.errors import ConfigError, MissingDependencyError, VareffError
from vareff.engine.progress import Progress
from vareff.engine.run import (BLOCK, Pipeline, RunSummary, allele_cost, build_lookups, build_scorers, iter_chunks,
                               open_genome, process_chunk, run_fingerprint, with_samples_output)
from vareff.read.vcf import Region, VcfReader
from vareff.family.engine import samples_output
from vareff.write.parts import PartStore, read_markers, write_marker, write_part_files
from vareff.write.target import check_outputs, is_stream
from vareff.write.target import parts_dir as parts_folder
from vareff.write.vcf import prepare_header

log = logging.getLogger("vareff")

#: a failing shard is tried at most ``1 + SHARD_RETRIES`` times
SHARD_RETRIES = 2
#: default shards per worker: small enough to balance load and bound the work a crash loses
SHARDS_PER_WORKER = 4


class ShardsFailedError(VareffError):
    """Some shards of a distributed run failed on every attempt (the others are kept for --resume)."""


def import_ray():
    """``ray``, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError(
            f"--engine ray needs the Ray package, which is not installed ({e})",
            "pip install 'vareff[ray]' (or pip install 'ray[default]'); the default --engine local needs no Ray",
        ) from None
    return ray


@dataclass(frozen=True)
class Segment:
    """Records of ``chrom`` with ``lo_pos1 <= POS < hi_pos1`` (whole blocks), read through the
    index in file order; the first ``skip`` of them belong to the previous shard, then ``take``."""

    chrom: str
    lo_pos1: int
    hi_pos1: int
    skip: int
    take: int

    def query(self) -> str:
        return f"{self.chrom}:{max(self.lo_pos1, 1)}-{self.hi_pos1 - 1}"


@dataclass(frozen=True)
class Shard:
    """Global chunks ``first_chunk .. first_chunk + n_chunks - 1``: records
    ``start_record .. start_record + n_records - 1`` of the input stream, or ``segments``."""

    index: int
    first_chunk: int
    n_chunks: int
    start_record: int
    n_records: int
    segments: tuple[Segment, ...] = ()
    where: str = ""

    def describe(self) -> str:
        return (f"shard {self.index} ({self.where}; chunks {self.first_chunk}-"
                f"{self.first_chunk + self.n_chunks - 1}, {self.n_records} records)")


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk of the single-process run, as learned by the pre-scan."""

    chrom: str
    block: int
    first_pos1: int
    last_pos1: int
    start_record: int
    n_records: int


def plan_chunks(cfg: RunConfig, cost: float = 0.0) -> list[ChunkInfo]:
    """Pre-scan: the chunks a single process cuts from ``cfg.input`` (positions only; ``cost``:
    the scorers' estimated seconds per allele, :func:`~vareff.engine.run.allele_cost`)."""
    reader = VcfReader(cfg.input, regions=[Region.parse(r) for r in cfg.regions], threads=cfg.threads or 1,
                       allow_truncated=cfg.allow_truncated)
    out, n = [], 0
    try:
        for chunk in iter_chunks(reader, cfg.chunk_records(len(reader.vcf.samples)), allele_cost=cost):
            v0, v1 = chunk[0][0], chunk[-1][0]
            out.append(ChunkInfo(v0.CHROM, v0.POS // BLOCK, v0.POS, v1.POS, n, len(chunk)))
            n += len(chunk)
    finally:
        reader.close()
    return out


def uses_index(cfg: RunConfig) -> bool:
    """Shards are read through the index when there is one and no ``-r`` (regions keep record ranges)."""
    return not cfg.regions and any(os.path.exists(cfg.input + ext) for ext in (".tbi", ".csi"))


def plan_shards(chunks: list[ChunkInfo], n_shards: int, indexed: bool) -> list[Shard]:
    """Cut the chunk list into at most ``n_shards`` runs of consecutive chunks of similar record counts."""
    if not chunks:
        return []
    total = sum(c.n_records for c in chunks)
    n_shards = min(n_shards, len(chunks))
    bounds, acc = [0], 0
    for i, c in enumerate(chunks):
        acc += c.n_records
        # close the current shard once it reaches its share of the records
        if len(bounds) < n_shards and acc >= total * len(bounds) / n_shards and i + 1 < len(chunks):
            bounds.append(i + 1)
    bounds.append(len(chunks))
    # records of each (contig, block) that lie before chunk i: the ``skip`` of a shard starting at i
    before: dict[tuple[str, int], int] = collections.Counter()
    skip_at = []
    for c in chunks:
        skip_at.append(before[(c.chrom, c.block)])
        before[(c.chrom, c.block)] += c.n_records
    shards = []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        part = chunks[a:b]
        segs = []
        if indexed:
            for i, (chrom, run) in enumerate(itertools.groupby(part, key=lambda c: c.chrom)):
                run = list(run)
                segs.append(Segment(chrom, run[0].block * BLOCK, (run[-1].block + 1) * BLOCK,
                                    skip_at[a] if i == 0 else 0, sum(c.n_records for c in run)))
        # (a malformed record's CHROM holds its whole line: show its first word)
        where = ", ".join(f"{(chrom.split() or [''])[0]}:{run[0].first_pos1}-{run[-1].last_pos1}"
                          for chrom, run in ((k, list(g)) for k, g in itertools.groupby(part, key=lambda c: c.chrom)))
        shards.append(Shard(s, a, b - a, part[0].start_record, sum(c.n_records for c in part), tuple(segs), where))
    return shards


class ShardWorker:
    """Holds the scorers once and scores whole shards into part files (a Ray actor on the cluster)."""

    def __init__(self, cfg: RunConfig, parts_dir: str, cwd: str | None = None, cpus: int | None = None):
        self.error: BaseException | None = None
        try:
            if cwd and os.path.isdir(cwd):
                os.chdir(cwd)  # relative paths mean what they meant to the driver (shared filesystem)
            if cpus and not cfg.threads:
                import torch

                torch.set_num_threads(cpus)
            self.cfg, self.parts_dir = cfg, Path(parts_dir)
            self.want_vcf = any(o.format == "vcf" for o in cfg.outputs)
            self.pipe = Pipeline(cfg, build_scorers(cfg), open_genome(cfg), build_lookups(cfg))
        except Exception as e:  # reported by describe(), so that option errors reach the user as they are
            self.error = e

    def describe(self) -> dict:
        """Model provenance, output schema and INFO fields: what the driver needs to merge."""
        if self.error is not None:
            raise self.error
        return {"provenance": [s.provenance() for s in self.pipe.scorers], "schema": self.pipe.schema,
                "info_fields": self.pipe.info_fields(), "pid": os.getpid(),
                "allele_cost": allele_cost(self.pipe.scorers)}

    def _items(self, reader: VcfReader, shard: Shard):
        if not shard.segments:
            yield from itertools.islice(iter(reader), shard.start_record, shard.start_record + shard.n_records)
            return
        for seg in shard.segments:
            q = seg.query()
            inside = ((v, (n, q)) for n, v in enumerate(reader.vcf(q), 1) if seg.lo_pos1 <= v.POS < seg.hi_pos1)
            yield from itertools.islice(inside, seg.skip, seg.skip + seg.take)

    def score_shard(self, shard: Shard) -> dict:
        """Score the chunks of ``shard`` that have no finished marker; return counts."""
        if self.error is not None:
            raise self.error
        cfg = self.cfg
        regions = [] if shard.segments else [Region.parse(r) for r in cfg.regions]
        reader = VcfReader(cfg.input, regions=regions, threads=cfg.threads or 1, allow_truncated=cfg.allow_truncated)
        self.outputs = with_samples_output(cfg, self.pipe, list(reader.vcf.samples))
        if self.want_vcf:  # registers vareff's INFO fields with this reader, so records accept them
            prepare_header(reader.vcf, self.pipe.info_fields(), cfg.command)
        done = read_markers(self.parts_dir)
        k = shard.first_chunk
        out = {"scored": 0, "reused": 0, "records": 0, "alleles": 0}
        before = self.pipe.store_counts()  # score store: what this shard served / computed
        try:
            cost = allele_cost(self.pipe.scorers)
            size = cfg.chunk_records(len(reader.vcf.samples))
            for chunk in iter_chunks(self._items(reader, shard), size, allele_cost=cost):
                if k >= shard.first_chunk + shard.n_chunks:
                    raise RuntimeError(f"{shard.describe()} has more chunks than planned: did the input change?")
                if k not in done:
                    res = process_chunk(self.pipe, reader, chunk, self.want_vcf)
                    write_part_files(self.parts_dir, self.outputs, k, res.table, res.vcf_text, res.samples)
                    write_marker(self.parts_dir, k, res.n_records, res.status_counts)
                    out["scored"] += 1
                    out["alleles"] += res.n_alleles
                else:
                    out["reused"] += 1
                out["records"] += len(chunk)
                k += 1
        finally:
            reader.close()
        out["store"] = {m: {key: v - before.get(m, {}).get(key, 0) for key, v in c.items()}
                        for m, c in self.pipe.store_counts().items()}
        if k != shard.first_chunk + shard.n_chunks:
            raise RuntimeError(f"{shard.describe()} gave {k - shard.first_chunk} chunks, planned {shard.n_chunks}: "
                               "did the input change?")
        return out

    def close(self) -> None:
        for s in getattr(getattr(self, "pipe", None), "scorers", []):
            if hasattr(s, "close"):
                s.close()


@dataclass
class DistributedSummary(RunSummary):
    """A :class:`RunSummary` plus what the distributed run did."""

    shards: int = 0
    workers: int = 0
    #: chunks scored by this run, and chunks an earlier run had finished (``--resume``)
    chunks_scored: int = 0
    chunks_reused: int = 0
    #: one line per failed attempt that was retried: shard, region, error
    retried: list[str] = field(default_factory=list)


def _worker_resources(ray, cfg: RunConfig) -> tuple[int, dict]:
    """How many workers fit, and each one's Ray resources: one per GPU, else per ``threads`` CPUs."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    cpus = cfg.threads or 1
    if gpus and not cfg.device.startswith("cpu"):
        return gpus, {"num_gpus": 1, "num_cpus": cpus}
    if res.get("CPU", 0) < cpus:  # such a worker could never be placed: the run would wait forever
        raise ConfigError(f"--threads {cpus} asks more CPUs per worker than the Ray cluster has ({res.get('CPU', 0):g})",
                          "lower --threads, or join a larger cluster with --ray-address")
    return int(res["CPU"]) // cpus, {"num_cpus": cpus}


def _cause(ray, e: BaseException) -> BaseException:
    return e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(e).__name__}: {line if len(line) <= 240 else line[:240] + '...'}"


def run_distributed(cfg: RunConfig) -> DistributedSummary:
    """Score ``cfg.input`` into ``cfg.outputs`` with Ray actors; same files as :func:`run`."""
    ray = import_ray()
    if cfg.input == "-":
        raise ConfigError("--engine ray cannot read stdin (every worker reads the input itself)",
                          "write the input to a file on a filesystem the workers share")
    if any(is_stream(o.path) for o in cfg.outputs):
        raise ConfigError("--engine ray cannot stream an output (-o -, a FIFO or a device): chunks finish out "
                          "of order", "write to a regular file, or use --engine local to stream")
    check_outputs(cfg.outputs, cfg.resume)
    if cfg.model_options.get("segmentnt.profiles"):
        raise ConfigError("--profiles is not supported with --engine ray (one file, many writers)",
                          "write profiles with --engine local, restricted with -r or --profile-alleles")
    started = False
    if not ray.is_initialized():
        kw = {} if (cfg.ray_address or os.environ.get("RAY_ADDRESS")) else {"include_dashboard": False}
        ray.init(address=cfg.ray_address, log_to_driver=True, **kw)
        started = True
    try:
        return _drive(ray, cfg)
    finally:
        if started:
            ray.shutdown()


def _drive(ray, cfg: RunConfig) -> DistributedSummary:
    indexed = uses_index(cfg)
    n_workers, resources = _worker_resources(ray, cfg)
    parts_dir = str(parts_folder(cfg.outputs[0].path))
    Worker = ray.remote(ShardWorker)

    def new_worker():
        return Worker.options(max_restarts=0, **resources).remote(cfg, parts_dir, os.getcwd(), resources["num_cpus"])

    workers = [new_worker()]  # its scorers' cost estimate cuts the chunks, as a single process does
    progress = Progress(False)  # counts time from here; the live display starts once the total is known
    try:
        try:
            cost = ray.get(workers[0].describe.remote())["allele_cost"]
        except ray.exceptions.RayTaskError as e:
            raise _cause(ray, e) from None
        chunks = plan_chunks(cfg, cost)
        shards = plan_shards(chunks, cfg.shards or SHARDS_PER_WORKER * n_workers, indexed)
        n_workers = max(1, min(n_workers, len(shards)))
        log.info("ray: %d chunks in %d shards (%s) on %d workers (%s each)", len(chunks), len(shards),
                 "through the index" if indexed else "record ranges", n_workers, resources)
        workers += [new_worker() for _ in range(n_workers - 1)]
        t0 = progress.t0
        progress = Progress(cfg.progress, total=sum(c.n_records for c in chunks), label="ray")
        progress.t0 = t0
        return _schedule(ray, cfg, chunks, shards, workers, new_worker, progress)
    finally:
        progress.close()
        for wk in workers:
            ray.kill(wk)


def _schedule(ray, cfg, chunks, shards, workers, new_worker, progress) -> DistributedSummary:
    """Open the part store (locking the outputs), send the shards to the workers (retrying
    failures), merge the parts."""
    try:
        desc = ray.get(workers[0].describe.remote())
    except ray.exceptions.RayTaskError as e:
        raise _cause(ray, e) from None
    # the fingerprint tells a ray run's markers apart from a local run's prefix manifest
    reader = VcfReader(cfg.input, allow_truncated=cfg.allow_truncated)
    sample_out = samples_output(cfg, list(reader.vcf.samples))  # the workers write its parts too
    reader.close()
    outputs = (*cfg.outputs, sample_out) if sample_out else cfg.outputs
    store = PartStore(outputs, run_fingerprint(cfg, desc["provenance"], {"engine": "ray"}), cfg.resume)
    try:
        return _score_shards(ray, cfg, chunks, shards, workers, new_worker, progress, desc, store)
    except BaseException:
        store.release()  # the parts stay for --resume; the output is free for it
        raise


def _score_shards(ray, cfg, chunks, shards, workers, new_worker, progress, desc, store) -> DistributedSummary:
    """The shards not finished yet, scored on ``workers``; then the outputs assembled from the parts."""
    n_workers = len(workers)
    header = None
    if any(o.format == "vcf" for o in cfg.outputs):
        reader = VcfReader(cfg.input, allow_truncated=cfg.allow_truncated)
        header = prepare_header(reader.vcf, desc["info_fields"], cfg.command, desc["schema"])
        reader.close()

    done = read_markers(store.dir)
    todo = collections.deque(s for s in shards
                             if any(k not in done for k in range(s.first_chunk, s.first_chunk + s.n_chunks)))
    if done:
        log.info("resuming: %d of %d chunks finished; %d of %d shards to score", len(done), len(chunks),
                 len(todo), len(shards))
    summary = DistributedSummary(shards=len(shards), workers=n_workers, chunks_reused=len(done))
    attempts: collections.Counter = collections.Counter()
    failed: dict[int, str] = {}
    running: dict = {}
    idle = list(range(n_workers))
    while todo or running:
        while idle and todo:
            w, sh = idle.pop(), todo.popleft()
            attempts[sh.index] += 1
            running[workers[w].score_shard.remote(sh)] = (w, sh)
        [ready], _ = ray.wait(list(running), num_returns=1)
        w, sh = running.pop(ready)
        try:
            out = ray.get(ready)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
            err = _cause(ray, e)
            if isinstance(e, ray.exceptions.RayActorError):
                err_text = f"worker died: {_first_line(e)}"
                ray.kill(workers[w], no_restart=True)
                workers[w] = new_worker()  # a fresh actor rebuilds the models; its shard is retried
            else:
                err_text = _first_line(err)
            if attempts[sh.index] <= SHARD_RETRIES:
                log.warning("%s failed on attempt %d (%s); retrying", sh.describe(), attempts[sh.index], err_text)
                summary.retried.append(f"{sh.describe()}: {err_text}")
                todo.append(sh)
            else:
                log.error("%s failed on attempt %d; giving up on it: %s", sh.describe(), attempts[sh.index], err_text)
                failed[sh.index] = f"{sh.describe()}: {err_text}"
            idle.append(w)
            continue
        idle.append(w)
        summary.chunks_scored += out["scored"]
        for m, c in out.get("store", {}).items():
            agg = summary.store.setdefault(m, {})
            for key, v in c.items():
                agg[key] = agg.get(key, 0) + v
        progress.update(out["records"], out["alleles"], f"{sh.describe()} done")
    for wk in workers:  # backends with side outputs finish them
        try:
            ray.get(wk.close.remote())
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError):
            pass
    if failed:
        raise ShardsFailedError(
            f"{len(failed)} of {len(shards)} shards failed after {1 + SHARD_RETRIES} attempts:\n  "
            + "\n  ".join(failed[i] for i in sorted(failed)),
            f"the other shards' chunks are kept in {str(store.dir)!r}; fix the cause and rerun the same "
            "command with --resume: only the missing chunks are scored",
        )
    store.adopt_markers(len(chunks))
    schema = desc["schema"]
    if summary.store:  # the metadata counts the alleles served from the score store
        meta = json.loads(schema.metadata[b"vareff"])
        schema = schema.with_metadata({"vareff": json.dumps(dict(meta, store=summary.store))})
    store.finalize(schema, header)
    counts = {s: int(c) for s, c in store.state["status_counts"].items()}
    summary.records = int(store.state["records"])
    summary.alleles = sum(counts.values())
    summary.status_counts = counts
    summary.seconds = progress.seconds
    summary.outputs = tuple(o.path for o in cfg.outputs)
    return summary
