"""What a stored score is keyed by, so that a wrong hit cannot happen.

A stored entry is reused only when all of these are equal (docs/store.md):

* the backend **configuration** (:func:`config_descriptor`): backend name, the version of its
  score definitions in vareff (:data:`DEFINITIONS`), its full ``provenance()`` (weights
  checksums, options, precision, device), checksums of every non-weight file of its checkpoint
  directory (tokenizer, config), of its annotation table (SpliceAI), its backend options from
  ``--model-option``, and its output schema;
* the **reference contig** (:class:`ContigIds`): FASTA contig name, the genomic offset of a
  sliced FASTA, its length and the SHA-256 of its (upper-cased) sequence;
* the **allele as the backend sees it**: genomic 1-based position, REF and ALT (upper-cased VCF
  alleles; backends read these, so two spellings of one variant are two entries).

Configurations and contigs are named by a hash of their descriptor (:func:`digest`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from vareff import __version__
from vareff.errors import Status

log = logging.getLogger("vareff")

#: on-disk layout version of a store folder; another value is ignored with a warning
STORE_FORMAT = 1

#: version of each backend's score definitions in vareff: bump it whenever a score's meaning or
#: value changes, so that stores written before are not mixed with new scores
DEFINITIONS = {"spliceai": 2, "grover": 1, "nt": 1, "segmentnt": 1}

#: model statuses that are a function of the key alone and so may be stored with the entry
#: (``None``: scored); anything else (model_error, input-dependent reasons) is recomputed
STORABLE_STATUS = frozenset({None, Status.NEAR_CONTIG_EDGE.value, Status.OUTSIDE_GENE.value,
                             Status.N_IN_WINDOW.value, Status.ALLELE_TOO_LONG.value})

#: backend options that only direct side outputs and do not change the scores
_SIDE_OUTPUT_OPTIONS = ("profiles", "profile_alleles", "profile_flank")


def digest(obj) -> str:
    """Short stable name (20 hex digits of SHA-256) of a JSON-serializable descriptor."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def definitions_version(backend: str) -> str:
    """Score-definition version of ``backend``; unknown backends are tied to this vareff release."""
    v = DEFINITIONS.get(backend)
    return str(v) if v is not None else f"vareff-{__version__}"


def _device_of(scorer) -> str | None:
    dev = getattr(scorer, "device", None)
    if dev is None and not getattr(scorer, "lazy_weights", False):
        dev = getattr(getattr(scorer, "model", None), "device", None)
    return None if dev is None else str(dev).split(":")[0]


def _checkpoint_files(scorer) -> dict[str, str]:
    """SHA-256 of every non-weight file of a checkpoint directory (tokenizer, vocabulary, config)."""
    if getattr(scorer, "lazy_weights", False):  # SpliceAI: weights checksummed in provenance(), nothing else
        return {}
    model = getattr(scorer, "model", None)
    path = getattr(model, "path", None)
    if path is None or not Path(path).is_dir():
        return {}
    weights = {Path(w).resolve() for w in getattr(model, "weight_files", [])}
    out = {}
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.resolve() not in weights \
                and not f.name.endswith((".safetensors", ".bin", ".pt", ".h5", ".index.json")):
            out[f.name] = file_sha256(f)
    return out


def _annotation_file(scorer) -> dict[str, str]:
    genes = getattr(scorer, "genes", None)
    source = getattr(genes, "source", None)
    if source and os.path.isfile(source):
        return {"annotation_sha256": file_sha256(source)}
    return {}


def backend_options(scorer, model_options: dict) -> dict:
    """``--model-option`` entries addressed to this backend (prefix ``<name>.``), side outputs left out."""
    prefix = scorer.name + "."
    return {k: v for k, v in sorted(model_options.items())
            if k.startswith(prefix) and k[len(prefix):] not in _SIDE_OUTPUT_OPTIONS}


def has_side_outputs(scorer, model_options: dict) -> bool:
    """True when the backend writes per-allele side outputs (e.g. SegmentNT ``--profiles``): hits would skip them."""
    return bool(model_options.get(f"{scorer.name}.profiles"))


def config_descriptor(scorer, model_options: dict | None = None) -> dict:
    """Everything about a backend that determines its scores (see module doc)."""
    return {
        "store_format": STORE_FORMAT,
        "backend": scorer.name,
        "definitions": definitions_version(scorer.name),
        "provenance": {k: str(v) for k, v in scorer.provenance().items()},
        "device": _device_of(scorer),
        "checkpoint_files": _checkpoint_files(scorer),
        **_annotation_file(scorer),
        "options": {k: str(v) for k, v in backend_options(scorer, model_options or {}).items()},
        "schema": [f"{f.name}:{f.type}" for f in scorer.schema()],
        "info_fields": [f"{f.id}:{f.number}:{f.type}" for f in scorer.info_fields()],
    }


class ContigIds:
    """FASTA contig -> stable id (name, offset, length, SHA-256 of the sequence).

    Hashing a contig reads it once; the result is cached in memory and in ``cache_dir`` under a
    key made of the FASTA's and its index's path, size and mtime, so later runs pay nothing.
    """

    CHUNK = 1 << 23

    def __init__(self, genome, cache_dir: Path | None):
        self.genome = genome
        self._ids: dict[str, tuple | None] = {}
        self._sha: dict[str, str] = {}
        self._cache_file = None
        if cache_dir is not None:
            stat = []
            for p in (genome.path, genome.path + ".fai"):
                try:
                    st = os.stat(p)
                    stat.append([os.path.realpath(p), st.st_size, st.st_mtime_ns])
                except OSError:
                    stat.append([p, None, None])
            self._cache_file = Path(cache_dir) / f"{digest(stat)}.json"
            try:
                self._sha = json.loads(self._cache_file.read_text())
            except (OSError, ValueError):
                self._sha = {}

    def sequence_sha256(self, fasta_contig: str) -> str:
        sha = self._sha.get(fasta_contig)
        if sha is None:
            fa, n = self.genome._fa, self.genome.lengths[fasta_contig]
            h = hashlib.sha256()
            for a in range(0, n, self.CHUNK):
                h.update(fa.fetch(fasta_contig, a, min(n, a + self.CHUNK)).upper().encode())
            sha = self._sha[fasta_contig] = h.hexdigest()
            self._save()
        return sha

    def _save(self) -> None:
        if self._cache_file is None:
            return
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_file.with_name(f".tmp-{os.getpid()}-{self._cache_file.name}")
            tmp.write_text(json.dumps(self._sha))
            os.replace(tmp, self._cache_file)
        except OSError as e:  # a cache only: the run goes on
            log.debug("could not cache contig checksums in %s: %s", self._cache_file, e)

    def descriptor(self, chrom: str) -> dict | None:
        """The identity of the FASTA contig that VCF contig ``chrom`` resolves to (None: absent)."""
        s = self.genome.resolve(chrom)
        if s is None:
            return None
        return {"contig": s.fasta_contig, "offset0": s.offset0, "length": self.genome.lengths[s.fasta_contig],
                "sha256": self.sequence_sha256(s.fasta_contig)}

    def id_of(self, chrom: str) -> tuple[str, dict] | None:
        """``(contig id, descriptor)`` for VCF contig ``chrom``, or None when the FASTA lacks it."""
        if chrom not in self._ids:
            d = self.descriptor(chrom)
            self._ids[chrom] = None if d is None else (digest(d), d)
        return self._ids[chrom]
