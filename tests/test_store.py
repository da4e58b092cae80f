"""Score store: identical outputs without / cold / warm / partly warm for every backend, and a key
that misses whenever anything that determines a score changes (option, weights, tokenizer,
annotation, FASTA contig).  Outputs are compared as Arrow tables (values and types, bit for bit)
and as the VCF INFO text the engine renders."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

import grover_fixtures as gf
import nt_fixtures as nf
from engine_helpers import tubb8_paths
from store_helpers import config, random_seq, run_pipeline, snv_records, with_store, write_fasta
from vareff.normalize.alleles import Record
from vareff.score.registry import make_scorer
from vareff.store.key import config_descriptor, digest


def _assert_same(a, b):
    (ta, ia), (tb, ib) = a, b
    assert ta.schema == tb.schema
    for name in ta.column_names:  # column by column, so a failure names the column
        assert ta.column(name).equals(tb.column(name)), name
    assert ia == ib


def _assert_close(a, b, tol=1e-6):
    """Partly warm runs: the misses are scored in another batch than without the store, which may move
    a float in its last bits (as another --chunk-size does); everything else is identical."""
    import numpy as np
    import pyarrow as pa

    (ta, ia), (tb, ib) = a, b
    assert ta.schema == tb.schema
    for f in ta.schema:
        x, y = ta.column(f.name), tb.column(f.name)
        if pa.types.is_floating(f.type):
            assert x.is_null().equals(y.is_null()), f.name
            np.testing.assert_allclose(x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False),
                                       rtol=tol, atol=tol, err_msg=f.name)
        else:
            assert x.equals(y), f.name
    assert ia == ib


def _four_ways(cfg, scorers, records, store_dir, subset=None, exact=False):
    """No store, cold+warm on a fresh store (identical), partly warm (store filled with ``subset`` first;
    ``exact``: identical too, for backends whose floats do not depend on the batch)."""
    base = run_pipeline(cfg, scorers, records)
    ref = (base[0], base[1])
    cold = run_pipeline(with_store(cfg, store_dir / "a"), scorers, records)
    warm = run_pipeline(with_store(cfg, store_dir / "a"), scorers, records)
    _assert_same(ref, cold[:2])
    _assert_same(ref, warm[:2])
    if subset is not None:
        run_pipeline(with_store(cfg, store_dir / "b"), scorers, subset)
        part = run_pipeline(with_store(cfg, store_dir / "b"), scorers, records)
        (_assert_same if exact else _assert_close)(ref, part[:2])
    return base, cold, warm


# --------------------------------------------------------------------------- SpliceAI

D = 10


@pytest.fixture(scope="module")
def spliceai(shared_data):
    from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer

    p = tubb8_paths(shared_data)
    return p, SpliceAIScorer(SpliceAIOptions(distance=D, annotation=p["annotation"]), device="cpu")


def _tubb8_records(p):
    seq = open(p["fasta"]).read().split("\n", 1)[1].replace("\n", "")
    recs = snv_records("chr10", seq, 0, [94069], alts_per_site=2)
    ref70k = seq[69999].upper()  # real sequence outside TUBB8 (1-60,000 is an N block: n_in_window)
    recs += [Record("chr10", 70000, "intergenic", ref70k, ("A" if ref70k != "A" else "C",)),
             Record("chr10", 94090, "badref", "A" if seq[94089] != "A" else "C", ("G",))]
    return recs


def test_spliceai_outputs_are_identical_without_cold_warm_and_partly_warm_store(spliceai, tmp_path):
    p, sc = spliceai
    recs = _tubb8_records(p)
    cfg = config(p["fasta"], None, spliceai_distance=D)
    base, cold, warm = _four_ways(cfg, [sc], recs, tmp_path, subset=[dataclasses.replace(recs[0], alts=recs[0].alts[:1])],
                                  exact=True)  # SpliceAI's floats do not depend on the batch
    statuses = base[0].column("spliceai_status").to_pylist()
    scorable = sum(s in ("ok", "outside_gene") for s in statuses)
    assert "outside_gene" in statuses and "ref_mismatch" in statuses
    assert cold[2]["spliceai"] == {"served": 0, "computed": scorable, "added": scorable}
    assert warm[2]["spliceai"] == {"served": scorable, "computed": 0, "added": 0}  # ref_mismatch is not stored
    assert any(i.get("SpliceAI") for i in warm[1])
    assert warm[3].schema.metadata[b"vareff"].count(b'"served": %d' % scorable) == 1


def test_spliceai_key_misses_on_option_and_annotation_changes(spliceai, tmp_path):
    from vareff.score.spliceai import SpliceAIOptions, SpliceAIScorer

    p, sc = spliceai
    recs = [dataclasses.replace(_tubb8_records(p)[0], alts=("T",))]
    cfg = with_store(config(p["fasta"], None), tmp_path / "store")
    run_pipeline(cfg, [sc], recs)
    assert run_pipeline(cfg, [sc], recs)[2]["spliceai"]["served"] == 1
    d0 = digest(config_descriptor(sc))
    for change in (dict(distance=D + 1), dict(mask=True)):
        other = SpliceAIScorer(dataclasses.replace(sc.opt, **change), device="cpu", model=sc.model)
        assert digest(config_descriptor(other)) != d0, change
    ann = tmp_path / "ann.txt"  # the same genes with one exon end moved far from the allele
    ann.write_text(open(p["annotation"]).read().replace("95529,", "95528,", 1))
    other = SpliceAIScorer(SpliceAIOptions(distance=D, annotation=str(ann)), device="cpu", model=sc.model)
    assert run_pipeline(cfg, [other], recs)[2]["spliceai"]["served"] == 0


# --------------------------------------------------------------------------- language models

DIMS = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)
LM_OPTS = {"grover.window": 600, "grover.stride": 300, "grover.min_flank": 60,
           "nt.window": 600, "nt.stride": 300, "nt.min_flank": 60,
           "segmentnt.window": 480, "segmentnt.stride": 192, "segmentnt.min_flank": 48, "segmentnt.k": 20}


@pytest.fixture(scope="module")
def lm_genome(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_genome")
    seq = random_seq(4000, seed=5)
    return write_fasta(d / "g.fa", {"chrT": seq}), seq


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    gf.make_checkpoint(root / "grover", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=40, seed=8, weight_std=0.12)
    nf.make_nt_v2(root / "nt", seed=21, **DIMS)
    nf.make_segment_nt(root / "segnt", seed=31, **DIMS)
    return root


def _lm_records(seq):
    recs = snv_records("chrT", seq, 0, [900, 901, 1500, 2600], alts_per_site=2)
    recs += [Record("chrT", 2001, "ins", seq[2000], (seq[2000] + "TTA",)),
             Record("chrT", 2501, "del", seq[2500:2504], (seq[2500],))]
    return recs


@pytest.mark.parametrize("name", ["grover", "nt", "segnt"])
def test_language_model_outputs_are_identical_with_and_without_store(name, checkpoints, lm_genome, tmp_path):
    fa, seq = lm_genome
    cfg = config(fa, None, device="cpu", model_options=LM_OPTS)
    sc = make_scorer(str(checkpoints / name), cfg)
    recs = _lm_records(seq)
    base, cold, warm = _four_ways(cfg, [sc], recs, tmp_path, subset=recs[2:5])
    n = len(base[0])
    assert warm[2][sc.name]["served"] == n and warm[2][sc.name]["computed"] == 0
    assert cold[2][sc.name]["computed"] == n


def test_two_models_share_one_store_and_weights_or_tokenizer_changes_miss(checkpoints, lm_genome, tmp_path):
    fa, seq = lm_genome
    cfg = config(fa, None, device="cpu", model_options=LM_OPTS)
    gro, nt = make_scorer(str(checkpoints / "grover"), cfg), make_scorer(str(checkpoints / "nt"), cfg)
    recs = _lm_records(seq)[:3]
    base = run_pipeline(cfg, [gro, nt], recs)
    store = with_store(cfg, tmp_path / "s")
    run_pipeline(store, [gro, nt], recs)
    warm = run_pipeline(store, [gro, nt], recs)
    _assert_same(base[:2], warm[:2])
    assert {m: c["served"] for m, c in warm[2].items()} == {"grover": 6, "nt": 6}
    # other weights (same architecture, other seed) and an edited tokenizer file: new configurations
    gf.make_checkpoint(tmp_path / "g2", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=40, seed=9, weight_std=0.12)
    tok = tmp_path / "g3"
    shutil.copytree(checkpoints / "grover", tok)
    (tok / "tokenizer_config.json").write_text((tok / "tokenizer_config.json").read_text().replace("{", '{"x": 1, ', 1))
    d0 = digest(config_descriptor(gro, LM_OPTS))
    for other in (tmp_path / "g2", tok):
        sc = make_scorer(str(other), cfg)
        assert digest(config_descriptor(sc, LM_OPTS)) != d0
        assert run_pipeline(store, [sc], recs)[2]["grover"]["served"] == 0
    # the same contig in another file still hits; one changed base anywhere in it misses
    copy = write_fasta(tmp_path / "same.fa", {"chrT": seq})
    assert run_pipeline(dataclasses.replace(store, fasta=copy), [gro], recs)[2]["grover"]["served"] == 6
    patched = write_fasta(tmp_path / "patched.fa", {"chrT": seq[:10] + ("A" if seq[10] != "A" else "C") + seq[11:]})
    assert run_pipeline(dataclasses.replace(store, fasta=patched), [gro], recs)[2]["grover"]["served"] == 0
    # a changed backend option misses too
    opts = dict(LM_OPTS, **{"grover.window": 660})
    sc = make_scorer(str(checkpoints / "grover"), dataclasses.replace(cfg, model_options=opts))
    assert run_pipeline(dataclasses.replace(store, model_options=opts), [sc], recs)[2]["grover"]["served"] == 0
