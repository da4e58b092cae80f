"""Genotype-aware output: zygosity per (allele, sample), pedigrees, trio inheritance flags, shortlists."""
