"""A checkpoint's own tokenizer (``tokenizer.json``, e.g. GROVER's BPE) with a token -> nucleotide map.

The tokenizer file is run by the Rust ``tokenizers`` library, exactly as Hugging Face
``PreTrainedTokenizerFast`` runs it, so token ids are identical to what ``transformers`` gives for
the same (upper-case) sequence.  On top of that this module adds what variant scoring needs:

* input is upper-cased first (soft-masked FASTA bases are read as ordinary bases);
* for every token, the half-open character span ``[start, end)`` of the input it covers
  (``-1`` for special tokens such as ``[CLS]``/``[SEP]``);
* for every vocabulary id, the nucleotide string it spells (``None`` for special tokens).

Coordinates are 0-based offsets into the sequence passed in.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vareff.errors import CheckpointError

__all__ = ["BpeTokenizer", "Encoded"]

_NUC = frozenset("ACGTN")


@dataclass(frozen=True)
class Encoded:
    """One tokenized sequence.

    Attributes
    ----------
    ids : np.ndarray
        int64 token ids (T,), special tokens included, no padding.
    starts, ends : np.ndarray
        int64 (T,) character span of each token in the input; ``-1`` for special tokens.
    """

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def covering(self, start0: int, end0: int) -> tuple[int, int]:
        """Token index range ``[i, j)`` of the tokens whose spans intersect characters ``[start0, end0)``.

        For an empty interval (``start0 == end0``, an insertion point) the tokens holding the
        characters on both sides of the junction (``start0 - 1`` and ``start0``) are returned.
        """
        if end0 <= start0:
            start0, end0 = start0 - 1, start0 + 1
        real = self.starts >= 0
        hit = np.nonzero(real & (self.starts < end0) & (self.ends > start0))[0]
        if len(hit) == 0:
            raise ValueError(f"no token covers characters [{start0}, {end0})")
        return int(hit[0]), int(hit[-1]) + 1


class BpeTokenizer:
    """Tokenizer of a Hugging Face checkpoint directory, read from its ``tokenizer.json``.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint directory (with ``tokenizer.json`` and optionally ``tokenizer_config.json`` /
        ``special_tokens_map.json`` naming the special tokens) or a ``tokenizer.json`` file.

    Notes
    -----
    Backend truncation and padding stored in the file are switched off, as ``transformers`` does
    for a plain ``tokenizer(seqs)`` call; padding is done here, on the right, with the pad id.
    """

    def __init__(self, path: str | os.PathLike):
        from tokenizers import Tokenizer

        p = Path(path)
        file = p / "tokenizer.json" if p.is_dir() else p
        directory = file.parent
        if not file.is_file():
            raise CheckpointError(
                f"no tokenizer.json in {str(directory)!r}",
                "a GROVER checkpoint directory holds tokenizer.json next to config.json; copy it from the model repository",
            )
        try:
            self._tok = Tokenizer.from_file(str(file))
        except Exception as e:  # the Rust library raises its own exception type
            raise CheckpointError(f"cannot read {str(file)!r} as a tokenizers file: {e}") from None
        self._tok.no_truncation()
        self._tok.no_padding()
        self.source = str(file)
        model = json.loads(file.read_text()).get("model", {})
        self.model_type = model.get("type")
        prefix = model.get("continuing_subword_prefix") or ""
        suffix = model.get("end_of_word_suffix") or ""

        names = {"pad": "[PAD]", "mask": "[MASK]", "cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]"}
        for fname in ("special_tokens_map.json", "tokenizer_config.json"):
            f = directory / fname
            if f.is_file():
                try:
                    d = json.loads(f.read_text())
                except json.JSONDecodeError:
                    continue
                for key in names:
                    v = d.get(f"{key}_token")
                    if isinstance(v, dict):
                        v = v.get("content")
                    if isinstance(v, str):
                        names[key] = v
        ids = {k: self._tok.token_to_id(v) for k, v in names.items()}
        self.pad_id: int | None = ids["pad"]
        self.mask_id: int | None = ids["mask"]
        self.cls_id: int | None = ids["cls"]
        self.sep_id: int | None = ids["sep"]
        self.unk_id: int | None = ids["unk"]
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}
        special |= {v for v in names.values()}
        strings: list[str | None] = [None] * self.vocab_size
        for tok, i in self._tok.get_vocab(with_added_tokens=True).items():
            if tok in special:
                continue
            s = tok
            if prefix and s.startswith(prefix):
                s = s[len(prefix):]
            if suffix and s.endswith(suffix):
                s = s[: -len(suffix)]
            if s and set(s) <= _NUC:
                strings[i] = s
        #: nucleotide string of each id (None: special or non-DNA token)
        self.token_strings = strings

    # ------------------------------------------------------------------------------- encoding
    def encode(self, sequences: list[str]) -> list[Encoded]:
        """Tokenize DNA sequences (any case) with special tokens; returns one :class:`Encoded` each."""
        seqs = [s.upper() for s in sequences]
        # encode_batch (not encode_batch_fast, which skips the character offsets)
        return [self._wrap(enc) for enc in self._tok.encode_batch(seqs)]

    def _wrap(self, enc) -> Encoded:
        ids = np.asarray(enc.ids, dtype=np.int64)
        off = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        special = np.asarray(enc.special_tokens_mask, dtype=bool)
        starts = np.where(special, -1, off[:, 0])
        ends = np.where(special, -1, off[:, 1])
        return Encoded(ids, starts, ends)

    def pad(self, encoded: list[Encoded] | list[np.ndarray], *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to the longest: ``(input_ids, attention_mask)``, both int64 (B, T)."""
        rows = [e.ids if isinstance(e, Encoded) else np.asarray(e) for e in encoded]
        T = max((len(r) for r in rows), default=0)
        pad = self.pad_id if self.pad_id is not None else 0
        ids = np.full((len(rows), T), pad, dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = r
            mask[b, : len(r)] = 1
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    def __call__(self, sequences: list[str], *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` for a list of sequences, as ``transformers``' ``tokenizer(seqs, padding=True)``."""
        if isinstance(sequences, str):
            sequences = [sequences]
        return self.pad(self.encode(list(sequences)), device=device)
