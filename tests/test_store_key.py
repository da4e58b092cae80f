"""The store's numeric allele keys: exact codes invert, hashed keys never give a wrong hit (collisions
forced by a 2-bit hash), and the engine hook serves exactly the stored alleles (long alleles, indels,
multi-allelic sites, several blocks and contigs, contig aliases)."""
from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vareff.store.allele_key as ak
from store_helpers import FakeScorer, info_values, random_seq, write_fasta
from vareff.score.base import AlleleBatch
from vareff.store.hook import StoreHook
from vareff.window.genome import Genome

bases = st.text("ACGT", min_size=1, max_size=16)


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(1, 3_000_000_000), ref=bases, alt=bases)
def test_exact_code_inverts(pos, ref, alt):
    key = int(ak.allele_keys(np.array([pos]), pa.array([ref]), pa.array([alt]))[0])
    assert key >> 44 == pos % (1 << 20)
    if len(ref) + len(alt) <= 17 and len(ref) <= 15 and len(alt) <= 15:
        assert ak.decode(key) == (pos % (1 << 20), ref, alt)
    else:
        assert ak.decode(key) is None  # hashed


def test_list_buffers_match_arrow_and_fall_back():
    for values in (["A", "CGT", "", "N" * 40], ["A", None, "C"], ["A", "É", "<DEL>"], [], [""], ["", ""],
                   ["A\0C", "G"], ["\0"]):  # NUL inside a value: the separator count no longer fits
        off, data = ak.list_buffers(values)
        ref_off, ref_data = ak.string_buffers(pa.array(values, pa.string()))
        np.testing.assert_array_equal(off, ref_off)
        assert bytes(data[:off[-1]]) == bytes(ref_data[:ref_off[-1]])


def _random_alleles(rng: random.Random, n: int, base: int, span: int = 2000):
    """(pos, ref, alt) rows: SNVs, multi-allelic sites, short and long indels, N and symbolic alleles."""
    out = set()
    while len(out) < n:
        p = base + rng.randrange(span)
        kind = rng.random()
        ref = rng.choice("ACGT")
        if kind < 0.3:
            for alt in "ACGT":  # a multi-allelic site
                if alt != ref:
                    out.add((p, ref, alt))
            continue
        if kind < 0.5:
            alt = ref + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 40)))  # insertion
        elif kind < 0.7:
            ref, alt = ref + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 40))), ref  # deletion
        elif kind < 0.8:
            ref, alt = "".join(rng.choice("ACGTN") for _ in range(rng.randint(1, 30))), rng.choice(["N", "*", "<DEL>"])
        else:
            alt = rng.choice([a for a in "ACGT" if a != ref])
        out.add((p, ref, alt))
    return sorted(out)


@pytest.mark.parametrize("hash_bits", [2, ak.HASH_BITS])
def test_lookup_matches_a_dict(monkeypatch, hash_bits):
    monkeypatch.setattr(ak, "HASH_BITS", hash_bits)  # 2 bits: most long alleles share a key
    rng = random.Random(hash_bits)
    stored = _random_alleles(rng, 3000, 1_000_000, span=300)  # ~4 long alleles per position
    extra = _random_alleles(random.Random(99), 3000, 1_000_000, span=300)
    # near misses: one base changed at the end of a stored allele's ALT, or the same alleles one base later
    near = [(p, r, a[:-1] + ("A" if a[-1] != "A" else "C")) for p, r, a in stored[::3]] + \
           [(p + 1, r, a) for p, r, a in stored[::5]] + [(p + (1 << 20), r, a) for p, r, a in stored[::7]]
    table = pa.table({"pos": [p for p, _, _ in stored], "ref": [r for _, r, _ in stored],
                      "alt": [a for _, _, a in stored]})
    index = ak.KeyIndex(table.column("pos").to_numpy(), table.column("ref"), table.column("alt"))
    if hash_bits == 2:
        assert len(np.unique(index.skeys)) < len(stored) - 100  # collisions did happen
    queries = stored + extra + near
    rng.shuffle(queries)
    q = ak.Queries(np.array([p for p, _, _ in queries]), pa.array([r for _, r, _ in queries]),
                   pa.array([a for _, _, a in queries]))
    from_lists = ak.Queries(np.array([p for p, _, _ in queries]), [r for _, r, _ in queries],
                            [a for _, _, a in queries])  # the hook's path: Python lists, no Arrow values
    np.testing.assert_array_equal(from_lists.keys, q.keys)
    rows = np.full(len(queries), -1, np.int64)
    index.find(q, np.arange(len(queries)), rows)
    where = {k: i for i, k in enumerate(stored)}
    expected = np.array([where.get(k, -1) for k in queries])
    np.testing.assert_array_equal(rows, expected)


def test_hook_serves_exactly_the_stored_alleles(tmp_path, monkeypatch):
    monkeypatch.setattr(ak, "HASH_BITS", 2)
    seqs = {"chr1": random_seq(1_100_000, 5), "chr2": random_seq(40_000, 6)}
    fa = write_fasta(tmp_path / "g.fa", seqs)
    rng = random.Random(3)
    rows = [("chr1", p, r, a) for p, r, a in _random_alleles(rng, 1500, 999_000)]  # spans blocks 0 and 1
    rows += [("chr1", p, r, a) for p, r, a in _random_alleles(rng, 300, 1_090_000)]
    rows += [("chr2", p, r, a) for p, r, a in _random_alleles(rng, 300, 10_000)]
    first, later = rows[::2], rows[1::2]

    def batch(rs, alias=False):
        pos = np.array([p for _, p, _, _ in rs], np.int64)
        chrom = [c[3:] if alias else c for c, _, _, _ in rs]  # "1" is chr1 in this FASTA
        ref, alt = [r for _, _, r, _ in rs], [a for _, _, _, a in rs]
        return AlleleBatch(chrom=chrom, pos1=pos, ref=ref, alt=alt, norm_pos1=pos, norm_ref=ref, norm_alt=alt,
                           variant_type=["snv"] * len(rs), status=["ok"] * len(rs))

    def score(rs, alias=False):
        sc = FakeScorer()
        hook = StoreHook(tmp_path / "store", [sc], Genome(fa))
        b = batch(rs, alias)
        res = hook.score(sc, b)
        info = info_values(res, "FAKE")  # a list, or the stored Arrow text when every allele was served
        for i, (_, p, r, a) in enumerate(rs):  # every column, fake_s (= "REF>ALT") included: no wrong row
            st_, x, k, s, inf = FakeScorer.expected(p, r, a)
            got = {n: (v[i].as_py() if hasattr(v, "to_pylist") else v[i]) for n, v in res.columns.items()}
            assert (res.status[i], got["fake_s"], got["fake_n"], info[i]) == (st_, s, k, inf)
            assert (got["fake_x"] is None) if x is None else np.float32(got["fake_x"]) == np.float32(x)
        return sc.scored, hook.counts()["fake"]

    assert score(first)[0] == len(first)  # cold
    scored, counts = score(first + later, alias=True)  # "1" resolves to chr1: the same entries
    assert scored == len(later) and counts["served"] == len(first)
    scored, counts = score(list(reversed(rows)))  # fully warm, another order
    assert scored == 0 and counts["served"] == len(rows)


def test_parquet_segments_of_earlier_writes_are_read_checked_and_compacted(tmp_path, caplog):
    import json
    import logging

    import pyarrow.parquet as pq

    from store_helpers import check_result, fake_batch
    from vareff.store import admin
    from vareff.store.segments import META_KEY, SEGMENT_GLOB

    seqs = {"chrA": random_seq(30_000, 7)}
    fa = write_fasta(tmp_path / "g.fa", seqs)
    store = tmp_path / "store"
    batches = [fake_batch(seqs, 300, s) for s in range(3)]
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    for b in batches:
        hook.score(sc, b)
    segs = sorted(store.glob(f"data/*/*/*/{SEGMENT_GLOB}"))
    assert len(segs) == 3 and all(p.suffix == ".arrow" for p in segs)
    for p in segs:  # rewrite them as the Parquet segments earlier versions wrote
        t = pa.ipc.open_file(pa.py_buffer(p.read_bytes())).read_all()
        pq.write_table(t, p.with_name(p.name.split("-")[0] + "-" + p.name.split("-")[1] + ".parquet"),
                       compression="zstd", write_page_checksum=True)
        p.unlink()
    old = sorted(store.glob(f"data/*/*/*/{SEGMENT_GLOB}"))
    assert json.loads(pq.read_schema(old[0]).metadata[META_KEY])["rows"] > 0
    old[0].write_bytes(old[0].read_bytes()[:100])  # a truncated one is reported and skipped
    caplog.set_level(logging.WARNING, "vareff")
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    for b in batches:
        check_result(b, hook.score(sc, b))
    assert str(old[0]) in caplog.text
    served = hook.counts()["fake"]["served"]
    assert 0 < served < 900 and served + sc.scored == 900
    admin.compact(store)
    segs = sorted(store.glob(f"data/*/*/*/{SEGMENT_GLOB}"))
    assert len(segs) == 1 and segs[0].suffix == ".arrow"  # merged into one IPC segment
    hook = StoreHook(store, [sc := FakeScorer()], Genome(fa))
    for b in batches:
        check_result(b, hook.score(sc, b))
    assert sc.scored == 0
