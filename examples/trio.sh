#!/usr/bin/env bash
# A trio on bundled data: real variant records (rows of the kit's AlphaMissense excerpt) given the
# genotypes of a proband and both parents, scored with AlphaMissense lookups and region classes,
# then one shortlist per proband. The genotypes are made up to show each inheritance flag:
# a de novo call, a compound het (one allele from each parent in USP48), a recessive homozygote,
# an X-linked hemizygous son, and a common allele (AF above --max-af).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${VAREFF_SHARED_DATA:-../shared/data}
[ -x .venv/bin/vareff ] || bash scripts/setup-venv.sh
mkdir -p demo-out
AM="$DATA/alphamissense/AlphaMissense_hg38.talos_test_excerpt.tsv.gz"
[ -f demo-out/am_excerpt.arrow ] || .venv/bin/vareff am-build "$AM" -o demo-out/am_excerpt.arrow --no-progress
.venv/bin/python - "$AM" <<'PY'
import gzip, sys
rows = {}
with gzip.open(sys.argv[1], "rt") as fh:
    for line in fh:
        if line.startswith("#"):
            continue
        c, p, r, a, *_, tx = line.split("\t")[:7]
        rows.setdefault(tx, []).append((c, int(p), r, a))
def nth(tx, i):
    seen = sorted({x[1]: x for x in rows[tx]}.values(), key=lambda x: x[1])
    return seen[i]
gt = [  # id, record, AF, proband (male), father, mother
    ("comp_het_from_father", nth("ENST00000308271.14", 0), "0.0001", "0/1", "0/1", "0/0"),
    ("comp_het_from_mother", nth("ENST00000308271.14", 40), "0.0002", "0/1", "0/0", "0/1"),
    ("de_novo", nth("ENST00000227378.7", 10), "0", "0/1", "0/0", "0/0"),
    ("recessive", nth("ENST00000313546.8", 5), ".", "1/1", "0/1", "0/1"),
    ("common", nth("ENST00000313546.8", 30), "0.2", "0/1", "0/1", "0/0"),
    ("x_linked", nth("ENST00000374202.6", 3), ".", "1", "0", "0/1"),
]
order = ["chr1", "chr11", "chr12", "chrX"]
gt.sort(key=lambda g: (order.index(g[1][0]), g[1][1]))
with open("demo-out/trio.vcf", "w") as out:
    out.write("##fileformat=VCFv4.2\n" + "".join(f"##contig=<ID={c}>\n" for c in order))
    out.write('##INFO=<ID=AF,Number=A,Type=Float,Description="population allele frequency">\n'
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
              '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
              '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n')
    out.write("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                         "proband", "father", "mother"]) + "\n")
    for name, (c, p, r, a), af, k, f, m in gt:
        info = "." if af == "." else f"AF={af}"
        out.write("\t".join([c, str(p), name, r, a, ".", "PASS", info, "GT:GQ:DP",
                             f"{k}:60:30", f"{f}:60:30", f"{m}:60:30"]) + "\n")
with open("demo-out/trio.ped", "w") as out:
    out.write("FAM1\tproband\tfather\tmother\t1\t2\nFAM1\tfather\t0\t0\t1\t1\nFAM1\tmother\t0\t0\t2\t1\n")
PY
.venv/bin/vareff score demo-out/trio.vcf --alphamissense demo-out/am_excerpt.arrow \
  --annotation "$DATA/annotation/Homo_sapiens.GRCh38.116.MTtoM.talos_test_excerpt.gff3.gz" \
  --ped demo-out/trio.ped --max-af 'AF<=0.01' --no-progress -o demo-out/trio.parquet
.venv/bin/vareff shortlist demo-out/trio.parquet -o demo-out/trio.shortlist.tsv
.venv/bin/python - <<'PY'
import polars as pl
pl.Config.set_tbl_cols(12)
pl.Config.set_tbl_width_chars(170)
df = pl.read_csv("demo-out/trio.shortlist.tsv", separator="\t", null_values=".")
print(df.select("rank", "id", "gene", "zygosity", "de_novo", "hom_alt_het_parents", "x_linked", "comp_het",
                "am_pathogenicity", "priority"))
PY
