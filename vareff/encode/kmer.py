"""Nucleotide Transformer 6-mer tokenizer, vectorised with numpy.

Algorithm (the published NT tokenizer; Hugging Face ``EsmTokenizer`` over the published
``vocab.txt`` gives the same ids for A/C/G/T/N input):

1. Upper-case the sequence (soft-masked bases are ordinary bases).  Any letter other than A, C, G,
   T is read as ``N`` (IUPAC ambiguity codes, ``-``, ...): NT's vocabulary has no other symbols.
2. Split the sequence at every ``N``.  Each N-free piece is cut left to right into k-mers
   (k = 6); a trailing remainder shorter than k becomes single-nucleotide tokens.
3. Each ``N`` is its own single-nucleotide token, between the pieces.
4. ``<cls>`` is prepended; no end token.

So an ACGT-only window of ``L = 6 m`` nt gives ``1 + m`` tokens, and nucleotide ``i`` lies in
token ``1 + i // 6`` at offset ``i % 6``.

Token ids come from the checkpoint's ``vocab.txt`` (one token per line, id = line number).  The
published layouts (used when a directory has no ``vocab.txt``) are, with the 6-mers in
``itertools.product("ATCG", repeat=6)`` order (A, T, C, G: *not* alphabetical):

* NT v2 / SegmentNT (4107 ids): ``<unk> <pad> <mask> <cls> <eos> <bos>``, 4096 6-mers (ids
  6..4101), ``A T C G N`` (4102..4106).
* NT v1 (4105 embedding rows): ``<unk> <pad> <mask> <cls>``, 4096 6-mers (4..4099),
  ``A T C G N`` (4100..4104), then ``<eos> <bos>`` (ids 4105, 4106, outside the embedding table
  and never produced).
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vareff.encode.bpe import Encoded
from vareff.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["KmerTokenizer", "Encoded", "published_vocab", "BASES"]

#: the published k-mer product order
BASES = "ATCG"
_SPECIAL_V2 = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
_SPECIAL_V1 = ["<unk>", "<pad>", "<mask>", "<cls>"]


def _kmers(k: int) -> list[str]:
    return ["".join(p) for p in itertools.product(BASES, repeat=k)]


def published_vocab(version: str = "v2", k: int = 6) -> list[str]:
    """The published NT vocabulary, id = list index (``version``: ``"v1"`` or ``"v2"``)."""
    singles = list(BASES) + ["N"]
    if version == "v2":
        return _SPECIAL_V2 + _kmers(k) + singles
    if version == "v1":
        return _SPECIAL_V1 + _kmers(k) + singles + ["<eos>", "<bos>"]
    raise ValueError(f"unknown NT vocabulary version {version!r} (v1 or v2)")


def _byte_codes() -> np.ndarray:
    """uint8 -> base code: A/a 0, T/t 1, C/c 2, G/g 3, anything else 4 (read as N)."""
    table = np.full(256, 4, dtype=np.int64)
    for code, b in enumerate(BASES):
        table[ord(b)] = code
        table[ord(b.lower())] = code
    return table


_BYTE_CODE = _byte_codes()


class KmerTokenizer:
    """NT k-mer tokenizer over a vocabulary list (normally the checkpoint's ``vocab.txt``).

    Parameters
    ----------
    vocab : sequence of str
        Token strings, id = position.  Must hold ``<cls> <pad> <mask> <unk>``, every k-mer over
        A/T/C/G and the single nucleotides ``A T C G N``.
    k : int
        k-mer length (6 for every published NT / SegmentNT checkpoint).
    source : str
        Where the vocabulary came from (for messages).

    Attributes
    ----------
    cls_id, pad_id, mask_id, unk_id : int
    kmer_ids : np.ndarray
        int64 (4**k,): id of the k-mer whose base-4 code (A=0, T=1, C=2, G=3, first base most
        significant) is the index.
    single_ids : np.ndarray
        int64 (5,): ids of ``A T C G N``.
    """

    def __init__(self, vocab: Sequence[str], *, k: int = 6, source: str = "vocab"):
        self.k = int(k)
        self.source = source
        self.vocab = list(vocab)
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        missing = [t for t in ("<cls>", "<pad>", "<mask>", "<unk>") if t not in self.token_to_id]
        kmers = _kmers(self.k)
        singles = list(BASES) + ["N"]
        missing += [t for t in singles if t not in self.token_to_id]
        absent_kmers = [t for t in kmers if t not in self.token_to_id]
        if missing or absent_kmers:
            what = missing + absent_kmers[:3] + (["..."] if len(absent_kmers) > 3 else [])
            raise CheckpointError(
                f"{source}: not a Nucleotide Transformer {self.k}-mer vocabulary (lacks {', '.join(what)})",
                "use the vocab.txt of the checkpoint (InstaDeepAI nucleotide-transformer / segment_nt)",
            )
        self.cls_id = self.token_to_id["<cls>"]
        self.pad_id = self.token_to_id["<pad>"]
        self.mask_id = self.token_to_id["<mask>"]
        self.unk_id = self.token_to_id["<unk>"]
        self.eos_id = self.token_to_id.get("<eos>")
        self.kmer_ids = np.array([self.token_to_id[t] for t in kmers], dtype=np.int64)
        self.single_ids = np.array([self.token_to_id[t] for t in singles], dtype=np.int64)
        self._pow = (4 ** np.arange(self.k - 1, -1, -1)).astype(np.int64)  # (k,) base-4 place values
        #: nucleotide string of each id (None for special tokens)
        self.token_strings: list[str | None] = [None] * len(self.vocab)
        for i, t in enumerate(self.vocab):
            if t and not t.startswith("<") and set(t) <= set("ACGTN"):
                self.token_strings[i] = t

    # ------------------------------------------------------------------------------- construction
    @classmethod
    def from_directory(cls, directory: str | os.PathLike, *, vocab_size: int | None = None, k: int = 6) -> "KmerTokenizer":
        """Read ``vocab.txt`` of a checkpoint directory; without one, the published layout for ``vocab_size``.

        Raises :class:`CheckpointError` if an id the tokenizer can emit is outside the embedding
        table (``vocab_size``).
        """
        d = Path(directory)
        f = d / "vocab.txt"
        if f.is_file():
            lines = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines()]
            while lines and lines[-1] == "":
                lines.pop()
            tok = cls(lines, k=k, source=str(f))
        else:
            version = {4107: "v2", 4105: "v1"}.get(vocab_size or -1)
            if version is None:
                raise CheckpointError(
                    f"no vocab.txt in {str(d)!r} and vocab_size={vocab_size} matches no published NT layout",
                    "copy vocab.txt from the model repository next to config.json",
                )
            log.info("%s has no vocab.txt; using the published NT %s vocabulary (%d ids)", d, version, vocab_size)
            tok = cls(published_vocab(version, k), k=k, source=f"published NT {version} vocabulary")
        if vocab_size is not None:
            emitted = np.concatenate([tok.kmer_ids, tok.single_ids, [tok.cls_id, tok.pad_id, tok.mask_id, tok.unk_id]])
            if int(emitted.max()) >= vocab_size:
                raise CheckpointError(
                    f"{tok.source}: token id {int(emitted.max())} is outside the model's {vocab_size} embeddings",
                    "vocab.txt and the weights must come from the same checkpoint",
                )
        return tok

    # ------------------------------------------------------------------------------- encoding
    def codes(self, sequence: str) -> np.ndarray:
        """Base codes (L,) int64 of a sequence: A 0, T 1, C 2, G 3, anything else (N) 4; case-insensitive."""
        raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
        return _BYTE_CODE[raw]

    def encode_one(self, sequence: str) -> Encoded:
        """Tokenize one sequence: ids (with ``<cls>``) and the character span of every token."""
        k = self.k
        c = self.codes(sequence)  # (L,)
        L = len(c)
        if L == 0:
            return Encoded(np.array([self.cls_id], np.int64), np.array([-1], np.int64), np.array([-1], np.int64))
        is_n = c == 4
        if not is_n.any():  # fast path: one piece, whole k-mers then the remainder
            m = L // k
            ids = np.concatenate([[self.cls_id], self.kmer_ids[c[: m * k].reshape(m, k) @ self._pow], self.single_ids[c[m * k:]]])
            starts = np.concatenate([np.arange(0, m * k, k), np.arange(m * k, L)])
            ends = np.concatenate([starts[:m] + k, starts[m:] + 1])
            return Encoded(ids.astype(np.int64), np.concatenate([[-1], starts]).astype(np.int64),
                           np.concatenate([[-1], ends]).astype(np.int64))
        idx = np.arange(L)
        # start / end of the N-free piece each position belongs to
        last_n = np.maximum.accumulate(np.where(is_n, idx, -1))  # most recent N at or before i
        next_n = np.minimum.accumulate(np.where(is_n, idx, L)[::-1])[::-1]  # next N at or after i
        piece_start = last_n + 1
        full_end = piece_start + ((next_n - piece_start) // k) * k  # end of the whole k-mers of the piece
        kmer_start = ~is_n & ((idx - piece_start) % k == 0) & (idx + k <= full_end)
        single = is_n | (idx >= full_end)  # N, or in a piece's trailing remainder
        starts = np.nonzero(kmer_start | single)[0]  # (n,) token starts, in order
        is_kmer = kmer_start[starts]
        ids = self.single_ids[c[starts]]  # (n,)
        ks = starts[is_kmer]
        if len(ks):
            code = c[ks[:, None] + np.arange(k)] @ self._pow  # (n_kmer,) base-4 code of each k-mer
            ids[is_kmer] = self.kmer_ids[code]
        ends = starts + np.where(is_kmer, k, 1)
        return Encoded(
            np.concatenate([[self.cls_id], ids]).astype(np.int64),
            np.concatenate([[-1], starts]).astype(np.int64),
            np.concatenate([[-1], ends]).astype(np.int64),
        )

    def encode(self, sequences: Sequence[str]) -> list[Encoded]:
        """Tokenize several sequences (no padding); see :meth:`encode_one`."""
        return [self.encode_one(s) for s in sequences]

    def kmer_id(self, kmer: str) -> int:
        """Id of one token string (a k-mer over ACGT or a single ``A/C/G/T/N``; any case)."""
        c = self.codes(kmer)
        if len(c) == self.k and (c < 4).all():
            return int(self.kmer_ids[int(c @ self._pow)])
        if len(c) == 1:
            return int(self.single_ids[c[0]])
        raise ValueError(f"{kmer!r} is neither a {self.k}-mer over ACGT nor a single nucleotide")

    def pad(self, encoded: Sequence[Encoded] | Sequence[np.ndarray], *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to the longest: ``(input_ids, attention_mask)``, both int64 (B, T)."""
        rows = [e.ids if isinstance(e, Encoded) else np.asarray(e) for e in encoded]
        T = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = r
            mask[b, : len(r)] = 1
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    def __call__(self, sequences: Sequence[str] | str, *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` as ``transformers``' ``tokenizer(seqs, padding=True)`` gives them."""
        if isinstance(sequences, str):
            sequences = [sequences]
        return self.pad(self.encode(list(sequences)), device=device)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)
