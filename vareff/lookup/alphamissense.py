"""AlphaMissense as a lookup: query the table built by :mod:`vareff.lookup.am_build` (``vareff am-build``).

The table (layout: :mod:`vareff.lookup.am_table`) is memory-mapped, so opening it costs nothing
and a query touches only the pages it needs; a lookup is a binary search
(:func:`numpy.searchsorted`) of a 32-bit allele key per contig, then a gather of the payload
columns for the hits.

Join rule (as Ensembl VEP's AlphaMissense plugin, per allele instead of per transcript)
---------------------------------------------------------------------------------------
* An allele matches a row when the contig (after ``1``/``chr1``, ``MT``/``chrM``
  resolution), the 1-based position and the single-base REF and ALT are equal
  (case-insensitive).  Only SNVs can match: AlphaMissense scores single-nucleotide
  missense changes, so indels, MNVs, symbolic and non-missense alleles get nulls, as do
  alleles absent from the table.
* Several rows can share an allele when coding transcripts overlap (and always in the
  isoforms file).  Without a transcript request the row with the **highest**
  ``am_pathogenicity`` is reported (ties: the smallest transcript id), i.e. the most
  damaging reading, which keeps a ranking by ``am_pathogenicity`` conservative.
* With ``transcript=`` (VEP's ``transcript_match=1``) only rows whose transcript id is
  one of the requested ids count, compared without the version suffix
  (``ENST00000308271`` matches ``ENST00000308271.14``); an allele none of whose rows
  match gets nulls.  Among several matching rows the highest score wins as above.
* ``am_class`` is the published class, not recomputed; the published thresholds are
  ``am_pathogenicity < 0.34`` likely benign, ``> 0.564`` likely pathogenic, otherwise
  ambiguous (:data:`CLASS_THRESHOLDS`).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from vareff.errors import ConfigError, InputError
from vareff.lookup.am_table import BASE_CODE_ANYCASE, CLASS_THRESHOLDS, FORMAT_NAME, FORMAT_VERSION, MAX_POS, OUTPUT_SCHEMA
from vareff.window.contigs import resolve_contig

log = logging.getLogger(__name__)

__all__ = ["AlphaMissenseLookup", "CLASS_THRESHOLDS", "OUTPUT_SCHEMA"]

@dataclass
class _Contig:
    """Zero-copy numpy views of one contig's record batch."""

    key: np.ndarray  # uint32, sorted
    score: np.ndarray  # float32
    cls: np.ndarray  # int8 codes
    tx: np.ndarray  # int32 codes
    up: np.ndarray | None  # int32 codes; None when the table has no UniProt ids
    ppos: np.ndarray  # uint32
    pref: np.ndarray  # int8 codes
    palt: np.ndarray  # int8 codes


_BASE_LUT = np.full(256, -1, dtype=np.int64)
for _b, _i in BASE_CODE_ANYCASE.items():
    _BASE_LUT[ord(_b)] = _i


def _base_codes(alleles: pl.Series) -> np.ndarray:
    """0..3 for single-base A/C/G/T alleles (any case), -1 for anything else (vectorised)."""
    arr = alleles.cast(pl.String).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    if data_buf is None or data_buf.size == 0:
        return np.full(n, -1, dtype=np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)
    first = data[np.minimum(offsets[:-1], len(data) - 1)]
    codes = _BASE_LUT[first]
    codes[np.diff(offsets) != 1] = -1
    if arr.null_count:
        codes[np.asarray(arr.is_null())] = -1
    return codes


def _strip_version(tx: str) -> str:
    return re.sub(r"\.\d+$", "", tx.strip())


class AlphaMissenseLookup:
    """Allele-exact AlphaMissense lookups on a table made by :func:`build_table`.

    Open once per run (:meth:`open`) and call :meth:`annotate` per chunk of alleles.
    The table is memory-mapped: opening reads only the schema and dictionaries, and each
    contig's arrays are mapped the first time an allele on it is queried.  Resident
    memory therefore grows with the pages actually touched (at most the table size,
    about 1.7 GB for hg38) and is shared with the OS page cache.

    The join rule (allele match after contig resolution; highest score, or the requested
    transcripts, when several rows share an allele) is described in the module docstring.

    Attributes
    ----------
    path : str
        The table.
    metadata : dict
        The build metadata (source name and SHA-256, layout, genome, rows per contig).
    """

    def __init__(self, path: str, source: pa.MemoryMappedFile, reader: ipc.RecordBatchFileReader,
                 metadata: dict, transcript: str | Iterable[str] | None):
        self.path = path
        self._source = source
        self._reader = reader
        self.metadata = metadata
        self._contig_names = list(metadata["contigs"])
        self._batch_of = {c: i for i, c in enumerate(self._contig_names)}
        self._cache: dict[int, _Contig] = {}
        self._resolved: dict[str, int] = {}
        first = reader.get_batch(0)
        self._tx_dict = first.column("transcript_id").dictionary
        self._class_names = pl.from_arrow(first.column("am_class").dictionary).cast(pl.String)
        self._tx_names = pl.from_arrow(self._tx_dict).cast(pl.String)
        self._up_names = pl.from_arrow(first.column("uniprot_id").dictionary).cast(pl.String)
        self._amino_names = pl.from_arrow(first.column("protein_ref").dictionary).cast(pl.String)
        self._allowed: np.ndarray | None = None
        if transcript is not None:
            wanted = {transcript} if isinstance(transcript, str) else set(transcript)
            wanted = {_strip_version(t) for t in wanted if t and t.strip()}
            if not wanted:
                raise ConfigError("transcript= was given but names no transcript id",
                                  "pass e.g. transcript='ENST00000308271' or a list of ids, or None")
            names = self._tx_dict.to_pylist()
            self._allowed = np.fromiter((_strip_version(t) in wanted for t in names), bool, len(names))
            if not self._allowed.any():
                example = ", ".join(sorted(wanted)[:3])
                raise ConfigError(
                    f"none of the requested transcripts ({example}{', ...' if len(wanted) > 3 else ''}) "
                    f"occurs in the AlphaMissense table {path!r}",
                    "use Ensembl ENST ids (the version suffix is optional); the canonical hg38 table "
                    "has one transcript per gene, the isoforms table has all of them",
                )

    @classmethod
    def open(cls, path: str | os.PathLike, *, transcript: str | Iterable[str] | None = None
             ) -> "AlphaMissenseLookup":
        """Open a table built by :func:`build_table`.

        Parameters
        ----------
        path : str or PathLike
            The table (output of ``vareff am-build``).
        transcript : str or iterable of str, optional
            Report only rows of these transcripts (Ensembl ids, version optional), as
            VEP's ``transcript_match=1``; e.g. the MANE Select transcripts of a gene panel.
            Default: any transcript, the highest-scoring row per allele.

        Raises
        ------
        InputError
            The file is missing, is not such a table (e.g. the raw ``.tsv.gz`` was given)
            or was written by an incompatible format version.
        ConfigError
            ``transcript`` names no transcript present in the table.
        """
        p = os.fspath(path)
        hint = "build the table once with: vareff am-build AlphaMissense_hg38.tsv.gz -o am_hg38.arrow"
        if not os.path.isfile(p):
            raise InputError(f"AlphaMissense table {p!r} does not exist", hint)
        with open(p, "rb") as f:
            magic = f.read(6)
        if magic != b"ARROW1":
            what = " (this is the published gzip TSV, not a built table)" if magic[:2] == b"\x1f\x8b" else ""
            raise InputError(f"{p!r} is not a vareff AlphaMissense table{what}", hint)
        source = pa.memory_map(p, "r")
        try:
            reader = ipc.open_file(source)
            raw = (reader.schema.metadata or {}).get(b"vareff")
            meta = json.loads(raw) if raw else {}
        except (pa.ArrowInvalid, ValueError) as e:
            source.close()
            raise InputError(f"{p!r} is not a readable vareff AlphaMissense table: {e}", hint) from None
        if meta.get("format") != FORMAT_NAME:
            source.close()
            raise InputError(f"{p!r} is an Arrow file but not a vareff AlphaMissense table", hint)
        if meta.get("format_version") != FORMAT_VERSION:
            source.close()
            raise InputError(
                f"{p!r} has table format version {meta.get('format_version')}, this vareff reads "
                f"version {FORMAT_VERSION}", "rebuild the table with this vareff: " + hint.split(": ", 1)[1])
        return cls(p, source, reader, meta, transcript)

    # -- properties ------------------------------------------------------------------------

    @property
    def genome(self) -> str:
        """``hg38`` or ``hg19`` (from the source's ``genome`` column)."""
        return self.metadata["genome"]

    @property
    def layout(self) -> str:
        """``canonical`` (hg38/hg19 files) or ``isoforms``."""
        return self.metadata["layout"]

    @property
    def contigs(self) -> list[str]:
        """Contig names in the table, in table order."""
        return list(self._contig_names)

    def __len__(self) -> int:
        return int(self.metadata["rows"])

    def close(self) -> None:
        """Release the memory map (arrays handed out before stay valid only until then)."""
        self._cache.clear()
        self._source.close()

    def __enter__(self) -> "AlphaMissenseLookup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"AlphaMissenseLookup({self.path!r}, genome={self.genome}, layout={self.layout}, "
                f"rows={len(self):,})")

    # -- internals -------------------------------------------------------------------------

    def _contig(self, code: int) -> _Contig:
        c = self._cache.get(code)
        if c is None:
            b = self._reader.get_batch(code)
            np_ = lambda name: b.column(name).to_numpy(zero_copy_only=True)  # noqa: E731
            ix = lambda name: b.column(name).indices.to_numpy(zero_copy_only=True)  # noqa: E731
            c = _Contig(
                key=np_("key"), score=np_("am_pathogenicity"), cls=ix("am_class"),
                tx=ix("transcript_id"), up=ix("uniprot_id") if self.layout != "isoforms" else None,
                ppos=np_("protein_pos"),
                pref=ix("protein_ref"), palt=ix("protein_alt"),
            )
            self._cache[code] = c
        return c

    def _contig_codes(self, names: list[str]) -> dict[str, int]:
        """Table contig code (or -1) per query contig name; logs new aliases once."""
        aliases = []
        for name in names:
            if name not in self._resolved:
                hit = resolve_contig(name, self._batch_of)
                self._resolved[name] = -1 if hit is None else self._batch_of[hit]
                if hit is not None and hit != name:
                    aliases.append(f"{name}->{hit}")
        if aliases:
            log.info("AlphaMissense table %s: contig names resolved (%s)", self.path, ", ".join(aliases))
        return {name: self._resolved[name] for name in names}

    def _contig_code_array(self, chrom: pl.Series) -> np.ndarray:
        """int32 table contig code per allele (-1: absent or null)."""
        chrom = chrom.cast(pl.String)
        runs = chrom.rle()  # alleles arrive in genomic order: few runs
        if runs.len() * 8 <= max(len(chrom), 8):
            lengths = runs.struct.field("len").to_numpy()
            values = runs.struct.field("value").to_list()
            cmap = self._contig_codes([v for v in set(values) if v is not None])
            codes = np.array([cmap.get(v, -1) if v is not None else -1 for v in values], dtype=np.int32)
            return np.repeat(codes, lengths)
        cmap = self._contig_codes(chrom.unique().drop_nulls().to_list())
        return chrom.replace_strict(cmap, default=-1, return_dtype=pl.Int32).fill_null(-1).to_numpy()

    def _select(self, keys: np.ndarray, tx: np.ndarray, qk: np.ndarray) -> np.ndarray:
        """Row index (or -1) of the chosen row for each query key, per the join rule."""
        if len(qk) > 1 and not (qk[1:] >= qk[:-1]).all():
            # binary searches in sorted order reuse cache lines (~10x faster on big contigs)
            order = np.argsort(qk, kind="stable")
            out = np.empty(len(qk), dtype=np.int64)
            out[order] = self._select(keys, tx, qk[order])
            return out
        left = np.searchsorted(keys, qk, side="left")
        if self._allowed is None:
            ok = left < len(keys)
            ok[ok] = keys[left[ok]] == qk[ok]
            return np.where(ok, left, -1)
        right = np.searchsorted(keys, qk, side="right")
        counts = right - left
        out = np.full(len(qk), -1, dtype=np.int64)
        if counts.sum() == 0:
            return out
        qid = np.repeat(np.arange(len(qk)), counts)
        starts = np.repeat(left - np.cumsum(counts) + counts, counts)
        cand = starts + np.arange(len(qid))  # rows of each allele, best first
        keep = self._allowed[tx[cand]]
        qid, cand = qid[keep], cand[keep]
        first_q, first_i = np.unique(qid, return_index=True)
        out[first_q] = cand[first_i]
        return out

    # -- public ----------------------------------------------------------------------------

    def annotate(self, alleles: pl.DataFrame) -> pl.DataFrame:
        """AlphaMissense columns for each allele, in input order.

        Parameters
        ----------
        alleles : polars.DataFrame
            Columns ``chrom`` (any contig naming: ``1``, ``chr1``; resolved against the
            table), ``pos`` (1-based integer), ``ref``, ``alt`` (normalized alleles;
            case-insensitive).  Other columns are ignored.  Rows that are not SNVs
            (indels, MNVs, ``<DEL>``, ``*``, ``.``), have nulls, lie on contigs absent from
            the table or have no row in it get nulls.

        Returns
        -------
        polars.DataFrame
            Same height and row order as ``alleles``, columns ``am_pathogenicity``
            (Float32), ``am_class``, ``am_transcript_id``, ``am_protein_variant`` (e.g.
            ``K839Q``), ``am_uniprot_id`` (String; null for the isoforms table).

        Raises
        ------
        InputError
            A required column is missing.
        """
        missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in alleles.columns]
        if missing:
            raise InputError(
                f"alleles passed to AlphaMissenseLookup.annotate lack column(s) {missing}",
                "pass a polars DataFrame with chrom, pos (1-based), ref and alt")
        n = alleles.height
        if n == 0:
            return pl.DataFrame(schema=OUTPUT_SCHEMA)
        c = self._contig_code_array(alleles["chrom"])
        p = alleles["pos"].cast(pl.Int64, strict=False).fill_null(-1).to_numpy()
        r = _base_codes(alleles["ref"])
        a = _base_codes(alleles["alt"])
        valid = (c >= 0) & (r >= 0) & (a >= 0) & (r != a) & (p >= 1) & (p <= MAX_POS)
        k = (p * 16 + r * 4 + a).astype(np.uint32)  # garbage where not valid; never used there

        # gather the chosen rows contig by contig (alleles in genomic order need no sort)
        parts: list[tuple] = []
        idx_valid = np.flatnonzero(valid)
        if len(idx_valid):
            cv = c[idx_valid]
            if (cv[1:] >= cv[:-1]).all():
                idx_sorted, cv_sorted = idx_valid, cv
            else:
                order = np.argsort(cv, kind="stable")
                idx_sorted, cv_sorted = idx_valid[order], cv[order]
            bounds = np.concatenate(([0], np.flatnonzero(cv_sorted[1:] != cv_sorted[:-1]) + 1,
                                     [len(cv_sorted)]))
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                qi = idx_sorted[lo:hi]
                data = self._contig(int(cv_sorted[lo]))
                rows = self._select(data.key, data.tx, k[qi])
                found = rows >= 0
                if found.any():
                    qi, rows = qi[found], rows[found]
                    parts.append((qi, data.score[rows], data.cls[rows], data.tx[rows],
                                  data.up[rows] if data.up is not None else None,
                                  data.ppos[rows], data.pref[rows], data.palt[rows]))
        if not parts:
            return pl.DataFrame({name: pl.Series(name, [None] * n, dtype=dt)
                                 for name, dt in OUTPUT_SCHEMA.items()})
        cat = lambda j: np.concatenate([p_[j] for p_ in parts])  # noqa: E731
        hit_idx = cat(0)
        # strings are built for the hits only, then spread to all alleles by one gather
        # (polars string views: a gather copies 16-byte views, not the bytes)
        u32 = lambda a: pl.Series(a.astype(np.uint32, copy=False))  # noqa: E731
        hits = pl.DataFrame({
            "am_pathogenicity": pl.Series(cat(1), dtype=pl.Float32),
            "am_class": self._class_names.gather(u32(cat(2))),
            "am_transcript_id": self._tx_names.gather(u32(cat(3))),
            "am_protein_variant": pl.select(pl.concat_str([
                self._amino_names.gather(u32(cat(6))),
                pl.Series(cat(5)).cast(pl.String),
                self._amino_names.gather(u32(cat(7))),
            ])).to_series(),
            "am_uniprot_id": (self._up_names.gather(u32(cat(4))) if parts[0][4] is not None
                              else pl.Series([None] * len(hit_idx), dtype=pl.String)),
        })
        where = np.zeros(n, dtype=np.uint32)
        where[hit_idx] = np.arange(len(hit_idx), dtype=np.uint32)
        miss = np.ones(n, dtype=bool)
        miss[hit_idx] = False
        spread = pl.from_arrow(pa.array(where, mask=miss))
        return hits.select(pl.all().gather(spread)).cast(OUTPUT_SCHEMA)
