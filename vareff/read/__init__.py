"""Stage 1: stream VCF/VCF.gz/BCF records (cyvcf2), optionally restricted to regions."""
