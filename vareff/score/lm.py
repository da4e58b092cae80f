"""The windowed language-model scorer base: what GROVER, NT, SegmentNT (and the next model) share.

A windowed LM scorer (:class:`WindowedScorer`) scores a chunk of alleles in four steps:

1. **Windows** (:meth:`WindowedScorer.sites`): every scorable allele is placed in a reference
   window on a genome-wide grid (:meth:`~WindowedScorer.place`, subclass), so that the alleles of
   one grid cell share one reference window; the window is fetched once per chunk, the allele is
   checked (length, symbolic ALT, contig, REF, N) and its alt window built
   (:meth:`~WindowedScorer.alt_window`).  The result is one :class:`Site` per allele and strand:
   with ``strands=both`` a second, reverse-complement site is added (:meth:`~WindowedScorer.reverse_site`).
2. **Passes** (subclass, :meth:`~WindowedScorer.score_sites`): the subclass tokenizes the windows and
   says which model passes each site needs (masked / unmasked / alt); identical passes run once.
3. **Running**: :func:`length_batches` groups passes by length (padding stays small, or none), the
   model runs batch by batch, a failing batch marks only its own alleles ``model_error``;
   :class:`LRU` caches reference passes across chunks.
4. **Read-out**: each site gets its values (a dict of columns or an array), the strands of an
   allele are merged (:meth:`~WindowedScorer.merge_strands`, mean by default) and the subclass
   turns the per-allele values into columns (:meth:`~WindowedScorer.result`).

Option parsing (``<prefix>.<name>=value`` in the engine's ``model_options``) is shared too:
:func:`parse_options`.  Strand option (every backend): ``strands=forward`` (default) or ``both``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, Sequence


from vareff.errors import SCORABLE, ConfigError, Status
from vareff.score.base import AlleleBatch, ScoreResult
from vareff.window.genome import Genome


__all__ = ["Site", "WindowedScorer", "LRU", "grid_window", "window_for", "length_batches", "parse_options", "reverse_complement",
           "STRANDS"]

#: values of the ``strands`` option
STRANDS = ("forward", "both")
_ACGTN = frozenset("ACGTN")
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string (A<->T, C<->G; N and other letters kept)."""
    return seq.translate(_COMPLEMENT)[::-1]


# --------------------------------------------------------------------------- options


def _int(v, key: str, label: str):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} option {key}={v!r} is not an integer") from None


def parse_options(cls, options: dict | None, prefixes: tuple[str, ...], label: str):
    """Options for dataclass ``cls`` from the engine's shared ``model_options``.

    Keys are ``<prefix><name>`` (e.g. ``nt.window``) or a bare known name; another model's
    prefixed keys are skipped; an unknown name with this model's prefix is a :class:`ConfigError`.
    Values go through ``cls._convert(name, value, key)`` when the class has it, else ``int``;
    ``strands`` is checked against :data:`STRANDS`.
    """
    names = {f.name for f in fields(cls)}
    kw: dict[str, Any] = {}
    for key, value in (options or {}).items():
        k = str(key)
        for pre in prefixes:
            if k.startswith(pre):
                k, mine = k[len(pre):], True
                break
        else:
            if "." in k:  # another model's option
                continue
            mine = False
        k = k.replace("-", "_")
        if k not in names:
            if mine:
                raise ConfigError(f"unknown {label} option {key!r}", f"known: {', '.join(sorted(names))}")
            continue
        if k == "strands":
            if value not in STRANDS:
                raise ConfigError(f"{label} option {key}={value!r} is not known", f"use {' or '.join(STRANDS)}")
            kw[k] = value
            continue
        convert = getattr(cls, "_convert", None)
        kw[k] = convert(k, value, key) if convert is not None else _int(value, key, label)
    return cls(**kw)


# --------------------------------------------------------------------------- windows


def grid_window(pos0: int, ref_len: int, window: int, stride: int, min_flank: int,
                span: tuple[int, int], multiple: int = 6) -> tuple[int, int]:
    """Genomic ``[start0, end0)`` of the reference window for an allele at ``[pos0, pos0 + ref_len)``.

    The grid window (starts ``t * stride``) whose centre is nearest the allele's; centred (start
    rounded down to a multiple of 6) when a flank would be shorter than ``min_flank``; shifted into
    ``span`` (the FASTA contig) and, for a contig shorter than the window, cut to the longest
    multiple of ``multiple`` that fits.  (The k-mer models' rule; GROVER keeps its own.)
    """
    centre2 = 2 * pos0 + ref_len  # twice the allele centre (integer arithmetic)
    t = math.floor((centre2 - window) / (2 * stride) + 0.5)
    start = t * stride
    if min(pos0 - start, start + window - pos0 - ref_len) < min_flank:
        start = (centre2 - window) // 2
        start -= start % 6
    lo, hi = span
    if hi - lo < window:  # short contig: the longest allowed window, as centred as the contig allows
        window = (hi - lo) // multiple * multiple
        start = (centre2 - window) // 2
    start = min(max(start, lo), hi - window)
    return start, start + window


def window_for(pos0: int, ref_len: int, opts) -> tuple[int, int]:
    """Genomic ``[start0, end0)`` of the reference window for an allele at ``[pos0, pos0+ref_len)`` (GROVER's rule).

    The grid window (starts ``t * opts.stride``, length ``opts.window``) whose centre is nearest the
    allele's; centred on the allele when a flank would be shorter than ``opts.min_flank``.  Not
    clipped to the contig (callers clip).
    """
    L, S = opts.window, opts.stride
    centre2 = 2 * pos0 + ref_len  # twice the allele centre (integer arithmetic)
    t = math.floor((centre2 - L) / (2 * S) + 0.5)
    start0 = t * S
    left = pos0 - start0
    right = start0 + L - (pos0 + ref_len)
    if min(left, right) < opts.min_flank:
        start0 = (centre2 - L) // 2
    return start0, start0 + L


@dataclass
class Site:
    """One allele on one strand, placed in its reference window (offsets 0-based into the window).

    ``key`` is the genomic reference window ``(chrom, start0, end0)`` whatever the strand; ``seq``
    and ``alt_seq`` are the windows as the model reads them (reverse-complemented on strand
    ``-``), ``s`` the allele's offset in them and ``ref``/``alt`` the allele on that strand.
    """

    row: int
    key: tuple[str, int, int]
    s: int
    ref: str
    alt: str
    seq: str
    alt_seq: str
    strand: str = "+"


class LRU(OrderedDict):
    """A small least-recently-used cache (reference passes reused across chunks)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        if self.size <= 0:
            return
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def length_batches(items: Sequence, length: Callable[[Any], int], batch_size: int, *,
                   same_length: bool = False, max_tokens: Callable[[int], int] | None = None) -> Iterator[list]:
    """Batches of ``items`` in increasing length (stable), at most ``batch_size`` each.

    ``same_length``: a batch never mixes lengths (inputs that cannot be padded); ``max_tokens(L)``
    then lowers the batch size for long inputs.
    """
    order = sorted(items, key=length)
    if not same_length:
        for b0 in range(0, len(order), batch_size):
            yield order[b0:b0 + batch_size]
        return
    groups: dict[int, list] = {}
    for it in order:
        groups.setdefault(length(it), []).append(it)
    for L, group in groups.items():
        per = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens(L)))
        for b0 in range(0, len(group), per):
            yield group[b0:b0 + per]


# --------------------------------------------------------------------------- the base


class WindowedScorer:
    """Base of the windowed language-model backends (:class:`~vareff.score.base.Scorer`).

    Subclasses set ``name`` and ``label`` and implement :meth:`place`, :meth:`score_sites` and
    :meth:`result`; they may override the checks (:meth:`window_error`, :meth:`window_status`),
    the alt window (:meth:`alt_window`, :meth:`reverse_site`) and the strand merge.  ``self.opts``
    must have ``max_allele`` and ``strands``.
    """

    name: str = "lm"
    label: str = "LM"
    #: check for a symbolic ALT before the window is read (else after the REF/N checks)
    symbolic_first: bool = True

    opts: Any

    # -- subclass hooks --------------------------------------------------------------------------
    def place(self, pos0: int, ref_len: int, span: tuple[int, int]) -> tuple[int, int]:
        """Genomic reference window ``[start0, end0)`` for an allele at ``[pos0, pos0 + ref_len)``."""
        raise NotImplementedError

    def window_error(self, chrom: str, pos0: int, ws: int, we: int) -> str | None:
        """A status when no usable window exists (checked before the window is read)."""
        return None

    def window_status(self, seq: str, alt: str) -> str | None:
        """A status when the model cannot read the window or the allele (e.g. ``n_in_window``)."""
        return None

    def alt_window(self, genome: Genome, key: tuple[str, int, int], seq: str, s: int, ref: str, alt: str) -> str | Status:
        """The alt window: the reference window with the allele applied (an indel changes its length); or a status."""
        return seq[:s] + alt + seq[s + len(ref):]

    def reverse_site(self, genome: Genome, site: Site) -> Site | Status:
        """The reverse-complement twin of a forward site (or a status): same genomic window, read on strand -."""
        L = len(site.seq)
        return Site(site.row, site.key, L - site.s - len(site.ref), reverse_complement(site.ref),
                    reverse_complement(site.alt), reverse_complement(site.seq), reverse_complement(site.alt_seq), "-")

    def score_sites(self, sites: list[Site], batch: AlleleBatch) -> list:
        """Run the model for ``sites``; one value per site (a status string when it could not be scored)."""
        raise NotImplementedError

    def merge_strands(self, forward, reverse):
        """One allele's value from its forward and reverse-complement values (default: the mean)."""
        return (forward + reverse) / 2

    def result(self, n: int, values: list, status: list) -> ScoreResult:
        """Columns for ``n`` alleles from their values (None: not scored)."""
        raise NotImplementedError

    # -- the shared steps ------------------------------------------------------------------------
    def score(self, batch: AlleleBatch, genome: Genome) -> ScoreResult:
        n = len(batch)
        status: list[str | None] = [None] * n
        sites = self.sites(batch, genome, status)
        got = self.score_sites(sites, batch)
        values: list = [None] * n
        for site, v in zip(sites, got):  # a reverse site follows its forward twin
            if status[site.row] is not None:
                continue
            if isinstance(v, str):
                status[site.row], values[site.row] = v, None
            elif site.strand == "-":
                values[site.row] = self.merge_strands(values[site.row], v)
            else:
                values[site.row] = v
        return self.result(n, values, status)

    def sites(self, batch: AlleleBatch, genome: Genome, status: list) -> list[Site]:
        """Place, fetch and check every scorable allele of ``batch``; statuses go to ``status``."""
        o = self.opts
        ref_seqs: dict[tuple[str, int, int], str] = {}
        out: list[Site] = []
        for i in range(len(batch)):
            if batch.status[i] not in SCORABLE:
                continue
            ref, alt = batch.norm_ref[i].upper(), batch.norm_alt[i].upper()
            if len(ref) > o.max_allele or len(alt) > o.max_allele:
                status[i] = Status.ALLELE_TOO_LONG.value
                continue
            if not ref and not alt:
                status[i] = Status.NO_ALT.value
                continue
            symbolic = bool(set(alt) - _ACGTN)
            if symbolic and self.symbolic_first:
                status[i] = Status.SYMBOLIC_ALLELE.value
                continue
            chrom, pos0 = batch.chrom[i], int(batch.norm_pos1[i]) - 1
            span = genome.span(chrom)
            if span is None:
                status[i] = Status.CONTIG_NOT_IN_FASTA.value
                continue
            ws, we = self.place(pos0, len(ref), span)
            err = self.window_error(chrom, pos0, ws, we)
            if err is not None:
                status[i] = err
                continue
            key = (chrom, ws, we)
            seq = ref_seqs.get(key)
            if seq is None:
                seq = ref_seqs[key] = genome.fetch(chrom, ws, we)
            s = pos0 - ws
            if s < 0 or s + len(ref) > len(seq) or seq[s:s + len(ref)] != ref:
                status[i] = Status.REF_MISMATCH.value
                continue
            err = self.window_status(seq, alt)
            if err is not None:
                status[i] = err
                continue
            if symbolic:
                status[i] = Status.SYMBOLIC_ALLELE.value
                continue
            alt_seq = self.alt_window(genome, key, seq, s, ref, alt)
            if isinstance(alt_seq, Status):
                status[i] = alt_seq.value
                continue
            site = Site(i, key, s, ref, alt, seq, alt_seq)
            out.append(site)
            if getattr(o, "strands", "forward") == "both":
                rev = self.reverse_site(genome, site)
                if isinstance(rev, Status):
                    status[i] = rev.value
                    out.pop()
                    continue
                out.append(rev)
        return out

    # -- provenance ------------------------------------------------------------------------------
    def grid_settings(self) -> str:
        o = self.opts
        return f"window={o.window} stride={o.stride} min_flank={o.min_flank} max_allele={o.max_allele}"

    def dtype_device(self) -> str:
        return f"dtype={str(self.model.dtype).replace('torch.', '')} device={self.model.device}"

    def provenance_with(self, settings: str, **extra: str) -> dict[str, str]:
        """Checkpoint, weights checksum and ``settings`` (`` strands=both`` appended when set, so that
        default runs read as before) under ``<name>.``, plus ``extra`` keys."""
        if getattr(self.opts, "strands", "forward") != "forward":
            settings += f" strands={self.opts.strands}"
        out = {f"{self.name}.checkpoint": str(self.model.name), f"{self.name}.weights": self.model.checksum(),
               f"{self.name}.settings": settings}
        out.update({f"{self.name}.{k}": v for k, v in extra.items()})
        return out

