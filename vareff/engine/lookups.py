"""The lookup stages a run asked for, in order: AlphaMissense, region class, priority (always last)."""
from __future__ import annotations

from vareff.config import RunConfig


def make_lookups(cfg: RunConfig) -> list:
    from vareff.engine.lookup_adapters import AlphaMissenseColumns, PriorityColumns, RegionColumns

    out = []
    if cfg.alphamissense:
        out.append(AlphaMissenseColumns(cfg.alphamissense, cfg.am_transcript))
    if cfg.annotation:
        out.append(RegionColumns(cfg.annotation, cfg.annotation_transcripts))
    out.append(PriorityColumns(cfg.priority))
    return out
