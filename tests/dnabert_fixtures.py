"""Tiny random DNABERT (v1) checkpoints in the published layout, and an independent reference.

The published ``zhihan1996/DNA_bert_6`` directory holds ``config.json`` (``model_type: bert``,
``BertForMaskedLM``, ``vocab_size`` 4101), ``vocab.txt`` (``[PAD] [UNK] [CLS] [SEP] [MASK]`` and the
4096 6-mers), ``tokenizer_config.json``, ``special_tokens_map.json`` and the weights; no
``tokenizer.json``.  ``make_checkpoint`` writes that layout (the k-mers in a shuffled order, so the
vocabulary is really read) with a random ``transformers.BertForMaskedLM``.  ``Reference`` computes
the scores of docs in :mod:`vareff.score.dnabert` with ``transformers``' ``BertTokenizer`` (on
space-separated k-mers, as DNABERT users call it), its model, pysam and plain loops.
"""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import torch

from grover_fixtures import TransformersReference

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_checkpoint(directory, *, k: int = 6, hidden_size: int = 32, num_hidden_layers: int = 2,
                    num_attention_heads: int = 4, intermediate_size: int = 40, seed: int = 0,
                    weight_std: float = 0.1, safe_serialization: bool = True):
    """Write the published DNABERT layout with random weights; returns (model, tokenizer) of transformers."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    random.Random(seed).shuffle(kmers)
    (d / "vocab.txt").write_text("\n".join(SPECIALS + kmers) + "\n")
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512,
                                                         "tokenizer_class": "BertTokenizer"}))
    (d / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]", "sep_token": "[SEP]",
                                                           "pad_token": "[PAD]", "cls_token": "[CLS]",
                                                           "mask_token": "[MASK]"}))
    cfg = BertConfig(vocab_size=len(SPECIALS) + 4 ** k, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                     num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                     max_position_embeddings=512, pad_token_id=0)
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 if "LayerNorm.weight" in name else weight_std
            p.copy_((1.0 if "LayerNorm.weight" in name else 0.0) + scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(d, safe_serialization=safe_serialization)
    assert not (d / "tokenizer.json").exists()
    return model, BertTokenizer.from_pretrained(str(d))


def kmer_text(seq: str, k: int) -> str:
    """DNABERT's input text: the overlapping k-mers of ``seq`` separated by spaces."""
    return " ".join(seq[i:i + k] for i in range(len(seq) - k + 1))


class Reference(TransformersReference):
    """The documented ``dnabert_*`` scores from transformers + pysam + loops.

    ``fasta``/``contig``: the sequence; genomic 0-based = contig 0-based + ``offset0``.  The window
    rule (GROVER's) and the forward pass come from :class:`grover_fixtures.TransformersReference`.
    """

    def __init__(self, fasta, contig, offset0, model, tok, *, k=6, window=500, stride=250, min_flank=50):
        super().__init__(fasta, contig, offset0, model, tok, window=window, stride=stride, min_flank=min_flank)
        self.k = k

    def covering(self, lo, hi, n_tokens):
        """Token indices (with [CLS] at 0) of the k-mers intersecting characters [lo, hi) (empty: both sides)."""
        if hi <= lo:
            lo, hi = lo - 1, lo + 1
        return [1 + i for i in range(n_tokens - 2) if i < hi and i + self.k > lo]

    def score(self, pos1, ref, alt):
        pos0 = pos1 - 1
        ws, we = self.window(pos0, len(ref))
        seq = self.fa.fetch(self.contig, ws - self.offset0, we - self.offset0).upper()
        s = pos0 - ws
        aseq = seq[:s] + alt + seq[s + len(ref):]
        rids = self.tok(kmer_text(seq, self.k))["input_ids"]
        aids = self.tok(kmer_text(aseq, self.k))["input_ids"]
        if len(ref) == len(alt):
            changed = [x for x in range(len(ref)) if ref[x] != alt[x]]
            cr = ca = self.covering(s + changed[0], s + changed[-1] + 1, len(rids))
            _, lpr = self.run(rids, cr)
            lpa = lpr
        else:
            cr, ca = self.covering(s, s + len(ref), len(rids)), self.covering(s, s + len(alt), len(aids))
            _, lpr = self.run(rids, cr)
            _, lpa = self.run(aids, ca)
        llr = sum(lpa[j, aids[j]].item() for j in ca) - sum(lpr[j, rids[j]].item() for j in cr)
        er, ea = self.run(rids)[0][1:-1].mean(0), self.run(aids)[0][1:-1].mean(0)
        cos = torch.nn.functional.cosine_similarity(er, ea, dim=0).item()
        return {"dnabert_llr": llr, "dnabert_embedding_distance": 1 - cos,
                "dnabert_embedding_l2": (er - ea).norm().item(), "dnabert_masked_tokens": len(cr)}
