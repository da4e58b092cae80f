"""Stage 3: reference access and sequence windows around alleles."""
