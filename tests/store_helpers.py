"""Helpers for the score-store tests: a tiny random FASTA, records, and a pipeline runner."""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pysam

from vareff.normalize.alleles import Record
from vareff.window.genome import Genome


def write_fasta(path: Path, contigs: dict[str, str]) -> str:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i:i + 60] + "\n")
    pysam.faidx(str(path))
    return str(path)


def random_seq(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def snv_records(chrom: str, seq: str, offset0: int, positions0, alts_per_site: int = 3) -> list[Record]:
    """SNV records at 0-based slice positions (genomic pos = offset0 + p + 1), ALTs in ACGT order."""
    out = []
    for p in positions0:
        ref = seq[p]
        alts = tuple(a for a in "ACGT" if a != ref)[:alts_per_site]
        out.append(Record(chrom=chrom, pos1=offset0 + p + 1, id=f"v{p}", ref=ref, alts=alts))
    return out


def config(fasta: str, store: str | None, **kw):
    from vareff.config import OutputSpec, RunConfig

    return RunConfig(input="-", outputs=(OutputSpec("<memory>", "parquet"),), fasta=fasta, models=(),
                     store=store, **kw)


def run_pipeline(cfg, scorers, records: list[Record], chunk: int = 1000, contig_map=None):
    """Score ``records`` with ``scorers`` through the engine's Pipeline; (table, VCF INFO dicts, counts)."""
    import pyarrow as pa

    from vareff.engine.run import Pipeline  # imports torch: not needed by the store-only helpers

    genome = Genome(cfg.fasta, contig_map=contig_map)
    pipe = Pipeline(cfg, scorers, genome)
    tables, infos = [], []
    for s in range(0, len(records), chunk):
        part = records[s:s + chunk]
        rows, table, mi = pipe.process(part)
        tables.append(table)
        infos.extend(pipe.vcf_info(rows, len(part), mi))
    return pa.concat_tables(tables), infos, pipe.store_counts(), pipe


def with_store(cfg, store):
    return replace(cfg, store=None if store is None else str(store))


class FakeScorer:
    """A deterministic backend (a pure function of the allele) for the store's safety tests."""

    name = "fake"

    def __init__(self, salt: str = "0"):
        self.salt = salt
        self.scored = 0

    def schema(self):
        import pyarrow as pa

        return pa.schema([("fake_x", pa.float32()), ("fake_n", pa.int32()), ("fake_s", pa.string())])

    def info_fields(self):
        from vareff.score.base import InfoField

        return [InfoField("FAKE", "test", number="A")]

    def provenance(self):
        return {"model": "fake", "salt": self.salt}

    @staticmethod
    def expected(pos: int, ref: str, alt: str):
        """(status, x, n, s, info) of one scorable allele."""
        if pos % 5 == 0:
            return "outside_gene", None, None, None, None
        x = ((pos * 31 + len(alt) * 7 + ord(alt[0])) % 1000) / 7.0
        return None, x, len(ref), f"{ref}>{alt}", f"{x:.3f}"

    def score(self, batch, genome):
        from vareff.errors import SCORABLE
        from vareff.score.base import ScoreResult

        n = len(batch)
        cols = {"fake_x": [None] * n, "fake_n": [None] * n, "fake_s": [None] * n}
        status, info = [None] * n, [None] * n
        for i in range(n):
            if batch.status[i] not in SCORABLE:
                continue
            self.scored += 1
            st, x, k, s, inf = self.expected(int(batch.pos1[i]), batch.ref[i], batch.alt[i])
            status[i], info[i] = st, inf
            cols["fake_x"][i], cols["fake_n"][i], cols["fake_s"][i] = x, k, s
        return ScoreResult(columns=cols, status=status, info={"FAKE": info})


def fake_batch(genome_seq: dict[str, str], n: int, seed: int, pool: int | None = None):
    """A batch of ``n`` random SNVs (drawn from a pool of ``pool`` sites per contig when given)."""
    import numpy as np

    from vareff.score.base import AlleleBatch

    rng = random.Random(seed)
    chrom, pos, ref, alt = [], [], [], []
    names = sorted(genome_seq)
    for _ in range(n):
        c = rng.choice(names)
        seq = genome_seq[c]
        p0 = rng.randrange(pool) * (len(seq) // pool) if pool else rng.randrange(len(seq))
        r = seq[p0]
        chrom.append(c), pos.append(p0 + 1), ref.append(r), alt.append(rng.choice([a for a in "ACGT" if a != r]))
    pos = np.asarray(pos, np.int64)
    return AlleleBatch(chrom=chrom, pos1=pos, ref=ref, alt=alt, norm_pos1=pos, norm_ref=list(ref), norm_alt=list(alt),
                       variant_type=["snv"] * n, status=["ok"] * n)


def info_values(res, field: str) -> list:
    """One INFO field of a ScoreResult as a list (the store serves stored text as an Arrow array)."""
    v = res.info[field]
    return v.to_pylist() if hasattr(v, "to_pylist") else list(v)


def check_result(batch, res) -> None:
    """Every allele's result equals FakeScorer.expected."""
    infos = info_values(res, "FAKE")
    for i in range(len(batch)):
        st, x, k, s, inf = FakeScorer.expected(int(batch.pos1[i]), batch.ref[i], batch.alt[i])
        got_x = res.columns["fake_x"][i]
        got_x = got_x.as_py() if hasattr(got_x, "as_py") else got_x
        assert res.status[i] == st and infos[i] == inf, (i, batch.pos1[i])
        if x is None:
            assert got_x is None
        else:
            import numpy as np

            assert np.float32(got_x) == np.float32(x)
