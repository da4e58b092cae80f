"""Write the kit's labelled sets for `vareff evaluate` (docs/evaluation.md) into OUTDIR:

  s5_excerpt.vcf      the 169 S5 rows of the AlphaMissense excerpt (CLNSIG Pathogenic/Benign from S5 labels)
  s5_brca1.vcf        the 496 S5 rows of the BRCA1 slice
  s5_brca1_slc5a1.vcf the 496 + 9 S5 rows of the BRCA1 and SLC5A1 slices
  am_s5.tsv.gz        those 505 rows' S5 scores in the published AlphaMissense hg38 layout (for vareff am-build:
                      the kit has no released AlphaMissense rows for these genes)

Usage: python scripts/kit-labelled-sets.py OUTDIR   (kit at ../shared/data or $VAREFF_SHARED_DATA)
"""
import os
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from report_helpers import _split_s5, brca_s5_rows, excerpt_s5_rows, labelled_vcf, s5_as_am_table  # noqa: E402

shared = Path(os.environ.get("VAREFF_SHARED_DATA", REPO.parent / "shared" / "data"))
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
brca = brca_s5_rows(shared)
slc = _split_s5(pl.read_csv(shared / "grch38/slc5a1_region/alphamissense_s5.chr22_32000001-32300000.csv",
                            infer_schema_length=0).with_columns(pl.col("AlphaMissense").cast(pl.Float64)))
labelled_vcf(excerpt_s5_rows(shared), out / "s5_excerpt.vcf")
labelled_vcf(brca, out / "s5_brca1.vcf")
both = pl.concat([brca, slc])
labelled_vcf(both, out / "s5_brca1_slc5a1.vcf")
s5_as_am_table(both, out / "am_s5.tsv.gz")
print(f"wrote {out}/s5_excerpt.vcf, s5_brca1.vcf, s5_brca1_slc5a1.vcf, am_s5.tsv.gz")
