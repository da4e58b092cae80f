"""A trio VCF built from real kit records (AlphaMissense excerpt rows) with genotypes of known
answer: each inheritance flag, zygosity per ALT, frequency flags and the shortlist, through the CLI."""
from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from vareff.cli import main

AM = "alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
GFF = "annotation/Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz"


def _excerpt(shared: Path) -> pl.DataFrame:
    with gzip.open(shared / AM, "rt") as fh:
        lines = [ln for ln in fh if not ln.startswith("#") or ln.startswith("#CHROM")]
    df = pl.read_csv("".join(lines).encode(), separator="\t")
    return df.rename({"#CHROM": "chrom", "POS": "pos", "REF": "ref", "ALT": "alt"})


def _pick(df: pl.DataFrame, transcript: str, n: int, skip: int = 0) -> list[tuple]:
    """``n`` distinct positions (one row each) of a transcript, in position order."""
    rows = (df.filter(pl.col("transcript_id") == transcript).unique("pos", keep="first").sort("pos")
              .slice(skip, n).select("chrom", "pos", "ref", "alt").rows())
    assert len(rows) == n
    return rows


@pytest.fixture(scope="module")
def trio(shared_data, tmp_path_factory):
    """The trio VCF, its PED, and the expected answers (by record id)."""
    df = _excerpt(shared_data)
    usp48 = _pick(df, "ENST00000308271.14", 3)      # chr1, USP48
    hspa8 = _pick(df, "ENST00000227378.7", 3)       # chr11, HSPA8
    il2rg = _pick(df, "ENST00000374202.6", 2)       # chrX outside the PARs, IL2RG
    poc1b = _pick(df, "ENST00000313546.8", 2)       # chr12, POC1B
    # a position of POC1B with two different ALTs in the excerpt: one multi-allelic record
    multi = (df.filter(pl.col("transcript_id") == "ENST00000313546.8").group_by("chrom", "pos", "ref")
               .agg(pl.col("alt").sort()).filter(pl.col("alt").list.len() >= 2).sort("pos").row(0))
    F = "GT:GQ:DP"
    recs = [  # id, (chrom, pos, ref, alt), INFO, kid, dad, mom
        ("comp_f", usp48[0], "AF=0.0001", "0/1:60:30", "0/1:60:30", "0/0:60:30"),
        ("comp_m", usp48[1], "AF=0.0002", "0/1:60:30", "0/0:60:30", "0/1:60:30"),
        ("denovo", hspa8[0], "AF=0", "0/1:99:40", "0/0:99:35", "0/0:99:33"),
        ("half_missing_dad", hspa8[1], ".", "0/1:99:40", "0/.:99:35", "0/0:99:33"),
        ("low_gq_dad", hspa8[2], ".", "0/1:99:40", "0/0:5:35", "0/0:99:33"),
        ("recessive", poc1b[0], ".", "1/1:70:30", "0/1:70:30", "0/1:70:30"),
        ("common", poc1b[1], "AF=0.2", "0/1:70:30", "0/1:70:30", "0/0:70:30"),
        ("xlinked", il2rg[0], ".", "1:50:20", "0:50:20", "0/1:50:20"),
        ("x_male_het", il2rg[1], ".", "0/1:50:20", "0:50:20", "0/0:50:20"),
        ("multi", (multi[0], multi[1], multi[2], ",".join(multi[3][:2])), "AF=0.3,0.0001",
         "1/2:50:20", "0/1:50:20", "0/2:50:20"),
    ]
    order = {c: i for i, c in enumerate(["chr1", "chr11", "chr12", "chrX"])}
    recs.sort(key=lambda r: (order[r[1][0]], r[1][1]))
    head = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c}>" for c in order] + [
        '##INFO=<ID=AF,Number=A,Type=Float,Description="population allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", "kid", "dad", "mom"])]
    body = ["\t".join([c, str(p), rid, r, a, ".", "PASS", info, F, k, d, m])
            for rid, (c, p, r, a), info, k, d, m in recs]
    d = tmp_path_factory.mktemp("trio")
    vcf = d / "trio.vcf"
    vcf.write_text("\n".join(head + body) + "\n")
    ped = d / "trio.ped"
    ped.write_text("FAM kid dad mom 1 2\nFAM dad 0 0 1 1\nFAM mom 0 0 2 1\n")
    return vcf, ped, d


def _score(trio, shared, *extra):
    vcf, ped, d = trio
    out = d / f"out{len(extra)}.parquet"
    code = main(["score", str(vcf), "--annotation", str(shared / GFF), "--ped", str(ped),
                 "--max-af", "AF<=0.01", "-o", str(out), "--no-progress", *extra])
    assert code == 0
    return out


def test_trio_flags_on_real_records(trio, shared_data, capsys):
    out = _score(trio, shared_data)
    alleles = pl.read_parquet(out)
    samples = pl.read_parquet(out.with_name(out.name.replace(".parquet", ".samples.parquet")))
    kid = samples.filter(pl.col("sample") == "kid").join(alleles.select("chrom", "pos", "ref", "alt", "allele_index",
                                                                         "id", "gene", "common"),
                                                         on=["chrom", "pos", "ref", "alt", "allele_index"])
    by_id = {(r["id"], r["allele_index"]): r for r in kid.iter_rows(named=True)}
    flags = ("de_novo", "hom_alt_het_parents", "x_linked", "comp_het")

    def set_flags(rid, ai=1):
        return {f for f in flags if by_id[(rid, ai)][f]}

    assert set_flags("comp_f") == {"comp_het"} and set_flags("comp_m") == {"comp_het"}
    assert by_id[("comp_f", 1)]["gene"] == by_id[("comp_m", 1)]["gene"] == "USP48"
    assert set_flags("denovo") == {"de_novo"}
    assert set_flags("half_missing_dad") == set() and set_flags("low_gq_dad") == set()
    assert set_flags("recessive") == {"hom_alt_het_parents"}
    assert by_id[("recessive", 1)]["zygosity"] == "hom_alt"
    assert set_flags("xlinked") == {"x_linked"} and by_id[("xlinked", 1)]["zygosity"] == "hemizygous"
    assert by_id[("x_male_het", 1)]["zygosity"] == "het" and set_flags("x_male_het") == set()
    err = capsys.readouterr().err
    assert "heterozygous" in err and "pseudo-autosomal" in err
    # a 1/2 proband is het for each ALT; ALT 1 is common (AF 0.3), ALT 2 is not
    assert by_id[("multi", 1)]["zygosity"] == by_id[("multi", 2)]["zygosity"] == "het"
    assert by_id[("multi", 1)]["common"] and not by_id[("multi", 2)]["common"]
    assert by_id[("common", 1)]["common"] and not set_flags("common")  # common: never a comp-het partner
    # every allele of the input is in the allele table; parents' rows only where they carry the allele
    assert alleles.height == 11
    dad = samples.filter(pl.col("sample") == "dad")
    assert set(dad.get_column("zygosity").to_list()) <= {"het", "hemizygous", "hom_alt", "partial"}
    assert samples.filter(pl.col("sample") != "kid").get_column("de_novo").null_count() == \
        samples.filter(pl.col("sample") != "kid").height


def test_shortlist_cli_ranks_flagged_alleles_first(trio, shared_data, tmp_path):
    out = _score(trio, shared_data, "--alphamissense", str(_am_table(shared_data, tmp_path)))
    tsv = tmp_path / "short.tsv"
    assert main(["shortlist", str(out), "-o", str(tsv)]) == 0
    df = pl.read_csv(tsv, separator="\t", null_values=".")
    assert set(df.get_column("proband").to_list()) == {"kid"}
    assert df.get_column("rank").to_list() == list(range(1, df.height + 1))
    flagged = df.get_column("inheritance").to_list()
    assert flagged == sorted(flagged, reverse=True)  # every flagged allele before every unflagged one
    assert "common" not in df.get_column("id").to_list()  # left out unless --include-common
    pri = df.filter(pl.col("inheritance")).get_column("priority").drop_nulls().to_list()
    assert pri == sorted(pri, reverse=True)


def _am_table(shared: Path, tmp: Path) -> Path:
    t = tmp / "am.arrow"
    assert main(["am-build", str(shared / AM), "-o", str(t), "--no-progress"]) == 0
    return t


def test_common_allele_priority_is_downgraded(trio, shared_data, tmp_path):
    am = _am_table(shared_data, tmp_path)
    vcf, ped, d = trio
    a = tmp_path / "with.parquet"
    b = tmp_path / "without.parquet"
    for out, extra in ((a, ["--max-af", "AF<=0.01"]), (b, [])):
        assert main(["score", str(vcf), "--alphamissense", str(am), "--samples", "none", "-o", str(out),
                     "--no-progress", *extra]) == 0
    x, y = pl.read_parquet(a), pl.read_parquet(b)
    assert x.get_column("info_AF").drop_nulls().len() == 6 and "common" not in y.columns
    for r, s in zip(x.iter_rows(named=True), y.iter_rows(named=True)):
        if r["priority"] is None:
            continue
        want = s["priority"] * 0.1 if r["common"] else s["priority"]
        assert r["priority"] == pytest.approx(want)
    assert x.filter(pl.col("common")).height == 2


def test_bad_ped_and_samples_give_clear_errors(trio, shared_data, tmp_path, capsys):
    vcf, ped, d = trio
    bad = tmp_path / "bad.ped"
    bad.write_text("FAM kid dad mom 1\n")
    out = tmp_path / "x.parquet"
    assert main(["score", str(vcf), "--annotation", str(shared_data / GFF), "--ped", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vareff: error:" in err and "bad.ped: line 1" in err and "Traceback" not in err
    assert main(["score", str(vcf), "--annotation", str(shared_data / GFF), "--samples", "kid,nobody",
                 "-o", str(out)]) == 2
    assert "nobody not in the VCF" in capsys.readouterr().err
    assert not out.exists()
    assert main(["shortlist", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "s.tsv")]) == 2
