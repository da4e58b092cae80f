"""``vareff store info|compact|prune``: what a store holds, merging small segments, dropping configurations."""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow as pa
from filelock import FileLock, Timeout

from vareff.store.folder import StoreFolder
from vareff.store.key import definitions_version
from vareff.store.segments import SEGMENT_GLOB, TMP_PREFIX, CorruptSegment, read_segment, segment_rows, write_segment

log = logging.getLogger("vareff")

STALE_TMP_SECONDS = 3600  # a temporary file older than this belongs to a killed writer


def _partitions(root: Path, config: str | None = None):
    for cdir in sorted((root / "data").glob(config or "*")):
        if not cdir.is_dir() or cdir.name.startswith("."):
            continue
        for kdir in sorted(cdir.iterdir()):
            if kdir.is_dir():
                for bdir in sorted(kdir.iterdir()):
                    if bdir.is_dir():
                        yield cdir.name, kdir.name, bdir


def _describe(desc: dict) -> str:
    prov = desc.get("provenance", {})
    short = {k: v for k, v in prov.items() if "weights" not in k and "checksum" not in k}
    if desc.get("declared"):
        short.update({f"declared.{k}": v for k, v in desc["declared"].items()})
    return f"{desc.get('backend')} (definitions {desc.get('definitions')}) " + " ".join(
        f"{k}={v}" for k, v in short.items()) + (" " + " ".join(f"{k}={v}" for k, v in desc.get("options", {}).items())
                                                 if desc.get("options") else "")


def info(root: str | os.PathLike, last_runs: int = 10) -> dict:
    """Entries per configuration and contig, segments, bytes on disk, hit rate of the last runs."""
    folder = StoreFolder(root, create=False)
    configs, contigs = folder.configs(), folder.contigs()
    per: dict[str, dict] = {}
    corrupt, bytes_total = [], 0
    for cfg, cid, bdir in _partitions(folder.root):
        c = per.setdefault(cfg, {"config": cfg, "description": _describe(configs.get(cfg, {"backend": "?"})),
                                 "imported": configs.get(cfg, {}).get("imported"),
                                 "current": configs.get(cfg, {}).get("definitions")
                                 == definitions_version(configs.get(cfg, {}).get("backend", "")),
                                 "entries": 0, "segments": 0, "bytes": 0, "contigs": defaultdict(int)})
        for seg in bdir.glob(SEGMENT_GLOB):
            size = seg.stat().st_size
            c["bytes"] += size
            bytes_total += size
            c["segments"] += 1
            try:
                n = segment_rows(seg)
            except Exception:  # unreadable footer
                corrupt.append(str(seg))
                continue
            c["entries"] += n
            c["contigs"][contigs.get(cid, {}).get("contig", cid)] += n
    for c in per.values():
        c["contigs"] = dict(c["contigs"])
    runs = folder.runs()[-last_runs:]
    run_rows = []
    for r in runs:
        served = sum(v.get("served", 0) for v in r.get("configs", {}).values())
        computed = sum(v.get("computed", 0) for v in r.get("configs", {}).values())
        run_rows.append({"time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("time", 0))),
                         "served": served, "computed": computed,
                         "hit_rate": served / (served + computed) if served + computed else 0.0,
                         "command": r.get("command", "")})
    return {"root": str(folder.root), "usable": folder.usable, "configs": list(per.values()),
            "bytes": bytes_total, "corrupt": corrupt, "runs": run_rows}


def format_info(d: dict) -> str:
    lines = [f"store {d['root']}: {len(d['configs'])} configurations, "
             f"{sum(c['entries'] for c in d['configs']):,} entries, {d['bytes'] / 1e6:.1f} MB on disk"]
    if not d["usable"]:
        lines.append("  (written by another store format: ignored by this vareff)")
    for c in d["configs"]:
        flag = "" if c["current"] else "  [other score definitions: ignored; prune with --stale]"
        lines.append(f"config {c['config']}: {c['description']}{flag}")
        if c.get("imported"):
            lines.append(f"  imported from {c['imported']}")
        lines.append(f"  {c['entries']:,} entries in {c['segments']} segments, {c['bytes'] / 1e6:.2f} MB")
        for contig, n in sorted(c["contigs"].items()):
            lines.append(f"    {contig}: {n:,}")
    for f in d["corrupt"]:
        lines.append(f"corrupt: {f} (`vareff store compact` removes it)")
    if d["runs"]:
        lines.append("last runs (served from the store / computed):")
        for r in d["runs"]:
            lines.append(f"  {r['time']}  {r['served']:,} / {r['computed']:,}  hit rate {r['hit_rate']:.1%}  "
                         f"{r['command'][:80]}")
    return "\n".join(lines)


def compact_partition(bdir: Path, meta: dict) -> tuple[int, int, int]:
    """Merge the segments of one partition into one (duplicates dropped); remove corrupt files and
    stale temporaries.  Returns (segments before, entries after, files removed as corrupt)."""
    lock = FileLock(str(bdir / ".compact.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return 0, 0, 0  # another compaction is on it
    try:
        now = time.time()
        for tmp in bdir.glob(f"{TMP_PREFIX}*"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass
        segs = sorted(bdir.glob(SEGMENT_GLOB))
        tables, read, bad = [], [], []
        for s in segs:
            try:
                tables.append(read_segment(s)[0])
                read.append(s)
            except FileNotFoundError:
                continue
            except CorruptSegment as e:
                log.warning("removing corrupt store file %s (%s)", s, str(e).split(": ", 1)[-1][:200])
                bad.append(s)
        for s in bad:
            s.unlink(missing_ok=True)
        if len(read) <= 1 and all(s.suffix == ".arrow" for s in read):  # Parquet segments: rewritten
            return len(segs), sum(t.num_rows for t in tables), len(bad)
        table = pa.concat_tables(tables, promote_options="default")
        df = pl.from_arrow(table).unique(["pos", "ref", "alt"], keep="first", maintain_order=True).sort("pos")
        merged = df.to_arrow().cast(table.schema.remove_metadata())
        write_segment(bdir, merged, meta)
        for s in read:
            s.unlink(missing_ok=True)
        return len(segs), merged.num_rows, len(bad)
    finally:
        lock.release()


def compact(root: str | os.PathLike, config: str | None = None) -> dict:
    """Merge every partition's segments into one; safe while other runs read and add."""
    folder = StoreFolder(root, create=False)
    before = after = entries = removed = 0
    for cfg, cid, bdir in _partitions(folder.root, config):
        n, e, bad = compact_partition(bdir, {"config": cfg, "contig": cid, "block": int(bdir.name)})
        before += n
        after += len(list(bdir.glob(SEGMENT_GLOB)))
        entries += e
        removed += bad
    return {"segments_before": before, "segments_after": after, "entries": entries, "corrupt_removed": removed}


def prune(root: str | os.PathLike, configs: list[str] = (), backends: list[str] = (), stale: bool = False) -> list[str]:
    """Drop configurations (by id, by backend name, or all with other score definitions); returns their ids."""
    folder = StoreFolder(root, create=False)
    known = folder.configs()
    drop = [c for c, d in known.items()
            if c in configs or d.get("backend") in backends
            or (stale and d.get("definitions") != definitions_version(d.get("backend", "")))]
    data_ids = {p.name for p in (folder.root / "data").glob("*") if p.is_dir() and not p.name.startswith(".")}
    drop += [c for c in configs if c in data_ids and c not in drop]
    for c in drop:
        d = folder.root / "data" / c
        if d.exists():
            trash = folder.root / "data" / f".trash-{c}-{uuid.uuid4().hex[:8]}"
            os.replace(d, trash)  # one atomic step: readers see the configuration whole or gone
            shutil.rmtree(trash, ignore_errors=True)
        (folder.root / "configs" / f"{c}.json").unlink(missing_ok=True)
    return drop
