"""AlphaMissense lookups: build from the published layouts, allele-exact joins, real-data checks.

Real data: the 22,066-row excerpt of ``AlphaMissense_hg38.tsv.gz`` (original header) and
the AlphaMissense paper's ClinVar set S5 (``shared_data/alphamissense``).  Small tables in
the published layout are written per test for the edge cases (several transcripts per
allele, the isoforms and hg19 layouts, bgzip, broken files).
"""
from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import polars as pl
import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vareff.errors import ConfigError, InputError
from vareff.lookup.alphamissense import CLASS_THRESHOLDS, OUTPUT_SCHEMA, AlphaMissenseLookup
from vareff.lookup.am_build import build_table

EXCERPT = "alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
S5 = "alphamissense/science.adg7492_data_s5.csv.gz"
CANONICAL_HEADER = (
    "# Copyright 2023 DeepMind Technologies Limited\n#\n# Licensed under CC BY-NC-SA 4.0 license\n"
    "#CHROM\tPOS\tREF\tALT\tgenome\tuniprot_id\ttranscript_id\tprotein_variant\tam_pathogenicity\tam_class\n"
)
ISOFORMS_HEADER = (
    "# Copyright 2023 DeepMind Technologies Limited\n#\n# Licensed under CC BY-NC-SA 4.0 license\n"
    "#CHROM\tPOS\tREF\tALT\tgenome\ttranscript_id\tprotein_variant\tam_pathogenicity\tam_class\n"
)


def _am_class(score: float) -> str:
    lo, hi = CLASS_THRESHOLDS
    return "likely_benign" if score < lo else "likely_pathogenic" if score > hi else "ambiguous"


def _write_am(path, rows, *, isoforms=False, genome="hg38"):
    """Write rows (chrom, pos, ref, alt, uniprot, transcript, protein_variant, score) gzip'ed."""
    lines = [ISOFORMS_HEADER if isoforms else CANONICAL_HEADER]
    for chrom, pos, ref, alt, up, tx, pv, score in rows:
        mid = [tx] if isoforms else [up, tx]
        lines.append("\t".join([chrom, str(pos), ref, alt, genome, *mid, pv, score, _am_class(float(score))]) + "\n")
    with gzip.open(path, "wt") as f:
        f.writelines(lines)
    return path


def _read_excerpt(shared_data) -> pl.DataFrame:
    return pl.read_csv(
        shared_data / EXCERPT, separator="\t", skip_rows=3,
        schema_overrides={"am_pathogenicity": pl.String, "POS": pl.Int64},
    ).rename({"#CHROM": "chrom", "POS": "pos", "REF": "ref", "ALT": "alt"})


def _read_s5(shared_data) -> pl.DataFrame:
    s5 = pl.read_csv(shared_data / S5)
    parts = pl.col("variant_id").str.split("_")
    return s5.with_columns(
        chrom=parts.list.get(0), pos=parts.list.get(1).cast(pl.Int64),
        ref=parts.list.get(2), alt=parts.list.get(3),
    )


def _auroc(score: pl.Series, label: pl.Series) -> float:
    """Mann-Whitney AUROC with average ranks for ties."""
    df = pl.DataFrame({"s": score.cast(pl.Float64), "y": label.cast(pl.Int8)}).with_columns(
        r=pl.col("s").rank("average"))
    n1 = int(df["y"].sum())
    n0 = df.height - n1
    return float((df.filter(pl.col("y") == 1)["r"].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@pytest.fixture(scope="module")
def excerpt_table(shared_data, tmp_path_factory):
    dst = tmp_path_factory.mktemp("am") / "excerpt.arrow"
    stats = build_table(shared_data / EXCERPT, dst, progress=False)
    return dst, stats


@pytest.fixture(scope="module")
def excerpt_lookup(excerpt_table):
    with AlphaMissenseLookup.open(excerpt_table[0]) as lk:
        yield lk


# ---------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------


def test_build_excerpt_stats(shared_data, excerpt_table):
    _, stats = excerpt_table
    src = shared_data / EXCERPT
    assert stats.rows == 22_066
    assert stats.layout == "canonical" and stats.genome == "hg38"
    assert stats.source_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert stats.transcripts == 11
    assert sum(stats.contigs.values()) == 22_066
    assert list(stats.contigs) == ["chr1", "chr2", "chr6", "chr11", "chr12", "chr16", "chrX"]
    assert stats.duplicate_rows == 0
    assert stats.peak_rss_bytes > 0 and stats.table_bytes > 0


def test_every_excerpt_row_found_exactly(shared_data, excerpt_lookup):
    ex = _read_excerpt(shared_data)
    # query with Ensembl-style contig names and lower-case alleles, in reverse order
    q = ex.select(
        chrom=pl.col("chrom").str.strip_prefix("chr"), pos="pos",
        ref=pl.col("ref").str.to_lowercase(), alt="alt",
    ).reverse()
    out = excerpt_lookup.annotate(q).reverse()
    assert out.height == ex.height
    assert dict(out.schema) == OUTPUT_SCHEMA
    assert out.null_count().sum_horizontal().item() == 0
    assert (out["am_pathogenicity"] == ex["am_pathogenicity"].cast(pl.Float32)).all()
    # the stored float32 is the published 4-decimal value
    assert (out["am_pathogenicity"].cast(pl.Float64).round(4) == ex["am_pathogenicity"].cast(pl.Float64)).all()
    for ours, theirs in [("am_class", "am_class"), ("am_transcript_id", "transcript_id"),
                         ("am_protein_variant", "protein_variant"), ("am_uniprot_id", "uniprot_id")]:
        assert (out[ours] == ex[theirs]).all(), ours


def test_s5_rows_in_excerpt_found_with_excerpt_scores(shared_data, excerpt_lookup):
    """Issue 5 part 5: excerpt rows also in S5 carry the excerpt's exact score and class."""
    ex = _read_excerpt(shared_data)
    s5 = _read_s5(shared_data)
    both = ex.join(s5, on=["chrom", "pos", "ref", "alt"], how="inner", suffix="_s5")
    assert both.height == 169  # per the data README: 45 pathogenic / 124 benign
    assert int(both["label"].sum()) == 45
    out = excerpt_lookup.annotate(both.select("chrom", "pos", "ref", "alt"))
    assert (out["am_pathogenicity"] == both["am_pathogenicity"].cast(pl.Float32)).all()
    assert (out["am_class"] == both["am_class"]).all()
    # S5 holds unrounded scores: equal to the released ones within 4e-4
    diff = (out["am_pathogenicity"].cast(pl.Float64) - both["AlphaMissense"]).abs()
    assert diff.max() <= 4e-4
    # same protein change (S5 writes UniProt:change)
    assert (both["uniprot_id"] + ":" + out["am_protein_variant"] == both["protein_variant_s5"]).all()


def test_auroc_on_excerpt_s5_rows_equals_s5(shared_data, excerpt_lookup):
    """Issue 5 part 5: AUROC of the looked-up score equals the one computed from S5 itself."""
    ex = _read_excerpt(shared_data)
    s5 = _read_s5(shared_data)
    both = ex.join(s5, on=["chrom", "pos", "ref", "alt"], how="inner")
    out = excerpt_lookup.annotate(both.select("chrom", "pos", "ref", "alt"))
    ours = _auroc(out["am_pathogenicity"], both["label"])
    direct = _auroc(both["AlphaMissense"], both["label"])
    assert ours == pytest.approx(direct, abs=1e-9)
    assert 0.85 < direct < 1.0  # AlphaMissense separates ClinVar labels well


def test_absent_and_non_missense_alleles_are_null(excerpt_lookup):
    # chr1:21704262 T>G and T>C are in the excerpt (K839Q / K839E); T>A is not (a stop or synonymous)
    q = pl.DataFrame({
        "chrom": ["chr1", "1", "chr1", "chr1", "chr1", "chr1", "chr1", "chr1", "chr7", None, "chr1", "chr1"],
        "pos": [21704262, 21704262, 21704262, 21704262, 21704262, 21704262, 21704262, 21704262,
                21704262, 21704262, None, 21704261],
        "ref": ["T", "t", "T", "TA", "T", "T", "T", "T", "T", "T", "T", "T"],
        "alt": ["G", "c", "A", "T", "TG", "<DEL>", "*", ".", "G", "G", "G", "G"],
    }, schema_overrides={"pos": pl.Int64})
    out = excerpt_lookup.annotate(q)
    assert out.height == q.height
    assert out["am_protein_variant"].to_list()[:2] == ["K839Q", "K839E"]
    assert out["am_pathogenicity"].is_null().to_list() == [False, False] + [True] * 10
    assert out.slice(2).null_count().row(0) == (10,) * 5


def test_empty_and_missing_columns(excerpt_lookup):
    empty = pl.DataFrame(schema={"chrom": pl.String, "pos": pl.Int64, "ref": pl.String, "alt": pl.String})
    out = excerpt_lookup.annotate(empty)
    assert out.height == 0 and dict(out.schema) == OUTPUT_SCHEMA
    with pytest.raises(InputError, match="lack column"):
        excerpt_lookup.annotate(pl.DataFrame({"chrom": ["1"], "pos": [1]}))


def test_table_is_readable_as_plain_arrow(excerpt_table, shared_data):
    tbl = pl.read_ipc(excerpt_table[0])
    assert tbl.height == 22_066
    assert (tbl["key"].cast(pl.Int64) == tbl["pos"].cast(pl.Int64) * 16
            + tbl["ref"].cast(pl.String).replace_strict({"A": 0, "C": 1, "G": 2, "T": 3}, return_dtype=pl.Int64) * 4
            + tbl["alt"].cast(pl.String).replace_strict({"A": 0, "C": 1, "G": 2, "T": 3}, return_dtype=pl.Int64)).all()


# ---------------------------------------------------------------------------------------
# layouts and compression
# ---------------------------------------------------------------------------------------


def test_bgzip_source_gives_identical_table(shared_data, excerpt_table, tmp_path):
    plain = tmp_path / "am.tsv"
    with gzip.open(shared_data / EXCERPT, "rb") as f, open(plain, "wb") as g:
        shutil.copyfileobj(f, g)
    bgz = tmp_path / "am.tsv.bgz"
    pysam.tabix_compress(str(plain), str(bgz))
    for src in (bgz, plain):
        stats = build_table(src, tmp_path / "t.arrow", progress=False)
        assert stats.rows == 22_066
        a = pl.read_ipc(tmp_path / "t.arrow")
        b = pl.read_ipc(excerpt_table[0])
        assert a.equals(b)


def test_isoforms_and_hg19_layouts(tmp_path):
    rows = [("chr2", 100, "A", "G", "P12345", "ENST00000000001.3", "K10E", "0.9"),
            ("chr2", 100, "A", "G", "P99999", "ENST00000000002.1", "K12E", "0.2")]
    iso = _write_am(tmp_path / "iso.tsv.gz", rows, isoforms=True)
    stats = build_table(iso, tmp_path / "iso.arrow", progress=False)
    assert stats.layout == "isoforms" and stats.genome == "hg38" and stats.rows == 2
    with AlphaMissenseLookup.open(tmp_path / "iso.arrow") as lk:
        out = lk.annotate(pl.DataFrame({"chrom": ["2"], "pos": [100], "ref": ["A"], "alt": ["G"]}))
        assert lk.layout == "isoforms"
    assert out["am_transcript_id"].item() == "ENST00000000001.3"
    assert out["am_uniprot_id"].item() is None
    hg19 = _write_am(tmp_path / "hg19.tsv.gz", rows[:1], genome="hg19")
    stats = build_table(hg19, tmp_path / "hg19.arrow", progress=False)
    assert stats.genome == "hg19" and stats.layout == "canonical"
    assert AlphaMissenseLookup.open(tmp_path / "hg19.arrow").genome == "hg19"


# ---------------------------------------------------------------------------------------
# several transcripts per allele
# ---------------------------------------------------------------------------------------


@pytest.fixture()
def overlapping_table(tmp_path):
    rows = [
        ("chr3", 500, "C", "T", "P00001", "ENST00000000010.2", "R5W", "0.3"),
        ("chr3", 500, "C", "T", "P00002", "ENST00000000020.1", "R7Q", "0.8"),
        ("chr3", 500, "C", "T", "P00003", "ENST00000000030.4", "R9Q", "0.8"),
        ("chr3", 500, "C", "G", "P00001", "ENST00000000010.2", "R5G", "0.1"),
    ]
    dst = tmp_path / "overlap.arrow"
    build_table(_write_am(tmp_path / "overlap.tsv.gz", rows), dst, progress=False)
    return dst


def test_several_transcripts_highest_score_wins(overlapping_table):
    q = pl.DataFrame({"chrom": ["3", "3"], "pos": [500, 500], "ref": ["C", "C"], "alt": ["T", "G"]})
    out = AlphaMissenseLookup.open(overlapping_table).annotate(q)
    # 0.8 twice: the tie goes to the smaller transcript id
    assert out["am_transcript_id"].to_list() == ["ENST00000000020.1", "ENST00000000010.2"]
    assert out["am_pathogenicity"].to_list() == pytest.approx([0.8, 0.1])


def test_transcript_match_ignores_version(overlapping_table):
    q = pl.DataFrame({"chrom": ["chr3", "chr3"], "pos": [500, 500], "ref": ["C", "C"], "alt": ["T", "G"]})
    lk = AlphaMissenseLookup.open(overlapping_table, transcript="ENST00000000010")
    out = lk.annotate(q)
    assert out["am_protein_variant"].to_list() == ["R5W", "R5G"]
    lk = AlphaMissenseLookup.open(overlapping_table, transcript=["ENST00000000030.9", "ENST00000000020.1"])
    out = lk.annotate(q)
    assert out["am_transcript_id"].to_list() == ["ENST00000000020.1", None]  # 0.8 tie -> smaller id
    assert out["am_pathogenicity"].is_null().to_list() == [False, True]


def test_transcript_absent_from_table_is_a_config_error(overlapping_table):
    with pytest.raises(ConfigError, match="none of the requested transcripts"):
        AlphaMissenseLookup.open(overlapping_table, transcript="ENST00000999999")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(
    st.tuples(
        st.sampled_from(["chr1", "chr2", "chrX"]), st.integers(1, 60), st.integers(0, 3),
        st.integers(1, 3), st.integers(0, 4), st.integers(0, 10_000),
    ),
    min_size=1, max_size=40,
))
def test_roundtrip_property(tmp_path, rows):
    """Any set of rows, in any order: each allele returns its highest-scoring row."""
    bases = "ACGT"
    recs = {}
    for chrom, pos, ref, shift, tx, s10k in rows:
        alt = bases[(ref + shift) % 4]
        recs[(chrom, pos, bases[ref], alt, tx)] = s10k  # one row per (allele, transcript)
    tsv = [(c, p, r, a, f"P{t:05d}", f"ENST{t:011d}.1", f"M{p}L", f"{s / 10_000:.4f}")
           for (c, p, r, a, t), s in recs.items()]
    dst = tmp_path / "prop.arrow"
    build_table(_write_am(tmp_path / "prop.tsv.gz", tsv), dst, progress=False)
    alleles = sorted({k[:4] for k in recs})
    q = pl.DataFrame(alleles, schema=["chrom", "pos", "ref", "alt"], orient="row")
    out = AlphaMissenseLookup.open(dst).annotate(q)
    for (c, p, r, a), score, tx in zip(alleles, out["am_pathogenicity"], out["am_transcript_id"]):
        cands = sorted((-s, t) for (c2, p2, r2, a2, t), s in recs.items() if (c2, p2, r2, a2) == (c, p, r, a))
        best_s, best_t = -cands[0][0], cands[0][1]
        assert tx == f"ENST{best_t:011d}.1"
        assert score == np.float32(best_s / 10_000)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_build_rejects_s5_and_other_tables(shared_data, tmp_path):
    with pytest.raises(InputError, match=r"expected comment lines and a '#CHROM"):
        build_table(shared_data / S5, tmp_path / "x.arrow", progress=False)
    aa = tmp_path / "aa.tsv.gz"
    with gzip.open(aa, "wt") as f:
        f.write("# Copyright\n#uniprot_id\tprotein_variant\tam_pathogenicity\tam_class\nA0A\tM1A\t0.3\tambiguous\n")
    with pytest.raises(InputError, match="aa_substitutions"):
        build_table(aa, tmp_path / "x.arrow", progress=False)
    assert not list(tmp_path.glob("*.arrow")) and not list(tmp_path.glob(".*"))


def test_build_rejects_truncated_gzip(shared_data, tmp_path):
    data = (shared_data / EXCERPT).read_bytes()
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        build_table(cut, tmp_path / "x.arrow", progress=False)
    assert not (tmp_path / "x.arrow").exists()


def test_build_rejects_bgzip_without_eof_block(shared_data, tmp_path):
    plain = tmp_path / "am.tsv"
    with gzip.open(shared_data / EXCERPT, "rb") as f, open(plain, "wb") as g:
        shutil.copyfileobj(f, g)
    bgz = tmp_path / "am.tsv.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    data = bgz.read_bytes()
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(data[:-28])  # whole blocks, only the EOF marker missing
    with pytest.raises(InputError, match="BGZF end-of-file block"):
        build_table(cut, tmp_path / "x.arrow", progress=False)


def test_build_rejects_malformed_rows(tmp_path):
    good = ("chr1", 10, "A", "G", "P1", "ENST1.1", "K1E", "0.5")
    for bad, match in [
        (("chr1", 11, "N", "G", "P1", "ENST1.1", "K1E", "0.5"), r"line 6: column REF is 'N'"),
        (("chr1", 11, "A", "A", "P1", "ENST1.1", "K1E", "0.5"), "different from REF"),
        (("chr1", 11, "A", "G", "P1", "ENST1.1", "p.Lys1Glu", "0.5"), "protein_variant"),
        (("chr1", 11, "A", "G", "P1", "ENST1.1", "K1E", "1.5"), "am_pathogenicity"),
    ]:
        src = _write_am(tmp_path / "bad.tsv.gz", [good, bad])
        with pytest.raises(InputError, match=match):
            build_table(src, tmp_path / "x.arrow", progress=False)
    short = tmp_path / "short.tsv.gz"
    with gzip.open(short, "wt") as f:
        f.write(CANONICAL_HEADER + "chr1\t10\tA\tG\thg38\tP1\n")
    with pytest.raises(InputError, match="10 tab-separated columns"):
        build_table(short, tmp_path / "x.arrow", progress=False)
    with pytest.raises(InputError, match="does not exist"):
        build_table(tmp_path / "nope.tsv.gz", tmp_path / "x.arrow", progress=False)


def test_open_rejects_non_tables(shared_data, tmp_path):
    with pytest.raises(InputError, match="published gzip TSV"):
        AlphaMissenseLookup.open(shared_data / EXCERPT)
    with pytest.raises(InputError, match="does not exist"):
        AlphaMissenseLookup.open(tmp_path / "missing.arrow")
    other = tmp_path / "other.arrow"
    pl.DataFrame({"a": [1]}).write_ipc(other)
    with pytest.raises(InputError, match="not a vareff AlphaMissense table"):
        AlphaMissenseLookup.open(other)
