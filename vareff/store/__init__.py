"""The persistent score store: score each allele once (docs/store.md)."""
from __future__ import annotations

from vareff.store.hook import StoreHook

__all__ = ["StoreHook"]
