"""A checkpoint's own tokenizer (``tokenizer.json``, e.g. GROVER's BPE) with a token -> nucleotide map.

The tokenizer file is run by the Rust ``tokenizers`` library, exactly as Hugging Face
``PreTrainedTokenizerFast`` runs it, so token ids are identical to what ``transformers`` gives for
the same (upper-case) sequence.  On top of that this module adds what variant scoring needs:

* input is upper-cased first (soft-masked FASTA bases are read as ordinary bases);
* for every token, the half-open character span ``[start, end)`` of the input it covers
  (``-1`` for special tokens such as ``[CLS]``/``[SEP]``);
* for every vocabulary id, the nucleotide string it spells (``None`` for special tokens);
* :meth:`BpeTokenizer.restrict_to`: fit the tokenizer to the model's embedding table, accepting
  extra ids only when they are provably never emitted (the published GROVER ``tokenizer.json``
  holds one: an empty piece ``""`` at id 609 next to a 609-row embedding; see
  :func:`unreachable_extra_ids`).

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

__all__ = ["BpeTokenizer", "Encoded", "unreachable_extra_ids"]

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
        self._spec = json.loads(file.read_text())  # the parsed file (checked by restrict_to)
        model = self._spec.get("model") or {}
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

    def restrict_to(self, vocab_size: int, *, config_source: str = "config.json") -> "BpeTokenizer":
        """Fit the tokenizer to a model with ``vocab_size`` embedding rows.

        Ids at or above ``vocab_size`` are accepted only when :func:`unreachable_extra_ids` proves
        the tokenizer can never emit them; they are then dropped from :attr:`token_strings` and
        :attr:`vocab_size`.  Anything else raises :class:`CheckpointError` naming the ids.
        """
        if self.vocab_size <= vocab_size:
            return self
        reason = unreachable_extra_ids(self._spec, vocab_size, self.vocab_size)
        if reason is not None:
            raise CheckpointError(
                f"{self.source} has {self.vocab_size} tokens but {config_source} vocab_size={vocab_size}: {reason}",
                "tokenizer.json and the weights must come from the same checkpoint; re-copy both from the model repository",
            )
        self.token_strings = self.token_strings[:vocab_size]
        self.vocab_size = vocab_size
        return self

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


# ----------------------------------------------------------------------------------- vocabulary fit


def _post_processor_ids(pp: dict | None) -> tuple[set[int], set[str]]:
    """Token ids and token strings a ``tokenizer.json`` post-processor inserts (Template/Bert/Roberta, nested Sequence)."""
    ids: set[int] = set()
    toks: set[str] = set()
    if not isinstance(pp, dict):
        return ids, toks
    for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
        v = pp.get(key)
        if isinstance(v, list) and len(v) == 2:
            toks.add(str(v[0]))
            if isinstance(v[1], int):
                ids.add(v[1])
    for spec in (pp.get("special_tokens") or {}).values():  # TemplateProcessing
        if isinstance(spec, dict):
            ids.update(i for i in spec.get("ids") or [] if isinstance(i, int))
            toks.update(str(t) for t in spec.get("tokens") or [])
    for sub in pp.get("processors") or []:  # Sequence
        i, t = _post_processor_ids(sub)
        ids |= i
        toks |= t
    return ids, toks


def unreachable_extra_ids(spec: dict, vocab_size: int, total: int) -> str | None:
    """Why ids ``vocab_size .. total-1`` of a parsed ``tokenizer.json`` might be emitted, or None if they cannot be.

    Accepted (returns None) only for a BPE model when every extra id is an **empty piece**
    ``""`` of ``model.vocab`` and

    * no merge produces the empty piece (BPE starts from single characters, so an empty symbol
      exists only if a merge of two empty parts creates it; merges *with* an empty part, such as
      GROVER's identity merges ``"A "`` = ``("A", "")``, therefore never fire);
    * it is not the model's ``unk_token``, not an added token, and not an id or token the
      post-processor inserts.

    A non-empty extra piece, an added token at an extra id, a gap in the ids, or any other model
    type is reported (the caller refuses the checkpoint).
    """
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"ids {vocab_size}..{total - 1} have no embedding row (tokenizer model {model.get('type')!r})"
    vocab = model.get("vocab") or {}
    by_id = {i: t for t, i in vocab.items() if isinstance(i, int)}
    added = {a.get("id"): a.get("content") for a in spec.get("added_tokens") or [] if isinstance(a, dict)}
    extra = range(vocab_size, total)
    bad_added = [f"{i} ({added[i]!r})" for i in extra if i in added]
    if bad_added:
        return f"added token(s) at id(s) {', '.join(bad_added)} have no embedding row"
    nonempty = [f"{i} ({by_id[i]!r})" for i in extra if i in by_id and by_id[i] != ""]
    if nonempty:
        return f"id(s) {', '.join(nonempty[:5])} are real vocabulary pieces with no embedding row"
    absent = [str(i) for i in extra if i not in by_id]
    if absent:
        return f"id(s) {', '.join(absent[:5])} are missing from the vocabulary"
    if model.get("unk_token") == "":
        return "the empty piece is the unk_token and can be emitted"
    prefix = model.get("continuing_subword_prefix") or ""
    for m in model.get("merges") or []:
        a, b = (m.split(" ", 1) + [""])[:2] if isinstance(m, str) else (list(m) + ["", ""])[:2]
        if prefix and b.startswith(prefix):
            b = b[len(prefix):]
        if a == "" and b == "":
            return f"the merge {m!r} produces the empty piece, so ids {vocab_size}..{total - 1} can be emitted"
    pp_ids, pp_toks = _post_processor_ids(spec.get("post_processor"))
    used = sorted(i for i in pp_ids if i >= vocab_size) + sorted(t for t in pp_toks if vocab.get(t, -1) >= vocab_size)
    if used:
        return f"the post-processor inserts {', '.join(map(str, used))}, which has no embedding row"
    return None
