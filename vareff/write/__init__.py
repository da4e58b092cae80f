"""Stage 9: Parquet / VCF(.gz, tabix) / TSV writers, chunked and atomic, with resume."""
