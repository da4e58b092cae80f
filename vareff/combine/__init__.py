"""Combining evidence: one calibratable ``priority`` per allele (:mod:`vareff.combine.priority`)."""
