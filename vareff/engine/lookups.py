"""Adapters that add lookup columns (AlphaMissense, region class) to a chunk's rows."""
from __future__ import annotations

from vareff.config import RunConfig


def make_lookups(cfg: RunConfig) -> list:
    """The lookups a run asked for (``--alphamissense``, ``--annotation``)."""
    out = []
    if cfg.alphamissense:
        from vareff.engine.lookup_adapters import AlphaMissenseColumns

        out.append(AlphaMissenseColumns(cfg.alphamissense, cfg.am_transcript))
    if cfg.annotation:
        from vareff.engine.lookup_adapters import RegionColumns

        out.append(RegionColumns(cfg.annotation))
    return out
