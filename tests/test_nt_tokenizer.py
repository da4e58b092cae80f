"""NT 6-mer tokenizer: ids equal ``transformers.EsmTokenizer`` over the published vocab.txt, and an
independent transcription of the published algorithm; layout, N, case, padding, errors."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nt_fixtures import random_dna, vocab_lines, write_tokenizer
from vareff.encode.kmer import KmerTokenizer, published_vocab
from vareff.errors import CheckpointError


def published_algorithm(seq: str, vocab: list[str], k: int = 6) -> list[int]:
    """The published NT tokenizer, transcribed from its description: split at N, cut each piece into
    k-mers left to right, the remainder into single nucleotides, an N token between pieces, <cls> first."""
    tid = {t: i for i, t in enumerate(vocab)}
    tokens = ["<cls>"]
    pieces = seq.split("N")
    for n, piece in enumerate(pieces):
        full = len(piece) // k * k
        tokens += [piece[i:i + k] for i in range(0, full, k)]
        tokens += list(piece[full:])
        if n < len(pieces) - 1:
            tokens.append("N")
    return [tid[t] for t in tokens]


@pytest.fixture(scope="module", params=["v2", "v1"])
def toks(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"tok_{request.param}")
    hf = write_tokenizer(d, request.param)
    ours = KmerTokenizer.from_directory(d, vocab_size=4107 if request.param == "v2" else 4105)
    return request.param, hf, ours


def test_ids_equal_transformers_and_the_published_algorithm(toks):
    version, hf, ours = toks
    rng = random.Random(11)
    vocab = vocab_lines(version)
    for i in range(400):
        n = rng.choice([0, 1, 5, 6, 7, 11, 12, 13, 24, 25]) if i < 40 else rng.randint(0, 90)
        seq = random_dna(n, rng, "ACGT" * 6 + "N" if i % 3 else "ACGT")
        want = hf(seq)["input_ids"]
        enc = ours.encode_one(seq)
        assert enc.ids.tolist() == want, seq
        assert enc.ids.tolist() == published_algorithm(seq, vocab), seq
        # spans: every non-special token spells exactly its slice of the input
        toks_hf = hf.convert_ids_to_tokens(want)[1:]
        assert [seq[a:b] for a, b in zip(enc.starts[1:], enc.ends[1:])] == toks_hf
        assert enc.starts[0] == -1 and enc.ends[0] == -1


def test_documented_examples_and_id_layout():
    tok = KmerTokenizer(published_vocab("v2"))
    # README example of the published tokenizer
    enc = tok.encode_one("ACGTGTACNTGCACGGANCGACTAGTCTGA")
    assert [tok.vocab[i] for i in enc.ids] == ["<cls>", "ACGTGT", "A", "C", "N", "TGCACG", "G", "A", "N", "CGACTA", "GTCTGA"]
    # product order A, T, C, G (not alphabetical); closed form 6 + sum code * 4^(5-i)
    assert [tok.kmer_id(s) for s in ("AAAAAA", "AAAAAT", "AAAAAC", "AAAAAG", "AAAATA")] == [6, 7, 8, 9, 10]
    code = {"A": 0, "T": 1, "C": 2, "G": 3}
    rng = random.Random(3)
    for _ in range(50):
        s = random_dna(6, rng)
        assert tok.kmer_id(s) == 6 + sum(code[c] * 4 ** (5 - i) for i, c in enumerate(s))
    assert [tok.kmer_id(c) for c in "ATCGN"] == [4102, 4103, 4104, 4105, 4106]
    assert (tok.cls_id, tok.pad_id, tok.mask_id, tok.unk_id) == (3, 1, 2, 0)
    v1 = KmerTokenizer(published_vocab("v1"))
    assert v1.kmer_id("AAAAAA") == 4 and v1.kmer_id("GGGGGG") == 4099 and v1.kmer_id("N") == 4104


def test_soft_masked_lowercase_reads_as_uppercase_and_ambiguity_codes_as_n(toks):
    _, hf, ours = toks
    rng = random.Random(5)
    for _ in range(50):
        seq = random_dna(rng.randint(1, 60), rng, "ACGTN")
        soft = "".join(c.lower() if rng.random() < 0.4 else c for c in seq)
        assert ours.encode_one(soft).ids.tolist() == hf(seq)["input_ids"]
    # IUPAC codes have no token in NT's vocabulary: read as N (documented)
    assert ours.encode_one("ACGTRYACGTAC").ids.tolist() == ours.encode_one("ACGTNNACGTAC").ids.tolist()


def test_segment_nt_windows_are_whole_6mers():
    tok = KmerTokenizer(published_vocab("v2"))
    rng = random.Random(2)
    seq = random_dna(24 * 7, rng)
    enc = tok.encode_one(seq)
    assert len(enc) == 1 + 28 and (enc.ends[1:] - enc.starts[1:] == 6).all()
    for i in rng.sample(range(len(seq)), 20):  # nucleotide i is in token 1 + i // 6 at offset i % 6
        t = 1 + i // 6
        assert enc.starts[t] + i % 6 == i and tok.vocab[enc.ids[t]][i % 6] == seq[i]


def test_batch_padding_equals_transformers(toks):
    _, hf, ours = toks
    rng = random.Random(9)
    seqs = [random_dna(n, rng, "ACGTN") for n in (5, 40, 23, 61)]
    ids, mask = ours(seqs)
    want = hf(seqs, padding=True, return_tensors="pt")
    assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ACGTNacgtnRY-", max_size=120))
def test_tokens_tile_the_sequence(seq):
    tok = KmerTokenizer(published_vocab("v2"))
    enc = tok.encode_one(seq)
    starts, ends = enc.starts[1:], enc.ends[1:]
    assert starts.tolist() == ([0] + ends[:-1].tolist() if len(ends) else [])
    assert (ends[-1] if len(ends) else 0) == len(seq)
    up = "".join(c if c in "ACGT" else "N" for c in seq.upper())
    for i, a, b in zip(enc.ids[1:], starts, ends):
        assert tok.vocab[i] == up[a:b]
        assert b - a in (1, 6) and (b - a == 1 or "N" not in up[a:b])


def test_missing_vocab_uses_the_published_layout_or_refuses(tmp_path, caplog):
    tok = KmerTokenizer.from_directory(tmp_path, vocab_size=4107)
    assert tok.kmer_id("AAAAAA") == 6 and "published NT v2" in tok.source
    assert KmerTokenizer.from_directory(tmp_path, vocab_size=4105).kmer_id("AAAAAA") == 4
    with pytest.raises(CheckpointError, match="no vocab.txt"):
        KmerTokenizer.from_directory(tmp_path, vocab_size=33)


def test_vocabulary_errors(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["<unk>", "<pad>", "<mask>", "<cls>", "A", "C"]))
    with pytest.raises(CheckpointError, match="not a Nucleotide Transformer 6-mer vocabulary"):
        KmerTokenizer.from_directory(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab_lines("v2")))
    with pytest.raises(CheckpointError, match="outside the model's 4105 embeddings"):
        KmerTokenizer.from_directory(tmp_path, vocab_size=4105)


def test_vectorised_path_matches_on_long_windows():
    tok = KmerTokenizer(published_vocab("v2"))
    rng = random.Random(4)
    seq = random_dna(30_000, rng)
    seq_n = seq[:1000] + "NNN" + seq[1003:20_000] + "N" + seq[20_001:]
    vocab = published_vocab("v2")
    for s in (seq, seq_n):
        assert np.array_equal(tok.encode_one(s).ids, published_algorithm(s, vocab))
