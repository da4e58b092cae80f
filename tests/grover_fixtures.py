"""Tiny random GROVER-like checkpoints written by ``transformers`` itself (the reference library).

``make_checkpoint(dir, ...)`` trains a real ``tokenizers`` BPE model on random DNA, wraps it in
``PreTrainedTokenizerFast`` and saves it, then saves a ``BertForMaskedLM`` with random weights
(every parameter, biases and LayerNorm affine included, drawn non-zero) with ``save_pretrained``.
The test modules compare vareff against these ``transformers`` objects.
"""
from __future__ import annotations

import random
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def random_dna(n: int, rng: random.Random, *, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def train_bpe(vocab_size: int, *, seed: int = 0, n_seqs: int = 60, seq_len: int = 3000, with_post_processor: bool = True):
    """A BPE ``tokenizers.Tokenizer`` trained on random (slightly repetitive) DNA, [CLS] x [SEP] template."""
    from tokenizers import Tokenizer, models, processors, trainers

    rng = random.Random(seed)
    motifs = [random_dna(rng.randint(3, 9), rng) for _ in range(12)]
    seqs = []
    for _ in range(n_seqs):
        parts, n = [], 0
        while n < seq_len:  # random DNA with recurring motifs and short homopolymers, so merges vary in length
            r = rng.random()
            s = rng.choice(motifs) if r < 0.3 else (rng.choice("ACGT") * rng.randint(3, 8) if r < 0.4 else random_dna(rng.randint(5, 40), rng))
            parts.append(s)
            n += len(s)
        seqs.append("".join(parts))
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(seqs, trainer)
    if with_post_processor:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )
    return tok


def make_checkpoint(
    directory: str | Path,
    *,
    vocab_size: int = 96,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 48,
    max_position_embeddings: int = 512,
    hidden_act: str = "gelu",
    layer_norm_eps: float = 1e-12,
    tie_word_embeddings: bool = True,
    weight_std: float = 0.08,
    seed: int = 0,
    safe_serialization: bool = True,
    with_post_processor: bool = True,
):
    """Write a tiny random ``BertForMaskedLM`` + BPE tokenizer to ``directory``; returns (model, tokenizer)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(vocab_size, seed=seed, with_post_processor=with_post_processor)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    fast.save_pretrained(directory)
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        hidden_act=hidden_act,
        layer_norm_eps=layer_norm_eps,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(weight_std * torch.randn(p.shape, generator=g))
    model.save_pretrained(directory, safe_serialization=safe_serialization)
    return model, fast
