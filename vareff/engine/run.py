"""One scoring run, chunk by chunk: the orchestration behind ``vareff score`` and the API.

Chunks are runs of at most ``chunk_size`` input records, and of about a minute of estimated model
time (:data:`CHUNK_SECONDS`), that never span a 1 Mb block of one contig (:func:`iter_chunks`), a
pure function of the input: a resumed run, or a shard of whole blocks, cuts exactly the chunks an
uninterrupted single process cuts and yields the same rows.  SIGINT/SIGTERM stop a run between
chunk writes: every finished chunk is kept and ``--resume`` continues from there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vareff._version import __version__
from vareff.config import RunConfig
from vareff.errors import SCORABLE, InputError, Status
from vareff.normalize.alleles import (AlleleRows, ArrowAlleleRows, Record, split_series, split_columns,
                                      split_records)
from vareff.read.columnar import ColumnChunk, iter_column_chunks
from vareff.read.columnar import compiled as columnar_compiled
from vareff.read.vcf import Region, VcfReader, is_malformed
from vareff.score.base import InfoField, Scorer, cost_per_allele
from vareff.window.genome import ContigSlice, Genome
from vareff.engine.columns import chunk_contig, chunk_start, columnar_input
from vareff.engine.checks import NOT_PLACED, placement_hint, placement_problem, preview, warn_no_hits
from vareff.engine.progress import FilePosition, Progress, quick_record_count
from vareff.engine.records import Warnings, record_columns
from vareff.engine.signals import RunInterrupted, StopSignals
from vareff.family.engine import (chunk_samples, frequency_columns, frequency_fields, frequency_limits, record_info,
                                  sample_spec, samples_output)
from vareff.family.samples import SampleSpec
from vareff.write.parts import PartStore
from vareff.write.target import check_outputs
from vareff.write.vcf import STATUS_FIELD, prepare_header, record_lines

log = logging.getLogger("vareff")

KEY_SCHEMA = pa.schema([
    ("chrom", pa.string()), ("pos", pa.int64()), ("id", pa.string()), ("ref", pa.string()), ("alt", pa.string()),
    ("allele_index", pa.int32()), ("variant_type", pa.string()), ("status", pa.string()),
    ("norm_pos", pa.int64()), ("norm_ref", pa.string()), ("norm_alt", pa.string()),
])


@dataclass
class RunSummary:
    """What a finished run did: counts per status, throughput, outputs written."""

    records: int = 0
    alleles: int = 0
    seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    #: per evidence source (model name, ``alphamissense``, ``annotation``): alleles that got a value
    hits: dict[str, int] = field(default_factory=dict)
    #: with a score store: per model, alleles served from the store / computed / added (this process)
    store: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def alleles_per_second(self) -> float:
        return self.alleles / self.seconds if self.seconds else 0.0

    @property
    def not_placed(self) -> int:
        """Alleles that could not be placed on the FASTA (contig absent, outside a slice, REF differs)."""
        return sum(self.status_counts.get(s, 0) for s in NOT_PLACED)

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.status_counts.items(), key=lambda kv: -kv[1]))
        text = (f"{self.records} records, {self.alleles} alleles in {self.seconds:.1f} s "
                f"({self.alleles_per_second:.1f} alleles/s); status: {counts or 'none'}")
        if self.hits:
            text += "; evidence: " + ", ".join(f"{k} {v} of {self.alleles}" for k, v in self.hits.items())
        if self.not_placed:
            text += f"; {self.not_placed} not placed on the FASTA"
        if self.store:
            text += "; store: " + ", ".join(f"{m} {c['served']} served, {c['computed']} computed"
                                            for m, c in self.store.items())
        return text


def output_schema(scorers: list[Scorer], extra: pa.Schema | None = None) -> pa.Schema:
    fields = list(KEY_SCHEMA)
    for s in scorers:
        fields.append(pa.field(f"{s.name}_status", pa.string()))
        fields.extend(s.schema())
    if extra is not None:
        fields.extend(extra)
    return pa.schema(fields)


_SCORABLE = list(SCORABLE)
_EDGE, _OK = Status.NEAR_CONTIG_EDGE.value, Status.OK.value


def combine_status(input_status: list[str], model_status: list[list[str | None]]) -> tuple[list[str], list[list[str]]]:
    """Overall status per allele, and each model's own: input reason > first model reason > edge flag > ok."""
    st = np.asarray(input_status, dtype=object)
    scorable = np.isin(st, _SCORABLE)
    overall = st.copy()
    decided = ~scorable
    edge = st == _EDGE
    per_model = []
    for ms in model_status:
        m = np.asarray(ms, dtype=object)
        p = np.where(scorable & (m != None), m, st)  # noqa: E711 (element-wise)
        per_model.append(p.tolist())
        bad = ~decided & ~np.isin(p, _SCORABLE)
        overall[bad] = p[bad]
        decided |= bad
        edge |= p == _EDGE
    overall[~decided & edge] = _EDGE
    overall[~decided & ~edge] = _OK
    return overall.tolist(), per_model


def _fingerprint(cfg: RunConfig, scorers: list[Scorer]) -> str:
    return run_fingerprint(cfg, [s.provenance() for s in scorers])


def run_fingerprint(cfg: RunConfig, provenance: list[dict], extra: dict | None = None) -> str:
    """What a resumed run must share with the interrupted one: inputs, options, model provenance
    (``extra``: engine-specific settings, e.g. the distributed engine's name)."""
    st = os.stat(cfg.input) if cfg.input != "-" else None
    blob = {
        "version": __version__,
        "input": os.path.abspath(cfg.input) if cfg.input != "-" else "-",
        "input_stat": [st.st_size, int(st.st_mtime)] if st else None,
        "fasta": os.path.abspath(cfg.fasta) if cfg.fasta else None,
        "outputs": [[o.path, o.format] for o in cfg.outputs],
        "regions": cfg.regions, "contig_map": cfg.contig_map, "chunk_size": cfg.chunk_size,
        "max_allele_length": cfg.max_allele_length, "skip_malformed": cfg.skip_malformed,
        "models": provenance,
        "alphamissense": cfg.alphamissense, "annotation": cfg.annotation, "am_transcript": cfg.am_transcript,
        "annotation_transcripts": cfg.annotation_transcripts, "priority": cfg.priority,
    }
    if extra:
        blob["extra"] = extra
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


class Pipeline:
    """Normalize -> score -> (look up) one chunk of records; shared by ``score_vcf`` and ``score_variants``."""

    def __init__(self, cfg: RunConfig, scorers: list[Scorer], genome: Genome | None, lookups=None):
        self.cfg, self.scorers, self.genome = cfg, scorers, genome
        self.lookups = lookups or []
        self.max_af = frequency_limits(cfg)
        self.samples: SampleSpec | None = None  # set by attach_samples() when the VCF has genotypes to keep
        extra = frequency_fields(self.max_af) + [f for lk in self.lookups for f in lk.schema()]
        meta = {"version": __version__, "command": cfg.command, "models": [s.provenance() for s in scorers],
                "lookups": [lk.provenance() for lk in self.lookups]}
        self._meta = meta
        self._schema = output_schema(scorers, pa.schema(extra) if extra else None).with_metadata(
            {"vareff": json.dumps(meta)})
        self.warn = Warnings()
        self.store = None  # the score store hook (``--store``): lookups before, write-backs after each backend
        if cfg.store and scorers:
            from vareff.store import StoreHook

            self.store = StoreHook(cfg.store, scorers, genome, cfg.model_options, cfg.command, use=cfg.store_use)

    @property
    def schema(self) -> pa.Schema:
        """The output schema; its metadata also counts the alleles served from the store so far."""
        counts = self.store_counts()
        if not any(v for c in counts.values() for v in c.values()):
            return self._schema  # no store, or nothing scored yet (e.g. a Ray worker's describe())
        return self._schema.with_metadata({"vareff": json.dumps(dict(self._meta, store=counts))})

    def store_counts(self) -> dict[str, dict[str, int]]:
        """Per model: alleles served from the store, computed, added (empty without a store)."""
        return self.store.counts() if self.store is not None else {}

    def process(self, records: list[Record]) -> tuple[AlleleRows, pa.Table, list[dict[str, list]]]:
        """Normalize, score and look up a chunk given as :class:`Record` objects."""
        return self.process_rows(split_records(records, self.genome, self.cfg.max_allele_length))

    def process_columns(self, cols: tuple[list, ...], info: dict[str, list] | None = None
                        ) -> tuple[AlleleRows, pa.Table, list[dict[str, list]]]:
        """The same for a chunk given as (chrom, pos1, id, ref, alts, malformed) columns
        (``info``: INFO values per record of the ``--max-af`` fields)."""
        return self.process_rows(split_columns(*cols, self.genome, self.cfg.max_allele_length), info)

    def attach_samples(self, vcf_samples: list[str]) -> None:
        """Keep genotypes (``--samples``/``--ped``) of the input's samples in a samples table."""
        self.samples = sample_spec(self.cfg, vcf_samples)

    def process_rows(self, rows: AlleleRows, info: dict[str, list] | None = None
                     ) -> tuple[AlleleRows, pa.Table, list[dict[str, list]]]:
        if not self.scorers:  # no model: combine_status keeps every input status as it is
            rows, table = self._table(rows, [], [], info)
            return rows, table, []
        batch = rows.batch()
        model_status, model_cols, model_info = [], [], []
        for s in self.scorers:
            try:
                res = self.store.score(s, batch) if self.store is not None else s.score(batch, self.genome)
                model_status.append(res.status)
                model_cols.append(res.columns)
                model_info.append(res.info)
            except Exception as e:  # a backend failure must not lose the run
                log.exception("model %s failed on a chunk (%s:%s..): %s", s.name,
                              rows.chrom[0] if len(rows) else "?", rows.pos[0] if len(rows) else "?", e)
                model_status.append([Status.MODEL_ERROR.value if st in SCORABLE else None for st in batch.status])
                model_cols.append({f.name: [None] * len(rows) for f in s.schema()})
                model_info.append({})
        overall, per_model = combine_status(batch.status, model_status)
        rows, table = self._table(rows.with_status(overall), per_model, model_cols, info)
        return rows, table, model_info

    def _table(self, rows: AlleleRows, per_model: list, model_cols: list, info: dict[str, list] | None
               ) -> tuple[AlleleRows, pa.Table]:
        """The output table of a chunk's alleles (``rows`` with their overall status)."""
        if isinstance(rows, ArrowAlleleRows):  # the compiled pass's columns, as they are
            cols: dict[str, object] = {name: rows.table.column(name) for name in KEY_SCHEMA.names}
        else:
            cols = {name: rows.df.get_column(name).to_arrow() for name in KEY_SCHEMA.names}
        for s, ps, mc in zip(self.scorers, per_model, model_cols):
            cols[f"{s.name}_status"] = ps
            for f in s.schema():
                cols[f.name] = mc[f.name]
        if self.max_af:
            cols.update(frequency_columns(self.max_af, info, rows.record, rows.allele_index))
        for lk in self.lookups:
            cols.update(lk.annotate(rows, cols))
        cols = {k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v) for k, v in cols.items()}
        arrays = [c.cast(f.type) if isinstance(c, (pa.Array, pa.ChunkedArray)) else pa.array(c, type=f.type)
                  for f, c in ((f, cols[f.name]) for f in self._schema)]
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        return rows, table

    def hits(self, table: pa.Table) -> dict[str, int]:
        """Per evidence source, the alleles of a finished chunk that got a value: each model's
        scored alleles, and each lookup's own count (``hits``)."""
        out = {}
        scorable = pa.array(sorted(SCORABLE))
        for s in self.scorers:
            out[s.name] = pc.sum(pc.is_in(table.column(f"{s.name}_status"), value_set=scorable)).as_py() or 0
        for lk in self.lookups:
            if hasattr(lk, "hits"):
                out.update(lk.hits(table))
        return out

    def info_fields(self) -> list[InfoField]:
        return [STATUS_FIELD] + [f for s in self.scorers for f in s.info_fields()]

    def vcf_info(self, rows: AlleleRows, n_records: int, model_info: list[dict[str, list]]) -> list[dict[str, str | None]]:
        """Per record, INFO id -> value text (Number=A lists in ALT order)."""
        numbers = {f.id: f.number for f in self.info_fields()}
        per_rec: list[dict[str, list]] = [dict() for _ in range(n_records)]
        alt_less = [False] * n_records
        for r, a in zip(rows.record, rows.alt):
            alt_less[r] = a in (None, ".", "")
        merged = {STATUS_FIELD.id: rows.status}
        for mi in model_info:
            merged.update(mi)
        for fid, values in merged.items():
            if isinstance(values, (pa.Array, pa.ChunkedArray)):
                values = values.to_pylist()
            for i, r in enumerate(rows.record):
                per_rec[r].setdefault(fid, []).append(values[i])
        out = []
        for i, d in enumerate(per_rec):
            info = {}
            for fid, vals in d.items():
                if numbers.get(fid, "A") == "A":
                    if alt_less[i]:
                        continue  # a record without ALT has no Number=A values
                    info[fid] = None if all(v is None for v in vals) else ",".join("." if v is None else str(v) for v in vals)
                else:
                    kept = [str(v) for v in vals if v is not None]
                    info[fid] = ",".join(kept) if kept else None
            out.append(info)
        return out


@dataclass
class ChunkResult:
    """One scored chunk: its Parquet rows, its VCF text (None unless VCF output) and counts."""

    table: pa.Table
    vcf_text: str | None
    n_records: int
    n_alleles: int
    status_counts: dict[str, int]
    where: str
    hits: dict[str, int] = field(default_factory=dict)
    #: the per-(allele, sample) rows (None without a samples table) and heterozygous male X calls
    samples: pa.Table | None = None
    male_x_het: int = 0


def process_chunk(pipe: Pipeline, reader: VcfReader, chunk: list, want_vcf: bool) -> ChunkResult:
    """Normalize, score and look up one chunk of ``(variant, loc)`` items, and render its VCF
    records; shared by :func:`run` and the distributed workers so both cut identical outputs.
    For VCF output the reader's header must already hold vareff's INFO fields (``prepare_header``)."""
    if isinstance(chunk, ColumnChunk):
        return _process_column_chunk(pipe, chunk)
    cols = record_columns(chunk, reader, pipe.cfg.skip_malformed, pipe.warn)
    info = record_info(chunk, cols[5], pipe.max_af) if pipe.max_af else None
    rows, table, model_info = pipe.process_columns(cols, info)
    vcf_text = None
    if want_vcf:
        infos = pipe.vcf_info(rows, len(chunk), model_info)
        variants = [None if m else v for (v, _), m in zip(chunk, cols[5])]
        vcf_text = "".join(record_lines(variants, infos))
    samples, male_x_het = chunk_samples(pipe.samples, chunk, cols[5], rows, table) if pipe.samples else (None, 0)
    counts = rows.df.get_column("status").value_counts()
    return ChunkResult(table, vcf_text, len(chunk), len(rows), dict(zip(*counts.to_dict(as_series=False).values())),
                       f"{cols[0][-1]}:{cols[1][-1]}", pipe.hits(table), samples, male_x_het)


def _process_column_chunk(pipe: Pipeline, chunk: ColumnChunk) -> ChunkResult:
    """:func:`process_chunk` for records read as columns (no VCF output, INFO or samples needed)."""
    rows = None
    if columnar_compiled(pipe.cfg.input):  # one compiled pass (large inputs), else polars
        from vareff.normalize.kernel import split_chunk  # numba: imported by large inputs only

        rows = split_chunk(chunk, pipe.genome, pipe.cfg.max_allele_length)
    if rows is None:
        rows = split_series(chunk.chrom, chunk.pos, chunk.id, chunk.ref, chunk.alts, chunk.n_alleles, pipe.genome,
                           pipe.cfg.max_allele_length)
    rows, table, _ = pipe.process_rows(rows)
    vc = pc.value_counts(table.column("status")).to_pylist()
    return ChunkResult(table, None, len(chunk), len(rows), {d["values"]: d["counts"] for d in vc},
                       f"{chunk.chrom[-1]}:{chunk.pos[-1]}", pipe.hits(table))


#: chunks never span a block of this many bases (nor two contigs), so a genomic shard of whole
#: blocks is cut into exactly the chunks a single process cuts
BLOCK = 1_000_000

#: a chunk closes when the estimated model time of its alleles reaches this many seconds, so an
#: interrupted run loses about a minute of work at most (see :func:`vareff.score.base.cost_per_allele`)
CHUNK_SECONDS = 60.0


def record_alleles(v) -> int:
    """ALT alleles of a record (1 for a malformed one, whose fields are not read)."""
    return 1 if is_malformed(v) else max(len(v.ALT), 1)


def allele_cost(scorers: list[Scorer]) -> float:
    """Estimated model seconds per allele of a run: the sum over its backends."""
    return sum(cost_per_allele(s) for s in scorers)


def iter_chunks(items, chunk_size: int, block: int = BLOCK, allele_cost: float = 0.0,
                budget: float = CHUNK_SECONDS):
    """Group ``(variant, loc)`` items into chunks of at most ``chunk_size`` records that stay
    inside one ``block``-base bin of one contig; with ``allele_cost`` (estimated seconds per
    allele), a chunk also closes once its alleles' summed cost reaches ``budget`` seconds.
    A pure function of the records and these numbers, so resume and shards cut the same chunks."""
    chunk, key, cost = [], None, 0.0
    for item in items:
        v = item[0]
        k = (v.CHROM, v.POS // block)
        if chunk and (len(chunk) == chunk_size or k != key or cost >= budget):
            yield chunk
            chunk, cost = [], 0.0
        key = k
        chunk.append(item)
        if allele_cost:
            cost += allele_cost * record_alleles(v)
    if chunk:
        yield chunk


def make_progress(cfg: RunConfig, reader: VcfReader) -> Progress:
    """The run's progress display; its total is the index's record count (or a count of a small
    file), else the fraction of the file's bytes read; unknown for stdin and ``-r`` regions."""
    if not cfg.progress:
        return Progress(False)
    total = None
    if not cfg.regions and cfg.input != "-" and any(os.path.exists(cfg.input + e) for e in (".tbi", ".csi")):
        try:
            total = int(reader.vcf.num_records) or None
        except Exception:  # no index: fall back to the file offset
            total = None
    if total is None and not cfg.regions:
        total = quick_record_count(cfg.input)
    fraction = FilePosition(cfg.input).fraction if total is None and cfg.input != "-" else None
    return Progress(True, total=total, fraction=fraction, label="scoring")


def open_genome(cfg: RunConfig) -> Genome | None:
    if cfg.fasta is None:
        return None
    return Genome(cfg.fasta, contig_map=[ContigSlice.parse(x) for x in cfg.contig_map])


def build_scorers(cfg: RunConfig) -> list[Scorer]:
    """The run's model scorers; torch is imported only when a model is built (a lookup-only run, or
    a SpliceAI run served entirely from the store, starts in a fraction of the time)."""
    if not cfg.models:
        return []
    from vareff.score.registry import make_scorer

    scorers = [make_scorer(m, cfg) for m in cfg.models]
    if cfg.threads and "torch" in sys.modules:  # a backend that loads lazily sets its threads itself
        sys.modules["torch"].set_num_threads(cfg.threads)
    return scorers


def build_lookups(cfg: RunConfig) -> list:
    from vareff.engine.lookups import make_lookups

    return make_lookups(cfg)


def with_samples_output(cfg: RunConfig, pipe: Pipeline, vcf_samples: list[str]):
    """``cfg.outputs`` plus the samples table (docs/family.md) when the input has genotypes to keep;
    attaches the sample selection and pedigree to ``pipe``."""
    spec = samples_output(cfg, vcf_samples)
    if spec is None:
        return cfg.outputs
    check_outputs((spec,), cfg.resume)
    pipe.attach_samples(vcf_samples)
    return (*cfg.outputs, spec)


def run(cfg: RunConfig) -> RunSummary:
    """Score ``cfg.input`` into every ``cfg.outputs`` (see module doc)."""
    check_outputs(cfg.outputs, cfg.resume)
    genome = open_genome(cfg)
    scorers = build_scorers(cfg)
    pipe = Pipeline(cfg, scorers, genome, build_lookups(cfg))
    reader = VcfReader(cfg.input, regions=[Region.parse(r) for r in cfg.regions], threads=cfg.threads or 1,
                       allow_truncated=cfg.allow_truncated)
    want_vcf = any(o.format == "vcf" for o in cfg.outputs)
    header = prepare_header(reader.vcf, pipe.info_fields(), cfg.command, pipe.schema) if want_vcf else None
    outputs = with_samples_output(cfg, pipe, list(reader.vcf.samples))
    store = PartStore(outputs, _fingerprint(cfg, scorers), cfg.resume)
    store.open_streams(pipe.schema, header)
    if pipe.store is None:  # the schema is final: Parquet outputs are written as chunks come
        store.stream_parquet(pipe.schema)
    if not scorers:  # part files are written while the next chunk is read and normalized
        store.write_in_background()
    progress = make_progress(cfg, reader)
    cost = allele_cost(scorers)
    vcf_contigs: set[str] = set()
    male_x_het = [0]
    k = 0

    def flush(chunk):
        nonlocal k
        # a chunk never spans two contigs: its first well-formed record names its contig
        contig = chunk_contig(chunk)
        if contig is not None and len(vcf_contigs) < 10_000:
            vcf_contigs.add(contig)
        if k < store.chunks_done:
            progress.update(len(chunk))
            k += 1
            return
        progress.working(chunk_start(chunk))
        res = process_chunk(pipe, reader, chunk, want_vcf)
        with signals.atomic():
            hits = store.state.setdefault("hits", {})  # saved with the chunk's manifest update
            for src, n in res.hits.items():
                hits[src] = hits.get(src, 0) + n
            store.write_chunk(k, res.table, res.vcf_text, res.n_records, res.status_counts, res.samples)
            male_x_het[0] += res.male_x_het
        progress.update(res.n_records, res.n_alleles, res.where)
        k += 1

    signals = StopSignals()
    n_cols = columnar_input(cfg, reader, pipe, want_vcf)
    size = cfg.chunk_records(len(reader.vcf.samples))
    if n_cols is None:
        chunks = iter_chunks(reader, size, allele_cost=cost)
    else:  # columns while every line is vouched for, then the record-by-record path (docs/host-path.md)
        chunks = iter_column_chunks(reader, n_cols, size, BLOCK, cost, CHUNK_SECONDS,
                                    lambda items: iter_chunks(items, size, allele_cost=cost))
    try:
        with signals:
            for chunk in chunks:
                flush(chunk)
    except BaseException as e:
        store.release()  # the parts stay for --resume; the output is free for it
        if isinstance(e, RunInterrupted):
            log.warning("interrupted: %d finished chunks (%d records) are kept in %s", store.state["chunks"],
                        store.state["records"], store.dir)
        raise
    finally:
        progress.close()
        reader.close()
        for s in scorers:  # backends with side outputs (e.g. SegmentNT profiles) finish them here
            if hasattr(s, "close"):
                s.close()
    counts = {k_: int(v) for k_, v in store.state["status_counts"].items()}
    problem = placement_problem(counts, vcf_contigs, genome.contigs) if genome is not None else None
    if genome is not None:
        for key in genome.unused_map_keys(vcf_contigs):
            log.warning("--contig-map %s=...: no contig of the VCF is named %r (its contigs: %s)", key, key,
                        preview(sorted(vcf_contigs)) or "none")
    if problem and cfg.strict:
        store.release()
        shutil.rmtree(store.dir, ignore_errors=True)  # nothing worth resuming: the options must change
        raise InputError(f"--strict: {problem}", placement_hint(vcf_contigs, genome.contigs))
    store.finalize(pipe.schema, header)
    summary = RunSummary(records=int(store.state["records"]), alleles=sum(counts.values()),
                         seconds=progress.seconds, status_counts=counts,
                         outputs=tuple(o.path for o in outputs),
                         hits={k_: int(v) for k_, v in store.state.get("hits", {}).items()},
                         store=pipe.store_counts())
    if problem:
        log.warning("%s\nHint: %s", problem, placement_hint(vcf_contigs, genome.contigs))
    if male_x_het[0]:
        log.warning("%d genotype calls of males (PED sex 1) on chrX/chrY outside the pseudo-autosomal regions are "
                    "heterozygous: check the PED sexes and --build (these stay 'het', never 'hemizygous')",
                    male_x_het[0])
    warn_no_hits(summary, skip=tuple(s.name for s in scorers) if problem else ())  # models: same cause
    return summary
