"""Sequence encoders: turn reference/alt windows into model inputs (one-hot, k-mers, a checkpoint's BPE)."""
