#!/usr/bin/env bash
# Score the Pangolin BRCA1 variants with SpliceAI on the bundled GRCh38 BRCA1 slice.
# The VCF is GRCh37; it is moved to GRCh38 (+1,847,983, see ../shared/data/README.md) into demo-out/.
# Its first record is space-separated (malformed): --skip-malformed keeps it as a status row.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${VAREFF_SHARED_DATA:-../shared/data}
[ -x .venv/bin/vareff ] || bash scripts/setup-venv.sh
mkdir -p demo-out
awk 'BEGIN{FS=OFS="\t"} /^#/ {print; next} NF>=8 {$2=$2+1847983} {print}' \
  "$DATA/golden/pangolin/brca.vcf" > demo-out/brca1.grch38.vcf
.venv/bin/vareff score demo-out/brca1.grch38.vcf \
  -f "$DATA/grch38/brca1_region/chr17_42425000_43600000.fwd.fa" \
  --contig-map chr17=chr17_42425000_43600000+42424999 \
  -m spliceai --spliceai-annotation "$DATA/grch38/brca1_region/spliceai_grch38_annotation.chr17_42425000-43600000.txt" \
  --skip-malformed -o demo-out/brca1.spliceai.parquet -o demo-out/brca1.spliceai.vcf.gz \
  --report demo-out/brca1.report.html
.venv/bin/python - <<'PY'
import polars as pl
pl.Config.set_tbl_rows(12)
df = pl.read_parquet("demo-out/brca1.spliceai.parquet")
print(df.select("chrom", "pos", "ref", "alt", "status", "spliceai_gene", "spliceai_ds_ag", "spliceai_ds_al",
                "spliceai_ds_dg", "spliceai_ds_dl", "spliceai_ds_max").sort("spliceai_ds_max", descending=True, nulls_last=True).head(12))
PY
# list what was written (a .tbi only if one was: an unsorted input's .vcf.gz is sorted first, see docs/outputs.md)
echo "outputs:"; ls -1 demo-out/brca1.*
