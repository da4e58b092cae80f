"""A store folder: configurations, contigs, partitions of segments, and the log of runs.

Layout (docs/store.md)::

    STORE.json                       {"format": 1}
    configs/<config id>.json         what determines a backend's scores (key.config_descriptor)
    contigs/<contig id>.json         FASTA contig name, offset, length, SHA-256
    refs/<fasta id>.json             cached contig checksums of one FASTA file
    data/<config>/<contig>/<block>/seg-<uuid>-<crc32>.arrow    entries (segments.py)
    runs/<run id>.json               per run: alleles served from the store / computed

Every file is written under a temporary name and renamed into place; segments are never
modified, only merged by compaction (a new segment, then the old ones are deleted), so any
number of processes on any number of hosts sharing the folder may read and add at once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from vareff import __version__
from vareff.errors import ConfigError
from vareff.store.key import STORE_FORMAT
from vareff.store.segments import Partition, TMP_PREFIX, write_segment

log = logging.getLogger("vareff")

AUTO_COMPACT = 64  # segments in a partition that trigger its compaction by the writer
BLOCK = 1_000_000  # partition width in bases (chunks never span one, see engine.run.iter_chunks)


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    with open(tmp, "w") as fh:
        fh.write(text)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class StoreFolder:
    """One store directory.  ``usable`` is False when it was written by an incompatible format."""

    def __init__(self, root: str | os.PathLike, create: bool = True):
        self.root = Path(root)
        self.usable = True
        self._partitions: dict[tuple, Partition] = {}
        self._reported: set[str] = set()
        head = self.root / "STORE.json"
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--store {str(self.root)!r} is not a directory", "give a folder for the score store")
        if head.exists():
            meta = read_json(head) or {}
            if meta.get("format") != STORE_FORMAT:
                log.warning("score store %s has format %r (this vareff reads format %d): it is ignored, "
                            "nothing is read from or added to it", self.root, meta.get("format"), STORE_FORMAT)
                self.usable = False
        elif self.root.exists() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
            raise ConfigError(f"--store {str(self.root)!r} is a non-empty folder that is not a vareff score store",
                              "give an empty or new folder")
        elif create:
            try:
                atomic_write_text(head, json.dumps({"format": STORE_FORMAT, "created_by": f"vareff {__version__}"}))
            except OSError as e:
                raise ConfigError(f"cannot create the score store {str(self.root)!r}: {e}") from None
        else:
            raise ConfigError(f"{str(self.root)!r} is not a vareff score store (no STORE.json)")

    # --- descriptors --------------------------------------------------------------------
    def _put_descriptor(self, kind: str, ident: str, desc: dict) -> None:
        path = self.root / kind / f"{ident}.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(desc, sort_keys=True, indent=1))

    def put_config(self, ident: str, desc: dict) -> None:
        self._put_descriptor("configs", ident, desc)

    def put_contig(self, ident: str, desc: dict) -> None:
        self._put_descriptor("contigs", ident, desc)

    def configs(self) -> dict[str, dict]:
        return {p.stem: d for p in sorted((self.root / "configs").glob("*.json"))
                if not p.name.startswith(TMP_PREFIX) and (d := read_json(p)) is not None}

    def contigs(self) -> dict[str, dict]:
        return {p.stem: d for p in sorted((self.root / "contigs").glob("*.json"))
                if not p.name.startswith(TMP_PREFIX) and (d := read_json(p)) is not None}

    # --- partitions ---------------------------------------------------------------------
    def partition_dir(self, config: str, contig: str, block: int) -> Path:
        return self.root / "data" / config / contig / f"{block:06d}"

    def partition(self, config: str, contig: str, block: int) -> Partition:
        key = (config, contig, block)
        p = self._partitions.get(key)
        if p is None:
            p = self._partitions[key] = Partition(self.partition_dir(*key), self.report_corrupt)
        return p

    def report_corrupt(self, path: Path, err: Exception) -> None:
        if str(path) not in self._reported:
            self._reported.add(str(path))
            log.warning("score store: skipping corrupt or truncated file %s (%s); `vareff store compact` "
                        "removes it", path, str(err).split(": ", 1)[-1][:200])

    def add(self, config: str, contig: str, block: int, table) -> None:
        """Write ``table`` as a new segment of the partition and make it visible to this process."""
        part = self.partition(config, contig, block)
        path = write_segment(part.dir, table, {"config": config, "contig": contig, "block": block})
        part.files.add(path.name)
        part.add([table])
        if len(part.files) > AUTO_COMPACT:  # keep partitions to a few files (and lookups fast)
            from vareff.store.admin import compact_partition

            compact_partition(part.dir, {"config": config, "contig": contig, "block": block})

    # --- runs -----------------------------------------------------------------------------
    def record_run(self, run_id: str, blob: dict) -> None:
        # a log line, not data: renamed into place whole, but not fsynced
        atomic_write_text(self.root / "runs" / f"{run_id}.json", json.dumps(dict(blob, time=time.time())), sync=False)

    def runs(self) -> list[dict]:
        out = [d for p in (self.root / "runs").glob("*.json") if (d := read_json(p)) is not None]
        return sorted(out, key=lambda d: d.get("time", 0))
