"""Throttled progress lines (position, alleles done, alleles/s) and the end-of-run summary."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("vareff")


class Progress:
    """Logs a line at most every ``every`` seconds; the interval doubles up to 60 s on long runs."""

    def __init__(self, enabled: bool = True, every: float = 2.0):
        self.enabled = enabled
        self.every = every
        self.t0 = self.last = time.monotonic()
        self.alleles = 0
        self.records = 0

    def update(self, records: int, alleles: int, where: str) -> None:
        self.records += records
        self.alleles += alleles
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            self.every = min(self.every * 2, 60.0)
            log.info("%s  %d records  %d alleles  %.1f alleles/s", where, self.records, self.alleles, self.rate)

    @property
    def rate(self) -> float:
        return self.alleles / max(time.monotonic() - self.t0, 1e-9)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0
