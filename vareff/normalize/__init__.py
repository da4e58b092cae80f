"""Stage 2: split records into alleles, trim, classify, check REF, decide a status."""
