"""DNABERT (v1) tokenizer: overlapping k-mers (stride 1) looked up in a WordPiece ``vocab.txt``.

DNABERT checkpoints (``zhihan1996/DNA_bert_3`` .. ``_6``) hold a plain ``BertForMaskedLM`` and a
``vocab.txt`` of ``[PAD] [UNK] [CLS] [SEP] [MASK]`` plus every k-mer over A/C/G/T (4**k of them,
id = line number).  A sequence is written as its overlapping k-mers separated by spaces and
tokenized by ``transformers``' ``BertTokenizer``; this module gives the same ids directly:

    ``[CLS]``, kmer(0), kmer(1), ..., kmer(L - k), ``[SEP]``      (L - k + 3 tokens)

Token ``1 + i`` spans characters ``[i, i + k)``; a k-mer holding anything but A/C/G/T (e.g. N)
is ``[UNK]``.  Input is upper-cased first (soft-masked bases are ordinary bases).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vareff.encode.bpe import BpeTokenizer, Encoded
from vareff.errors import CheckpointError

__all__ = ["OverlappingKmerTokenizer", "is_overlapping_kmer_checkpoint"]

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CODE = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate("ACGT"):
    _CODE[ord(_b)] = _CODE[ord(_b.lower())] = _i


def _read_vocab(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [ln.strip() for ln in lines]


def _kmer_size(vocab: Sequence[str]) -> int | None:
    """k when ``vocab`` is the special tokens plus all 4**k k-mers over ACGT, else None."""
    kmers = [t for t in vocab if t not in _SPECIAL]
    if not kmers or any(not t or set(t) - set("ACGT") for t in kmers):
        return None
    k = len(kmers[0])
    if any(len(t) != k for t in kmers) or len(set(kmers)) != 4 ** k or not set(_SPECIAL) <= set(vocab):
        return None
    return k


def is_overlapping_kmer_checkpoint(directory: str | os.PathLike) -> bool:
    """A DNABERT-style directory: no ``tokenizer.json``, and a ``vocab.txt`` of specials + all k-mers."""
    d = Path(directory)
    f = d / "vocab.txt"
    return not (d / "tokenizer.json").is_file() and f.is_file() and _kmer_size(_read_vocab(f)) is not None


class OverlappingKmerTokenizer:
    """Overlapping k-mer tokenizer over a ``vocab.txt`` (ids equal ``BertTokenizer`` on space-joined k-mers)."""

    def __init__(self, vocab: Sequence[str], *, source: str = "vocab.txt"):
        k = _kmer_size(vocab)
        if k is None:
            raise CheckpointError(f"{source} is not a DNABERT k-mer vocabulary",
                                  "expected [PAD] [UNK] [CLS] [SEP] [MASK] and every k-mer over ACGT")
        self.k, self.source, self.vocab = k, source, list(vocab)
        ids = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (ids[t] for t in _SPECIAL)
        self.vocab_size = len(self.vocab)
        # id of the k-mer with base-4 code c (A=0, C=1, G=2, T=3, first base most significant); extra slot: [UNK]
        table = np.full(4 ** k + 1, self.unk_id, dtype=np.int64)
        for t, i in ids.items():
            if t not in _SPECIAL:
                table[int(sum(4 ** (k - 1 - j) * "ACGT".index(ch) for j, ch in enumerate(t)))] = i
        self._table = table
        #: nucleotide string of each id (None for special tokens)
        self.token_strings: list[str | None] = [None if t in _SPECIAL else t for t in self.vocab]

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> "OverlappingKmerTokenizer":
        f = Path(directory) / "vocab.txt"
        if not f.is_file():
            raise CheckpointError(f"no vocab.txt in {str(directory)!r}", "copy it from the model repository")
        return cls(_read_vocab(f), source=str(f))

    def encode_one(self, sequence: str) -> Encoded:
        k = self.k
        c = _CODE[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]  # (L,) 0..3, 4 = other
        n = max(len(c) - k + 1, 0)
        if n:
            win = np.lib.stride_tricks.sliding_window_view(c, k)  # (n, k)
            code = win @ (4 ** np.arange(k - 1, -1, -1))
            code[(win == 4).any(1)] = 4 ** k  # a k-mer with a non-ACGT base: [UNK]
            body = self._table[code]
        else:
            body = np.zeros(0, dtype=np.int64)
        ids = np.concatenate([[self.cls_id], body, [self.sep_id]]).astype(np.int64)
        starts = np.concatenate([[-1], np.arange(n), [-1]]).astype(np.int64)
        ends = np.concatenate([[-1], np.arange(n) + k, [-1]]).astype(np.int64)
        return Encoded(ids, starts, ends)

    def encode(self, sequences: Sequence[str]) -> list[Encoded]:
        return [self.encode_one(s) for s in sequences]

    # right-padding and the (input_ids, attention_mask) call, as for the BPE tokenizer
    pad = BpeTokenizer.pad
    __call__ = BpeTokenizer.__call__
