"""Region class and gene: the documented rules on a hand-made gene model, then real annotations.

The hand-made model is written as a GTF, a GFF3 and a SpliceAI gene table from one
definition; the expected classes were worked out by hand from the rules in
``vareff/lookup/regions.py`` (and docs/regions.md).  The real-data checks use the GENCODE
v29 GTF excerpt, the Ensembl 116 GFF3 excerpt, SpliceAI's gene table, and classes/genes
stated independently by ClinVar (``MC``, ``GENEINFO``), AlphaMissense (missense ⇒ coding)
and the S5 set.
"""
from __future__ import annotations

import gzip
import re

import polars as pl
import pysam
import pytest

from vareff.errors import ConfigError, InputError
from vareff.lookup.regions import OUTPUT_SCHEMA, REGION_CLASSES, RegionAnnotator

GFF3 = "annotation/Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz"
GTF = "annotation/gencode.v29.chr1_head.pyranges_example.gtf.gz"
CLINVAR = "clinvar/clinvar_20211025_GRCh38.vep_clinvar_testset.vcf.gz"

# gene, transcript, strand, exons, CDS without stop codon, stop codon, tag (1-based, inclusive)
MODEL = [
    ("GA", "ENST1", "+", [(1001, 1100), (2001, 2100), (3001, 3100)],
     [(1051, 1100), (2001, 2100), (3001, 3047)], (3048, 3050), ""),
    ("GB", "ENST2", "-", [(10001, 10100), (10201, 10300)], [], None, ""),
    ("GC", "ENST3", "+", [(1500, 1600)], [], None, ""),
    ("GD", "ENST4", "-", [(2050, 2100), (2601, 2700)], [(2063, 2100), (2601, 2650)], (2060, 2062),
     "MANE_Select"),
]

# (pos, ref, expected class, expected gene), worked out by hand
EXPECTED = [
    (995, "A", "upstream", "GA"),             # 6 bp 5' of GA (+ strand)
    (1001, "A", "5_prime_utr", "GA"),
    (1050, "A", "5_prime_utr", "GA"),
    (1051, "A", "coding", "GA"),              # first CDS base
    (1098, "A", "coding", "GA"),              # last 3 exonic bases: coding beats splice_region
    (1101, "A", "splice_region", "GA"),       # intron +1
    (1108, "A", "splice_region", "GA"),       # intron +8
    (1109, "A", "intron", "GA"),              # intron +9
    (1550, "A", "non_coding_exon", "GC"),     # exon of GC inside GA's intron: exon beats intron
    (1992, "A", "intron", "GA"),              # intron -9
    (1993, "A", "splice_region", "GA"),       # intron -8
    (2001, "A", "coding", "GA"),
    (2055, "A", "coding", "GA"),              # GA coding beats GD's 3' UTR (GD's stop is 2060-2062)
    (2061, "A", "coding", "GD"),              # GA coding and GD stop codon: MANE_Select GD wins
    (2065, "A", "coding", "GD"),              # both coding: MANE_Select GD wins
    (2101, "A", "splice_region", "GD"),       # splice region of both: MANE wins
    (2300, "A", "intron", "GD"),              # intron of both: MANE wins
    (2620, "A", "coding", "GD"),              # only GD is exonic here
    (2680, "A", "5_prime_utr", "GD"),         # - strand: above the CDS is 5'
    (3049, "A", "coding", "GA"),              # stop codon counts as coding
    (3051, "A", "3_prime_utr", "GA"),
    (3101, "A", "upstream", "GD"),            # 401 bp 5' of GD's first base (2700, - strand)
    (7700, "A", "upstream", "GD"),            # 5,000 bp
    (7701, "A", "intergenic", None),          # 5,001 bp
    (9999, "A", "intergenic", None),          # downstream of GB: not upstream
    (10050, "A", "non_coding_exon", "GB"),
    (10097, "A", "non_coding_exon", "GB"),
    (10098, "A", "splice_region", "GB"),      # last 3 bases of a non-coding exon
    (10101, "A", "splice_region", "GB"),
    (10150, "A", "intron", "GB"),
    (10301, "A", "upstream", "GB"),
    (15300, "A", "upstream", "GB"),
    (15301, "A", "intergenic", None),
    (1104, "ACGTACGTAC", "splice_region", "GA"),  # deletion 1104-1113 reaches the splice region
    (1109, "ACG", "intron", "GA"),                # deletion 1109-1111
    (1101, "", "coding", "GA"),                   # insertion between 1100 (coding) and 1101
]


def _gtf_text(chrom: str) -> str:
    lines = ["##description: hand-made model for vareff tests\n"]
    for gene, tx, strand, exons, cds, stop, tag in MODEL:
        attrs = f'gene_id "G_{gene}"; transcript_id "{tx}"; gene_name "{gene}"; tag "basic";'
        if tag:
            attrs += f' tag "{tag}";'
        feats = [("exon", e) for e in exons] + [("CDS", c) for c in cds]
        if stop:
            feats.append(("stop_codon", stop))
        for kind, (s, e) in feats:
            lines.append(f"{chrom}\ttest\t{kind}\t{s}\t{e}\t.\t{strand}\t.\t{attrs}\n")
    return "".join(lines)


def _gff3_text(chrom: str) -> str:
    lines = ["##gff-version 3\n", f"##sequence-region   {chrom} 1 20000\n"]
    for gene, tx, strand, exons, cds, stop, tag in MODEL:
        lo, hi = min(s for s, _ in exons), max(e for _, e in exons)
        lines.append(f"{chrom}\ttest\tgene\t{lo}\t{hi}\t.\t{strand}\t.\tID=gene:G_{gene};Name={gene}\n")
        kind = "mRNA" if cds else "lnc_RNA"
        tags = "gencode_basic" + (f",{tag}" if tag else "")
        lines.append(f"{chrom}\ttest\t{kind}\t{lo}\t{hi}\t.\t{strand}\t.\t"
                     f"ID=transcript:{tx};Parent=gene:G_{gene};tag={tags}\n")
        for s, e in exons:
            lines.append(f"{chrom}\ttest\texon\t{s}\t{e}\t.\t{strand}\t.\tParent=transcript:{tx}\n")
        merged = [list(c) for c in cds]  # GFF3 CDS include the stop codon
        if stop:
            for c in merged:
                if c[1] + 1 == stop[0]:
                    c[1] = stop[1]
                elif c[0] - 1 == stop[1]:
                    c[0] = stop[0]
        for s, e in merged:
            lines.append(f"{chrom}\ttest\tCDS\t{s}\t{e}\t.\t{strand}\t0\tID=CDS:P{tx};Parent=transcript:{tx}\n")
        lines.append("###\n")
    lines.append("##FASTA\n>chr9\nACGT\n")
    return "".join(lines)


def _spliceai_text(chrom: str) -> str:
    lines = ["#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"]
    for gene, _, strand, exons, *_ in MODEL:
        starts = "".join(f"{s - 1}," for s, _ in exons)  # 0-based starts, 1-based ends
        ends = "".join(f"{e}," for _, e in exons)
        lo, hi = min(s for s, _ in exons) - 1, max(e for _, e in exons)
        lines.append(f"{gene}\t{chrom}\t{strand}\t{lo}\t{hi}\t{starts}\t{ends}\n")
    return "".join(lines)


def _queries(chrom: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"chrom": [chrom] * len(EXPECTED), "pos": [p for p, *_ in EXPECTED],
         "ref": [r for _, r, *_ in EXPECTED], "alt": ["T"] * len(EXPECTED)},
        schema_overrides={"pos": pl.Int64},
    )


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("regions")
    gtf = d / "model.gtf.gz"
    with gzip.open(gtf, "wt") as f:
        f.write(_gtf_text("chr9"))
    gff3 = d / "model.gff3"
    gff3.write_text(_gff3_text("9"))
    splice = d / "model_spliceai.txt"
    splice.write_text(_spliceai_text("9"))
    return {"gtf": gtf, "gff3": gff3, "spliceai": splice}


@pytest.mark.parametrize("fmt", ["gtf", "gff3"])
def test_hand_model_classes_and_genes(model_files, fmt):
    ra = RegionAnnotator.open(model_files[fmt])
    assert ra.format == fmt and ra.n_transcripts == 4
    q = _queries("9" if fmt == "gtf" else "chr9")  # contig names resolved both ways
    out = ra.annotate(q)
    assert dict(out.schema) == OUTPUT_SCHEMA and out.height == q.height
    got = list(zip(out["region_class"], out["gene"]))
    want = [(c, g) for _, _, c, g in EXPECTED]
    bad = [(EXPECTED[i][:2], got[i], want[i]) for i in range(len(want)) if got[i] != want[i]]
    assert not bad


def test_hand_model_order_independent(model_files):
    ra = RegionAnnotator.open(model_files["gtf"])
    q = _queries("chr9")
    fwd = ra.annotate(q)
    rev = ra.annotate(q.reverse()).reverse()
    assert fwd.equals(rev)


def test_spliceai_table_has_exon_class(model_files):
    ra = RegionAnnotator.open(model_files["spliceai"])
    assert ra.format == "spliceai"
    q = pl.DataFrame({"chrom": ["chr9"] * 6, "pos": [1051, 1098, 1101, 1550, 995, 10150]})
    out = ra.annotate(q)
    # no CDS coordinates: exonic bases are "exon", which ranks below splice_region
    assert out["region_class"].to_list() == ["exon", "splice_region", "splice_region", "exon",
                                             "upstream", "intron"]
    assert out["gene"].to_list() == ["GA", "GA", "GA", "GC", "GA", "GB"]


def test_canonical_only(model_files):
    ra = RegionAnnotator.open(model_files["gff3"], transcripts="canonical")
    assert ra.n_transcripts == 1
    out = ra.annotate(pl.DataFrame({"chrom": ["9"] * 3, "pos": [2001, 2300, 1550]}))
    # only GD (- strand, 2050-2700) is left: 2001 and 1550 are 3' of it, 2300 in its intron
    assert out["region_class"].to_list() == ["intergenic", "intron", "intergenic"]
    assert out["gene"].to_list() == [None, "GD", None]


def test_unknown_contig_null_pos_and_empty(model_files):
    ra = RegionAnnotator.open(model_files["gtf"])
    out = ra.annotate(pl.DataFrame({"chrom": ["chr5", "chr9", None], "pos": [1051, None, 1051],
                                    "ref": ["A", "A", "A"]}))
    assert out["region_class"].to_list() == [None, None, None]
    empty = ra.annotate(pl.DataFrame(schema={"chrom": pl.String, "pos": pl.Int64}))
    assert empty.height == 0 and dict(empty.schema) == OUTPUT_SCHEMA
    with pytest.raises(InputError, match="lack column"):
        ra.annotate(pl.DataFrame({"chrom": ["chr9"]}))


def test_bad_annotation_files(shared_data, tmp_path, model_files):
    with pytest.raises(InputError, match="not a recognised gene annotation"):
        RegionAnnotator.open(shared_data / "alphamissense/science.adg7492_data_s5.csv.gz")
    with pytest.raises(InputError, match="does not exist"):
        RegionAnnotator.open(tmp_path / "missing.gtf")
    data = (shared_data / GTF).read_bytes()
    cut = tmp_path / "cut.gtf.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        RegionAnnotator.open(cut)
    with pytest.raises(ConfigError, match="no transcript .* is tagged"):
        RegionAnnotator.open(shared_data / GTF, transcripts="canonical")  # GENCODE v29: no such tags
    with pytest.raises(ConfigError, match="upstream"):
        RegionAnnotator.open(model_files["gtf"], upstream=-1)


# ---------------------------------------------------------------------------------------
# real annotations
# ---------------------------------------------------------------------------------------


def _gff3_transcript_genes(path) -> dict[str, str]:
    """transcript id -> gene Name, read with plain Python (independent of the module)."""
    gene_name, tx_gene = {}, {}
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("#"):
                continue
            attrs = dict(kv.split("=", 1) for kv in line.rstrip("\n").split("\t")[8].split(";") if "=" in kv)
            if attrs.get("ID", "").startswith("gene:"):
                gene_name[attrs["ID"]] = attrs.get("Name", attrs["ID"][5:])
            elif attrs.get("ID", "").startswith("transcript:"):
                tx_gene[attrs["ID"][11:]] = attrs["Parent"]
    return {tx: gene_name[g] for tx, g in tx_gene.items()}


def test_alphamissense_excerpt_is_coding_in_ensembl_gff3(shared_data):
    """Every AlphaMissense row is a missense change, so its base is coding in its transcript."""
    ex = pl.read_csv(shared_data / "alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz",
                     separator="\t", skip_rows=3)
    tx_gene = _gff3_transcript_genes(shared_data / GFF3)
    ex = ex.with_columns(tx=pl.col("transcript_id").str.replace(r"\.\d+$", ""))
    present = ex.filter(pl.col("tx").is_in(list(tx_gene)))
    # A6NEN9's transcript (ENST00000374251) is not in the Ensembl 116 excerpt; all others are
    assert set(ex["tx"].unique()) - set(present["tx"].unique()) == {"ENST00000374251"}
    assert present.height == 22_066 - 244
    ra = RegionAnnotator.open(shared_data / GFF3)
    out = ra.annotate(present.select(chrom="#CHROM", pos="POS", ref="REF", alt="ALT"))
    assert (out["region_class"] == "coding").all()
    expected_gene = present["tx"].replace_strict(tx_gene)
    assert (out["gene"] == expected_gene).all()


def test_clinvar_consequences_and_genes(shared_data):
    """ClinVar's own GENEINFO / MC agree with gene and class where the annotation covers them."""
    recs = [(r.chrom, r.pos, r.ref, r.alts[0], r.info.get("GENEINFO"), r.info.get("MC"))
            for r in pysam.VariantFile(str(shared_data / CLINVAR))]
    q = pl.DataFrame(recs, schema=["chrom", "pos", "ref", "alt", "geneinfo", "mc"], orient="row")
    mc_class = {"missense_variant": "coding", "synonymous_variant": "coding", "nonsense": "coding",
                "intron_variant": "intron", "5_prime_UTR_variant": "5_prime_utr"}
    checked = 0
    for path in (GTF, GFF3):
        ra = RegionAnnotator.open(shared_data / path)
        out = pl.concat([q, ra.annotate(q)], how="horizontal")
        covered = out.filter(pl.col("region_class").is_not_null()
                             & ~pl.col("region_class").is_in(["intergenic", "upstream"]))
        for rec in covered.iter_rows(named=True):
            assert rec["gene"] == rec["geneinfo"].split(":")[0], rec
            if rec["mc"]:
                terms = {m.split("|")[1] for m in rec["mc"]}
                assert rec["region_class"] in {mc_class[t] for t in terms if t in mc_class}, rec
            checked += 1
    # SAMD11 missense + intron (GENCODE v29 GTF), MT-TF tRNA via MT -> M (Ensembl GFF3)
    assert checked == 3


def test_gencode_gtf_s5_missense_rows_are_coding(shared_data):
    """S5 rows (missense) whose transcript the GTF excerpt holds are coding, in that gene."""
    s5 = pl.read_csv(shared_data / "alphamissense/science.adg7492_data_s5.csv.gz")
    parts = pl.col("variant_id").str.split("_")
    s5 = s5.with_columns(chrom=parts.list.get(0), pos=parts.list.get(1).cast(pl.Int64),
                         ref=parts.list.get(2), tx=pl.col("transcript_id").str.replace(r"\.\d+$", ""))
    s5 = s5.filter((pl.col("chrom") == "chr1") & pl.col("pos").is_between(11_869, 1_534_687))
    assert s5.height == 115
    # gene of each transcript with exons in the excerpt, read from the GTF with a regex (the
    # pyranges example keeps only some transcripts: e.g. ATAD3A's ENST00000378755 is absent)
    tx_gene = {}
    with gzip.open(shared_data / GTF, "rt") as f:
        for line in f:
            m = re.search(r'\texon\t.*transcript_id "(ENST\d+)[.\d]*";.*gene_name "([^"]+)"', line)
            if m:
                tx_gene[m.group(1)] = m.group(2)
    known = s5.filter(pl.col("tx").is_in(list(tx_gene)))
    assert known.height >= 100
    out = RegionAnnotator.open(shared_data / GTF).annotate(known)
    assert (out["region_class"] == "coding").all()
    assert (out["gene"] == known["tx"].replace_strict(tx_gene)).all()


def test_spliceai_gene_table_brca1_region(shared_data):
    table = shared_data / "grch38/brca1_region/spliceai_grch38_annotation.chr17_42425000-43600000.txt"
    s5 = pl.read_csv(shared_data / "grch38/brca1_region/alphamissense_s5.chr17_42425000-43600000.csv")
    parts = pl.col("variant_id").str.split("_")
    s5 = s5.with_columns(chrom=parts.list.get(0), pos=parts.list.get(1).cast(pl.Int64), ref=parts.list.get(2))
    ra = RegionAnnotator.open(table)
    assert ra.n_transcripts == 36
    out = pl.concat([s5, ra.annotate(s5)], how="horizontal")
    # missense bases lie in exons; SpliceAI tables have no CDS, so "exon" (or the splice region)
    assert out["region_class"].is_in(["exon", "splice_region"]).all()
    brca1 = out.filter(pl.col("transcript_id").str.starts_with("ENST00000357654"))
    assert brca1.height == 306 and (brca1["gene"] == "BRCA1").all()


def test_region_classes_constant():
    assert REGION_CLASSES[0] == "coding" and REGION_CLASSES[-1] == "intergenic"
    assert len(set(REGION_CLASSES)) == 9
