"""vareff's BPE tokenizer vs transformers' tokenizer for the same checkpoint files.

Reference: ``transformers.AutoTokenizer.from_pretrained(dir)`` on the directory that
``PreTrainedTokenizerFast.save_pretrained`` wrote.  Exact equality of ids and masks is required.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grover_fixtures import make_checkpoint, random_dna
from vareff.encode.bpe import BpeTokenizer
from vareff.errors import CheckpointError


def _dna_with_n_runs(rng: random.Random, n: int) -> str:
    s = list(random_dna(n, rng))
    for _ in range(rng.randint(0, 3)):  # N runs of 1-12 nt
        a = rng.randrange(n)
        for i in range(a, min(n, a + rng.randint(1, 12))):
            s[i] = "N"
    return "".join(s)


@pytest.fixture(scope="module", params=["template", "no_post_processor"])
def ckpt(request, tmp_path_factory):
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp(f"tok_{request.param}")
    make_checkpoint(d, vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, with_post_processor=request.param == "template", seed=7)
    return d, AutoTokenizer.from_pretrained(d)


def test_ids_equal_transformers_on_random_dna_with_n_runs(ckpt):
    d, hf = ckpt
    tok = BpeTokenizer(d)
    rng = random.Random(3)
    seqs = [_dna_with_n_runs(rng, rng.randint(1, 700)) for _ in range(40)]
    ids, mask = tok(seqs)
    ref = hf(seqs, padding=True, return_tensors="pt")
    assert ids.tolist() == ref["input_ids"].tolist()
    assert mask.tolist() == ref["attention_mask"].tolist()


def test_soft_masked_lowercase_reads_as_uppercase(ckpt):
    d, hf = ckpt
    tok = BpeTokenizer(d)
    rng = random.Random(4)
    upper = [random_dna(300, rng) for _ in range(5)]
    mixed = ["".join(c.lower() if rng.random() < 0.4 else c for c in s) for s in upper]
    ids, _ = tok(mixed)
    assert ids.tolist() == hf(upper, padding=True, return_tensors="pt")["input_ids"].tolist()


def test_offsets_map_tokens_to_nucleotides(ckpt):
    d, hf = ckpt
    tok = BpeTokenizer(d)
    rng = random.Random(5)
    seqs = [random_dna(rng.randint(1, 500), rng) for _ in range(20)]
    for seq, enc in zip(seqs, tok.encode(seqs)):
        real = enc.starts >= 0
        # non-special tokens tile the sequence without gaps, in order
        assert enc.starts[real][0] == 0 and enc.ends[real][-1] == len(seq)
        assert np.array_equal(enc.starts[real][1:], enc.ends[real][:-1])
        # each token spells exactly the bases it covers (checked against transformers' token strings)
        pieces = hf.convert_ids_to_tokens(enc.ids[real].tolist())
        assert [seq[a:b] for a, b in zip(enc.starts[real], enc.ends[real])] == pieces
        assert [tok.token_strings[i] for i in enc.ids[real]] == pieces
        specials = enc.ids[~real].tolist()
        assert all(tok.token_strings[i] is None for i in specials)


def test_special_token_ids_match_transformers(ckpt):
    d, hf = ckpt
    tok = BpeTokenizer(d)
    assert tok.mask_id == hf.mask_token_id and tok.pad_id == hf.pad_token_id
    assert tok.cls_id == hf.cls_token_id and tok.sep_id == hf.sep_token_id and tok.unk_id == hf.unk_token_id
    assert tok.vocab_size == len(hf)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.integers(0, 299), st.integers(0, 4))
def test_covering_tokens_are_exactly_those_touching_the_interval(tmp_path_factory, seed, n, start, length):
    tok = _shared_tokenizer(tmp_path_factory)
    seq = random_dna(n, random.Random(seed))
    start = min(start, n - 1)
    end = min(n, start + length)
    enc = tok.encode([seq])[0]
    if end == start and start == 0:
        start, end = 0, 1
    i, j = enc.covering(start, end)
    lo, hi = (start - 1, start + 1) if end == start else (start, end)
    for t in range(len(enc)):
        touches = enc.starts[t] >= 0 and enc.starts[t] < hi and enc.ends[t] > lo
        assert touches == (i <= t < j)


_TOK = {}


def _shared_tokenizer(tmp_path_factory):
    if "t" not in _TOK:
        d = tmp_path_factory.mktemp("tok_cov")
        make_checkpoint(d, vocab_size=90, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, seed=9)
        _TOK["t"] = BpeTokenizer(d)
    return _TOK["t"]


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        BpeTokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        BpeTokenizer(tmp_path)
