"""Stage 6: model backends reduce their outputs to per-allele score columns."""
